"""Scores over time: the window and track tables of ``jobs.score``, and their rows from descriptors.

A window row scores the descriptor of the window's own frames (the clip's statistics), a
track row the descriptor of one person's faces. Rows without a face, and a video's window
error row (no frame rate), get no prediction and null scores: a zero descriptor is never fed
to the classifier. Pure functions, batched over a part of a clip; the Beam step that calls
them on the workers is in ``pipelines.graph.scoring_steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.pipeline import Pipeline

from classifiers.scoring import predict_clips, score_column
from common.tables.schema import ADAPTIVE_SCORE_FIELDS

RUN_FIELDS = (pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
              pa.field("run_id", pa.string(), nullable=False))


def window_scores_schema(score_classes: Sequence[str], metadata: dict[bytes, bytes] | None = None) -> pa.Schema:
    """One row per time window of a video's score: its span, counts, prediction and per-class scores.

    ``start_s``/``end_s`` are null, and ``error`` says why, in the one row of a video whose
    frames cannot be placed in time (it states no frame rate).
    """
    return pa.schema([
        pa.field("key", pa.string(), nullable=False),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("n_frames", pa.int64(), nullable=False),
        pa.field("n_face_frames", pa.int64(), nullable=False),
        pa.field("has_face", pa.bool_(), nullable=False),
        pa.field("predicted_label", pa.string()),
        *(pa.field(score_column(c), pa.float64()) for c in score_classes),
        pa.field("error", pa.string()),
        *RUN_FIELDS,
        *ADAPTIVE_SCORE_FIELDS,
    ], metadata=metadata)


def track_scores_schema(score_classes: Sequence[str], metadata: dict[bytes, bytes] | None = None) -> pa.Schema:
    """One row per face track of a video's score: who, when (first to last face), how many frames, the prediction."""
    return pa.schema([
        pa.field("key", pa.string(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("n_frames", pa.int64(), nullable=False),
        pa.field("predicted_label", pa.string()),
        *(pa.field(score_column(c), pa.float64()) for c in score_classes),
        *RUN_FIELDS,
    ], metadata=metadata)


def _predictions(pipeline: Pipeline, classes: Sequence[str], descriptors: Sequence[np.ndarray],
                 usable: np.ndarray) -> list[dict[str, Any]]:
    """``predicted_label`` and ``score_<class>`` of each descriptor; None and NaN where not usable."""
    if not len(descriptors):
        return []
    X = np.stack([np.asarray(d, np.float32).reshape(-1) for d in descriptors])
    labels, scores = predict_clips(pipeline, classes, X, usable)
    return [{"predicted_label": labels[i], **{score_column(name): float(values[i]) for name, values in scores.items()}}
            for i in range(len(X))]


def score_window_rows(key: str, rows: Sequence[dict[str, Any]], pipeline: Pipeline, classes: Sequence[str], *,
                      run_id: str, scored_at: pd.Timestamp) -> list[dict[str, Any]]:
    """Scores rows of a video's bare window rows (span, counts, ``has_face``, ``descriptor``, ``error``)."""
    usable = np.array([bool(r["has_face"]) and not r.get("error") for r in rows], dtype=bool)
    predictions = _predictions(pipeline, classes, [r["descriptor"] for r in rows], usable)
    when = scored_at.floor("us")
    return [{"key": key, "start_s": r["start_s"], "end_s": r["end_s"], "n_frames": r["n_frames"],
             "n_face_frames": r["n_face_frames"], "has_face": bool(r["has_face"]), **p, "error": r.get("error"),
             "scored_at": when, "run_id": run_id, "frame_step": r.get("frame_step"),
             "n_frames_available": r.get("n_frames_available")} for r, p in zip(rows, predictions)]


def score_track_rows(key: str, rows: Sequence[dict[str, Any]], descriptors: Sequence[np.ndarray],
                     pipeline: Pipeline, classes: Sequence[str], *, run_id: str,
                     scored_at: pd.Timestamp) -> list[dict[str, Any]]:
    """Scores rows of a video's bare track rows; ``descriptors`` are the tracks' in the model's layout."""
    predictions = _predictions(pipeline, classes, descriptors, np.ones(len(rows), dtype=bool))
    when = scored_at.floor("us")
    return [{"key": key, "track_id": r["track_id"], "start_s": r["start_s"], "end_s": r["end_s"],
             "n_frames": r["n_frames"], **p, "scored_at": when, "run_id": run_id} for r, p in zip(rows, predictions)]
