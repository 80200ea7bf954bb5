"""Scores of archive videos: the table's columns, predictions, and rows built from descriptor rows.

Everything here is a pure function on numpy arrays, dicts and pandas frames. Which videos a
run scores, and where the rows are kept, live in ``pipelines.scoring.archive_state`` and
``pipelines.scoring.score_store``; the Beam step that calls :func:`score_row` on the workers in
``pipelines.graph.scoring_steps``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.pipeline import Pipeline

from classifiers.evaluation import class_scores
from common.tables.parquet_io import frame_to_table
from common.tables.schema import ADAPTIVE_SCORE_FIELDS, PROVENANCE_KEY

SCORING_KEY = b"emotiw_video_scoring"
"""Schema-metadata key of the model that wrote a scores table (the extraction's sits under PROVENANCE_KEY)."""

SCORE_PREFIX = "score_"


def score_column(class_name: str) -> str:
    return f"{SCORE_PREFIX}{class_name}"


def scores_schema(score_classes: Sequence[str], metadata: dict[bytes, bytes] | None = None) -> pa.Schema:
    """Arrow schema of the scores: one row per video and run, one score column per class the model knows.

    ``key`` (the path relative to the archive root) identifies a video; ``path`` is where it was
    read this time. ``predicted_label`` and the scores are null for faceless and failed videos:
    an archive user is better served by "no prediction" than by the class a model gives an
    all-zero descriptor. ``attempts`` counts failed attempts on this very file (0 after success).
    """
    fields_ = [
        pa.field("key", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("attempts", pa.int64()),
        pa.field("has_face", pa.bool_(), nullable=False),
        pa.field("predicted_label", pa.string()),
        *(pa.field(score_column(c), pa.float64()) for c in score_classes),
        pa.field("n_frames", pa.int64()),
        pa.field("n_face_frames", pa.int64()),
        pa.field("n_faces", pa.int64()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("featurizer", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        *ADAPTIVE_SCORE_FIELDS,
    ]
    return pa.schema(fields_, metadata=metadata)


def predict_clips(pipeline: Pipeline, classes: Sequence[str], X: np.ndarray,
                  usable: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predicted class names and per-class scores; None and NaN where ``usable`` is false.

    Score columns follow ``pipeline.classes_`` (indices into ``classes``): a class the model
    never saw in training has no score.
    """
    usable = np.asarray(usable, dtype=bool)
    known = [classes[int(i)] for i in pipeline.classes_]
    labels = np.full(len(usable), None, dtype=object)
    scores = {name: np.full(len(usable), np.nan) for name in known}
    if usable.any():
        names = np.array(classes, dtype=object)
        labels[usable] = names[pipeline.predict(X[usable]).astype(int)]
        values, _ = class_scores(pipeline, X[usable])
        for column, name in enumerate(known):
            scores[name][usable] = values[:, column]
    return labels, scores


def top_two_margins(scores: np.ndarray) -> np.ndarray:
    """Per row, the top class score minus the second's: how far the prediction is from a change.

    ``scores`` are :func:`~classifiers.evaluation.class_scores` (one column per class: SVM margins
    from ``decision_function``, where a binary problem's one margin d is the pair (-d, d), so its
    margin is 2|d|; or probabilities). Adaptive scoring compares this with its threshold.
    """
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"class scores must be (N, classes >= 2), got shape {scores.shape}")
    top = np.partition(scores, -2, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def class_margins(pipeline: Pipeline, X: np.ndarray) -> np.ndarray:
    """The margin between the top two class scores of each descriptor (:func:`top_two_margins`)."""
    scores, _ = class_scores(pipeline, np.asarray(X, np.float32))
    return top_two_margins(scores)


def score_row(clip: Mapping[str, Any], pipeline: Pipeline, classes: Sequence[str], *, model_sha256: str,
              run_id: str, scored_at: pd.Timestamp) -> dict[str, Any]:
    """The scores row of one described clip (a descriptor-table row whose ``clip_id`` is the video's key).

    Size, modification time and attempts are left empty: the run's plan, not the worker,
    knows them (``pipelines.scoring.archive_state.settle_rows`` fills them in).
    """
    usable = clip["status"] == "ok" and bool(clip["has_face"])
    X = np.asarray(clip["descriptor"], dtype=np.float32).reshape(1, -1)
    labels, scores = predict_clips(pipeline, classes, X, np.array([usable]))
    return {
        "key": clip["clip_id"], "path": clip["path"], "clip_id": clip["clip_id"],
        "size_bytes": None, "mtime_ns": None, "status": clip["status"], "error": clip["error"], "attempts": None,
        "has_face": bool(clip["has_face"]), "predicted_label": labels[0],
        **{score_column(name): float(values[0]) for name, values in scores.items()},
        "n_frames": clip["n_frames"], "n_face_frames": clip["n_face_frames"], "n_faces": clip["n_faces"],
        "scored_at": scored_at.floor("us"), "model_sha256": model_sha256, "featurizer": clip["featurizer"],
        "run_id": run_id, "frame_step": clip.get("frame_step"), "n_frames_available": clip.get("n_frames_available"),
    }


def scores_table(rows: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Rows as an Arrow table of exactly ``schema`` (missing columns null, extra ones dropped)."""
    return frame_to_table(rows, schema)


def scores_metadata(extraction_provenance: dict[str, Any], model: dict[str, Any]) -> dict[bytes, bytes]:
    """Schema metadata: the extraction settings (as in descriptor tables) and the model that scored."""
    return {PROVENANCE_KEY: json.dumps(extraction_provenance, sort_keys=True).encode(),
            SCORING_KEY: json.dumps(model, sort_keys=True, default=str).encode()}
