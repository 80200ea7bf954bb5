"""Incremental scoring logic on hand-made tables: what is kept, what is (re)scored, how rows merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import LinearSVC

from classifiers.model_io import ModelProvenance
from classifiers.scoring import (CHANGED, NEW, OTHER_MODEL, RETRIED, ArchiveVideo, extraction_config_for_model,
                                 merge_scores, plan_scoring, predict_clips, read_scores, scored_rows,
                                 scores_schema, stat_videos, write_scores)
from featurizers.detect import VGAF_DETECTOR

SHA = "ab" * 32
NOW = pd.Timestamp("2024-05-01 02:00:00.123456789", tz="UTC")


def _previous_row(path: str, size: int, mtime: int, status: str = "ok", model: str = SHA) -> dict[str, Any]:
    return {"path": path, "clip_id": Path(path).stem, "size_bytes": size, "mtime_ns": mtime, "status": status,
            "error": "boom" if status == "error" else None, "has_face": status == "ok",
            "predicted_label": "Happy" if status == "ok" else None, "score_Happy": 1.0 if status == "ok" else None,
            "n_frames": 5, "n_face_frames": 5 * (status == "ok"), "n_faces": 5 * (status == "ok"),
            "scored_at": pd.Timestamp("2024-04-30", tz="UTC"), "model_sha256": model, "featurizer": "f"}


@pytest.fixture
def previous() -> pd.DataFrame:
    return pd.DataFrame([
        _previous_row("/a/same.avi", 10, 100),
        _previous_row("/a/faceless.avi", 11, 100, status="faceless"),
        _previous_row("/a/changed_size.avi", 12, 100),
        _previous_row("/a/changed_mtime.avi", 13, 100),
        _previous_row("/a/failed.avi", 14, 100, status="error"),
        _previous_row("/a/deleted.avi", 15, 100),
    ])


def _videos() -> list[ArchiveVideo]:
    return [ArchiveVideo("/a/same.avi", "same", 10, 100), ArchiveVideo("/a/faceless.avi", "faceless", 11, 100),
            ArchiveVideo("/a/changed_size.avi", "changed_size", 99, 100),
            ArchiveVideo("/a/changed_mtime.avi", "changed_mtime", 13, 101),
            ArchiveVideo("/a/failed.avi", "failed", 14, 100), ArchiveVideo("/b/new.avi", "new", 16, 100)]


def test_first_run_scores_everything() -> None:
    plan = plan_scoring(_videos(), None, SHA)
    assert plan.kept.empty and plan.dropped == 0
    assert [v.path for v in plan.to_score] == [v.path for v in _videos()]
    assert plan.reason_counts() == {NEW: 6}


def test_unchanged_videos_are_kept_and_the_rest_rescored(previous: pd.DataFrame) -> None:
    plan = plan_scoring(_videos(), previous, SHA)
    assert sorted(plan.kept.path) == ["/a/faceless.avi", "/a/same.avi"]
    assert plan.reasons == {"/a/changed_size.avi": CHANGED, "/a/changed_mtime.avi": CHANGED,
                            "/a/failed.avi": RETRIED, "/b/new.avi": NEW}
    assert [v.path for v in plan.to_score] == list(plan.reasons)
    assert plan.dropped == 1  # deleted.avi


def test_kept_rows_take_clip_ids_from_the_current_listing(previous: pd.DataFrame) -> None:
    videos = [ArchiveVideo("/a/same.avi", "a/same", 10, 100)]  # a new twin elsewhere made the stem ambiguous
    plan = plan_scoring(videos, previous, SHA)
    assert plan.kept.clip_id.tolist() == ["a/same"] and plan.dropped == 5


def test_a_table_from_another_model_means_rescoring_everything(previous: pd.DataFrame) -> None:
    previous.loc[0, "model_sha256"] = "cd" * 32
    plan = plan_scoring(_videos(), previous, SHA)
    assert plan.kept.empty and len(plan.to_score) == 6 and plan.reason_counts() == {OTHER_MODEL: 6}


def test_a_video_that_could_not_be_stated_is_never_taken_as_unchanged() -> None:
    previous = pd.DataFrame([_previous_row("/a/x.avi", 10, 100)])
    previous[["size_bytes", "mtime_ns"]] = None
    plan = plan_scoring([ArchiveVideo("/a/x.avi", "x", None, None)], previous, SHA)
    assert plan.reasons == {"/a/x.avi": CHANGED}


def test_stat_videos_records_size_and_mtime(tmp_path: Path) -> None:
    video = tmp_path / "v.avi"
    video.write_bytes(b"12345")
    stated = stat_videos([(str(video), "v"), (str(tmp_path / "gone.avi"), "gone")])
    assert stated[0].size_bytes == 5 and stated[0].mtime_ns == video.stat().st_mtime_ns
    assert stated[1] == ArchiveVideo(str(tmp_path / "gone.avi"), "gone", None, None)


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


def _clips() -> pd.DataFrame:
    return pd.DataFrame({"clip_id": ["new", "failed"], "status": ["ok", "error"], "error": [None, "bad"],
                         "has_face": [True, False], "n_frames": [5, 0], "n_face_frames": [5, 0], "n_faces": [5, 0]})


def test_scored_rows_and_merge_give_one_row_per_path_in_path_order(previous: pd.DataFrame, tmp_path: Path) -> None:
    plan = plan_scoring(_videos(), previous, SHA)
    videos = [v for v in plan.to_score if v.clip_id in ("new", "failed")]
    fresh = scored_rows(videos, _clips(), np.array(["Happy", None], dtype=object),
                        {"Happy": np.array([0.5, np.nan])}, model_sha256=SHA, featurizer="f", scored_at=NOW)
    assert fresh.path.tolist() == ["/b/new.avi", "/a/failed.avi"] and fresh.size_bytes.tolist() == [16, 14]
    table = merge_scores(plan.kept, fresh, scores_schema(["Happy"]))
    assert table.column("path").to_pylist() == ["/a/faceless.avi", "/a/failed.avi", "/a/same.avi", "/b/new.avi"]
    rows = table.to_pandas().set_index("path")
    assert rows.loc["/a/failed.avi", "status"] == "error" and pd.isna(rows.loc["/a/failed.avi", "score_Happy"])
    assert rows.loc["/b/new.avi", "scored_at"] == NOW.floor("us")
    assert rows.loc["/a/same.avi", "scored_at"] == pd.Timestamp("2024-04-30", tz="UTC")  # kept as it was
    write_scores(table, tmp_path / "scores.parquet")
    written = pq.read_table(tmp_path / "scores.parquet").to_pandas()
    assert read_scores(tmp_path / "scores.parquet").table.equals(written)
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]  # no temporary file left behind


def test_an_unreadable_previous_table_is_reported_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "scores.parquet"
    bad.write_bytes(b"not parquet")
    previous = read_scores(bad)
    assert previous.table is None and "not a readable Parquet file" in previous.problem
    assert read_scores(tmp_path / "absent.parquet").problem is None


def test_extraction_settings_come_from_the_model_provenance() -> None:
    described = {"detector": {**VGAF_DETECTOR.to_dict(), "thresholds": [0.6, 0.7, 0.9], "min_face_size": 80},
                 "frames": {"step": 3, "target_fps": None, "chunk_size": 32}}
    provenance = ModelProvenance(featurizer="enet_b0_8_best_vgaf", layout={"aggregation": "vgaf"},
                                 classes=["Positive", "Neutral", "Negative"], classifier="linearsvc",
                                 hyperparameters={}, descriptor_provenance=described)
    config = extraction_config_for_model(provenance, weights="/w", device="cpu", face_batch_size=8)
    assert (config.dataset, config.group, config.layout.aggregation) == ("folder", True, "vgaf")
    assert config.detector.min_face_size == 80 and config.detector.thresholds == (0.6, 0.7, 0.9)
    assert config.detector.all_faces and config.sampling.step == 3
    assert (config.weights, config.device, config.face_batch_size) == ("/w", "cpu", 8)


def test_an_unknown_featurizer_is_refused() -> None:
    provenance = ModelProvenance(featurizer="nope", layout={"aggregation": "afew"}, classes=["a", "b"],
                                 classifier="linearsvc", hyperparameters={})
    with pytest.raises(ValueError, match="unknown featurizer 'nope'"):
        extraction_config_for_model(provenance)
