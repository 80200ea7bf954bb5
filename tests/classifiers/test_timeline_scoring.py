"""Window and track scores: faceless windows and a window error row are never fed to the classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer
from sklearn.svm import LinearSVC

from classifiers.scoring import scores_table
from classifiers.timeline_scoring import (
    score_track_rows,
    score_window_rows,
    track_scores_schema,
    window_scores_schema,
)
from common.tables.schema import DescriptorLayout
from pipelines.extraction.statistics import ClipAccumulator, one_face_per_frame_descriptor

CLASSES = ("Negative", "Neutral", "Positive")
NOW = pd.Timestamp("2026-03-01 02:00:00.123456789", tz="UTC")


def refuse_zero_rows(X):
    """A real pipeline step that fails on what must never reach the classifier: an all-zero descriptor."""
    if np.any(~np.asarray(X).any(axis=1)):
        raise AssertionError("an all-zero descriptor reached the classifier")
    return X


def _model(length: int) -> Pipeline:
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 0.1, size=(30, length))
    y = np.arange(30) % 3
    X[np.arange(30), y] += 2.0
    return Pipeline([("guard", FunctionTransformer(refuse_zero_rows)), ("normalize", Normalizer()),
                     ("classifier", LinearSVC(random_state=0))]).fit(X, y)


def _window(start, has_face, descriptor, error=None):
    return {"start_s": start, "end_s": None if start is None else start + 10.0, "n_frames": 250,
            "n_face_frames": 200 if has_face else 0, "n_faces": 0, "max_faces_in_frame": 0, "has_face": has_face,
            "descriptor": descriptor, "error": error}


def test_faceless_windows_and_the_error_row_get_null_scores_and_never_reach_the_classifier():
    model = _model(8)
    face = np.array([0.1, 0.0, 2.0, 0.1, 0.0, 0.1, 0.0, 0.0], np.float32)
    zeros = np.zeros(8, np.float32)
    rows = [_window(0.0, True, face), _window(10.0, False, zeros), _window(None, False, zeros, "FrameRateError: x")]
    scored = score_window_rows("v.mp4", rows, model, CLASSES, run_id="r1", scored_at=NOW)
    assert [r["predicted_label"] for r in scored] == ["Positive", None, None]
    expected = model.decision_function(face[None])[0]
    assert [scored[0][f"score_{c}"] for c in CLASSES] == pytest.approx(expected.tolist())
    assert all(np.isnan(scored[i][f"score_{c}"]) for i in (1, 2) for c in CLASSES)
    assert scored[2]["error"] == "FrameRateError: x" and scored[2]["start_s"] is None
    assert {r["scored_at"] for r in scored} == {NOW.floor("us")} and {r["key"] for r in scored} == {"v.mp4"}
    table = scores_table(pd.DataFrame(scored), window_scores_schema(CLASSES))
    assert table.num_rows == 3 and table.column("score_Positive").null_count == 2
    assert table.schema.field("scored_at").type == pa.timestamp("us", tz="UTC")
    with pytest.raises(AssertionError, match="all-zero"):  # the guard does guard
        model.predict(zeros[None])


def test_a_groups_track_is_scored_as_the_vgaf_statistics_of_its_faces():
    """A VGAF model scores a track as the group aggregation would describe a video of that one person."""
    rng = np.random.default_rng(1)
    faces = rng.normal(1.0, 0.5, size=(12, 2))
    afew, vgaf = ClipAccumulator(DescriptorLayout("afew", 2)), ClipAccumulator(DescriptorLayout("vgaf", 2))
    for acc in (afew, vgaf):
        acc.add_faces(faces, np.arange(12))
    model = _model(8)
    track = {"track_id": 3, "start_s": 0.0, "end_s": 4.4, "n_frames": 12, "descriptor": afew.descriptor()}
    (row,) = score_track_rows("g.mp4", [track], [one_face_per_frame_descriptor(track["descriptor"], vgaf.layout)],
                              model, CLASSES, run_id="r1", scored_at=NOW)
    assert [row[f"score_{c}"] for c in CLASSES] == pytest.approx(model.decision_function(vgaf.descriptor()[None])[0])
    assert (row["track_id"], row["n_frames"], row["end_s"]) == (3, 12, 4.4)
    assert scores_table(pd.DataFrame([row]), track_scores_schema(CLASSES)).num_rows == 1
