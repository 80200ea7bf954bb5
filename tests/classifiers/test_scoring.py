"""Predictions and scores rows of described clips, on a tiny hand-fitted model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import LinearSVC

from classifiers.scoring import predict_clips, score_row, scores_schema, scores_table

SHA = "ab" * 32
NOW = pd.Timestamp("2024-05-01 02:00:00.123456789", tz="UTC")


def _tiny_model() -> Pipeline:
    """Three classes seen in training out of four listed (index 1, 'Disgust', never seen)."""
    X = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] * 2)
    y = np.array([0, 2, 3] * 2)
    return Pipeline([("normalize", Normalizer()), ("classifier", LinearSVC(random_state=0))]).fit(X, y)


CLASSES = ("Angry", "Disgust", "Fear", "Happy")


def test_predictions_are_null_where_no_face_or_failure() -> None:
    X = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    labels, scores = predict_clips(_tiny_model(), CLASSES, X, np.array([True, False, True]))
    assert labels.tolist() == ["Happy", None, "Angry"]
    assert list(scores) == ["Angry", "Fear", "Happy"]  # Disgust was never seen in training
    assert np.isnan(scores["Happy"][1]) and scores["Happy"][0] > scores["Fear"][0]


def test_nothing_usable_needs_no_prediction() -> None:
    labels, scores = predict_clips(_tiny_model(), CLASSES, np.zeros((2, 3)), np.array([False, False]))
    assert labels.tolist() == [None, None] and all(np.isnan(v).all() for v in scores.values())


def _clip(clip_id: str, descriptor: list[float], status: str = "ok", has_face: bool = True) -> dict:
    return {"clip_id": clip_id, "path": f"s3://b/in/{clip_id}", "status": status,
            "error": None if status == "ok" else "boom", "has_face": has_face, "descriptor": descriptor,
            "n_frames": 5, "n_face_frames": 5 * has_face, "n_faces": 5 * has_face, "featurizer": "f"}


def test_scores_rows_match_the_batch_prediction_the_driver_made_before() -> None:
    model = _tiny_model()
    X = np.array([[0.0, 0.0, 5.0], [2.0, 0.1, 0.0], [0.3, 0.0, 0.2]], dtype=np.float32)
    labels, scores = predict_clips(model, CLASSES, X, np.array([True, True, True]))
    rows = [score_row(_clip(f"2024/{i}.avi", list(x)), model, CLASSES, model_sha256=SHA, run_id="r1",
                      scored_at=NOW) for i, x in enumerate(X)]
    assert [r["predicted_label"] for r in rows] == labels.tolist() == ["Happy", "Angry", "Angry"]
    for name in ("Angry", "Fear", "Happy"):
        np.testing.assert_allclose([r[f"score_{name}"] for r in rows], scores[name], rtol=1e-12)
    row = rows[0]
    assert (row["key"], row["clip_id"], row["path"]) == ("2024/0.avi", "2024/0.avi", "s3://b/in/2024/0.avi")
    assert "score_Disgust" not in row  # never seen in training: no score column
    assert row["scored_at"] == NOW.floor("us") and row["size_bytes"] is None and row["attempts"] is None


def test_failed_and_faceless_clips_get_no_prediction() -> None:
    for clip in (_clip("x", [0.0, 0.0, 5.0], "error", False), _clip("y", [0.0, 0.0, 0.0], "faceless", False)):
        row = score_row(clip, _tiny_model(), CLASSES, model_sha256=SHA, run_id="r1", scored_at=NOW)
        assert row["predicted_label"] is None and np.isnan(row["score_Happy"])


def test_scores_table_has_exactly_the_schema() -> None:
    schema = scores_schema(["Angry", "Fear", "Happy"])
    row = score_row(_clip("a.avi", [2.0, 0.0, 0.0]), _tiny_model(), CLASSES, model_sha256=SHA, run_id="r1",
                    scored_at=NOW)
    frame = pd.DataFrame([{**row, "size_bytes": 10, "mtime_ns": 2**62, "attempts": 0, "extra": 1}])
    table = scores_table(frame, schema)
    assert table.schema.equals(schema) and table.column("mtime_ns").to_pylist() == [2**62]
    assert table.column("scored_at").type == pa.timestamp("us", tz="UTC")
    assert table.to_pandas().loc[0, "scored_at"] == NOW.floor("us")
