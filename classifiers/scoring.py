"""Scoring an archive of videos incrementally: which videos need work, predictions, the scores table.

A nightly run over the same archive should only pay for what changed. A video is identified by
its path and recognised as unchanged by its size and modification time; its previous row is
kept when it was scored by the same model and did not fail. Everything here is a pure function
on small dataclasses, numpy arrays and pandas frames, except :func:`read_scores` and
:func:`write_scores`, which are the table's only readers and writers.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.pipeline import Pipeline

from classifiers.evaluation import class_scores
from classifiers.model_io import ModelProvenance
from featurizers.backends import Backend
from featurizers.decode import FrameSampling
from featurizers.detect import DetectorConfig
from pipelines.config import ExtractionConfig
from pipelines.output import write_atomically
from pipelines.schema import PROVENANCE_KEY

logger = logging.getLogger(__name__)

SCORES_FILE = "scores.parquet"
SCORING_KEY = b"emotiw_video_scoring"
"""Schema-metadata key of the model that wrote a scores table (the extraction's sits under PROVENANCE_KEY)."""

# Statuses whose rows stay valid while the file is unchanged; a failed video is always retried.
FINAL_STATUSES = frozenset({"ok", "faceless"})

# Why a video is (re)scored, as counted in the summary.
NEW, CHANGED, RETRIED, OTHER_MODEL = "new", "changed", "failed before", "scored by another model"

SCORE_PREFIX = "score_"
LEADING_COLUMNS = ("path", "clip_id", "size_bytes", "mtime_ns", "status", "error", "has_face", "predicted_label")
TRAILING_COLUMNS = ("n_frames", "n_face_frames", "n_faces", "scored_at", "model_sha256", "featurizer")


def score_column(class_name: str) -> str:
    return f"{SCORE_PREFIX}{class_name}"


def scores_schema(score_classes: Sequence[str], metadata: dict[bytes, bytes] | None = None) -> pa.Schema:
    """Arrow schema of ``scores.parquet``: one row per video, one score column per class the model knows.

    ``predicted_label`` and the scores are null for faceless and failed videos: an archive user
    is better served by "no prediction" than by the class a model gives an all-zero descriptor.
    """
    fields_ = [
        pa.field("path", pa.string(), nullable=False),
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("has_face", pa.bool_(), nullable=False),
        pa.field("predicted_label", pa.string()),
        *(pa.field(score_column(c), pa.float64()) for c in score_classes),
        pa.field("n_frames", pa.int64()),
        pa.field("n_face_frames", pa.int64()),
        pa.field("n_faces", pa.int64()),
        pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("featurizer", pa.string(), nullable=False),
    ]
    return pa.schema(fields_, metadata=metadata)


@dataclass(frozen=True)
class ArchiveVideo:
    """One video of the archive as listed now; size and mtime are None when the file could not be stat'ed."""

    path: str
    clip_id: str
    size_bytes: int | None
    mtime_ns: int | None


def stat_videos(listing: Sequence[tuple[str, str]]) -> list[ArchiveVideo]:
    """Size and modification time of each ``(path, clip_id)``, taken before extraction.

    Taking them first means a file that changes while it is being scored looks changed on the
    next run, never the other way round.
    """
    videos = []
    for path, clip_id in listing:
        try:
            stat = os.stat(path)
            videos.append(ArchiveVideo(path, clip_id, stat.st_size, stat.st_mtime_ns))
        except OSError:  # vanished or unreadable: extraction will record why
            videos.append(ArchiveVideo(path, clip_id, None, None))
    return videos


@dataclass(frozen=True)
class ScoringPlan:
    """What a run does: previous rows kept as they are, videos to (re)score and why, rows dropped."""

    kept: pd.DataFrame
    """Previous rows of unchanged videos, with ``clip_id`` refreshed from the current listing."""
    to_score: list[ArchiveVideo]
    reasons: dict[str, str] = field(default_factory=dict)
    """Path -> why it is scored (NEW, CHANGED, RETRIED or OTHER_MODEL)."""
    dropped: int = 0
    """Previous rows whose video is no longer in the archive."""

    def reason_counts(self) -> dict[str, int]:
        return dict(Counter(self.reasons.values()))


def plan_scoring(videos: Sequence[ArchiveVideo], previous: pd.DataFrame | None, model_sha256: str) -> ScoringPlan:
    """Decide which videos to extract: new, changed (size or mtime), failed before, or all of them
    when the previous table was written by another model (its scores are not comparable)."""
    empty = pd.DataFrame(columns=list(LEADING_COLUMNS + TRAILING_COLUMNS))
    if previous is None or previous.empty:
        return ScoringPlan(empty, list(videos), {v.path: NEW for v in videos})
    previous = previous.drop_duplicates("path", keep="last").set_index("path", drop=False)
    current = {v.path for v in videos}
    dropped = int((~previous.index.isin(list(current))).sum())
    other_model = previous.index[previous["model_sha256"] != model_sha256]
    if len(other_model):
        return ScoringPlan(empty, list(videos), {v.path: OTHER_MODEL for v in videos}, dropped)
    # One dict lookup per video: archives run to hundreds of thousands of files.
    known = {path: (_as_int(size), _as_int(mtime), status) for path, size, mtime, status in zip(
        previous["path"], previous["size_bytes"], previous["mtime_ns"], previous["status"])}
    kept_paths: list[str] = []
    to_score: list[ArchiveVideo] = []
    reasons: dict[str, str] = {}
    for video in videos:
        before = known.get(video.path)
        if before is None:
            reasons[video.path] = NEW
        elif video.size_bytes is None or before[:2] != (video.size_bytes, video.mtime_ns):
            reasons[video.path] = CHANGED
        elif before[2] not in FINAL_STATUSES:
            reasons[video.path] = RETRIED
        else:
            kept_paths.append(video.path)
            continue
        to_score.append(video)
    kept = previous.loc[kept_paths].reset_index(drop=True)
    # Clip ids follow the current listing: a new video with a repeated stem renames both.
    kept["clip_id"] = kept["path"].map({v.path: v.clip_id for v in videos})
    return ScoringPlan(kept, to_score, reasons, dropped)


def _as_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


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


def scored_rows(videos: Sequence[ArchiveVideo], clips: pd.DataFrame, labels: np.ndarray,
                scores: dict[str, np.ndarray], *, model_sha256: str, featurizer: str,
                scored_at: pd.Timestamp) -> pd.DataFrame:
    """Scores-table rows of freshly extracted videos.

    ``clips`` holds the descriptor table's per-clip columns (clip_id, status, error, has_face,
    n_frames, n_face_frames, n_faces) in the same row order as ``labels`` and ``scores``.
    """
    by_clip = {v.clip_id: v for v in videos}
    missing = sorted(set(clips["clip_id"]) - set(by_clip))
    if missing:
        raise ValueError(f"descriptor rows for clips that were not listed: {missing[:5]}")
    rows = pd.DataFrame({
        "path": [by_clip[c].path for c in clips["clip_id"]],
        "clip_id": clips["clip_id"].to_numpy(),
        "size_bytes": [by_clip[c].size_bytes for c in clips["clip_id"]],
        "mtime_ns": [by_clip[c].mtime_ns for c in clips["clip_id"]],
        "status": clips["status"].to_numpy(),
        "error": clips["error"].to_numpy(),
        "has_face": clips["has_face"].to_numpy(dtype=bool),
        "predicted_label": labels,
        **{score_column(name): values for name, values in scores.items()},
        "n_frames": clips["n_frames"].to_numpy(),
        "n_face_frames": clips["n_face_frames"].to_numpy(),
        "n_faces": clips["n_faces"].to_numpy(),
    })
    rows["scored_at"] = scored_at.floor("us")  # the column holds microseconds
    rows["model_sha256"] = model_sha256
    rows["featurizer"] = featurizer
    return rows


def merge_scores(kept: pd.DataFrame, fresh: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Kept and fresh rows as one table of ``schema``, ordered by path (fresh rows win a tie)."""
    columns = schema.names
    parts = [frame.reindex(columns=columns) for frame in (kept, fresh) if len(frame)]
    merged = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    merged = merged.drop_duplicates("path", keep="last").sort_values("path", kind="stable")
    arrays = []
    for column in schema:
        values = merged[column.name]
        if pa.types.is_timestamp(column.type):  # naive UTC values; the Arrow type carries the zone
            values = pd.to_datetime(values, utc=True).dt.tz_localize(None)
        arrays.append(pa.array(values, type=column.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def extraction_config_for_model(provenance: ModelProvenance, *, weights: str | None = None,
                                device: str = "auto", face_batch_size: int = 32,
                                backend: Backend = "auto", segment_frames: int = ExtractionConfig.segment_frames,
                                ) -> ExtractionConfig:
    """The extraction settings a model was trained on, for an unlabelled folder of videos.

    Featurizer, aggregation, detector and frame sampling come from the model's descriptor
    provenance, so scoring describes videos exactly as the training clips were described;
    settings missing from an old provenance fall back to the dataset defaults (logged).
    Raises ValueError for a featurizer this project does not know.
    """
    layout = provenance.layout or {}
    group = layout.get("aggregation") == "vgaf"
    described = provenance.descriptor_provenance or {}
    detector = ExtractionConfig.default_detector("folder", group)
    if described.get("detector"):
        detector = _dataclass_from_dict(DetectorConfig, described["detector"])
    else:
        logger.warning("model provenance records no detector settings; using the defaults %s", detector)
    sampling = FrameSampling()
    if described.get("frames"):
        sampling = _dataclass_from_dict(FrameSampling, described["frames"])
    else:
        logger.warning("model provenance records no frame sampling; using every frame")
    config = ExtractionConfig(dataset="folder", featurizer=provenance.featurizer, weights=weights,
                              detector=detector, sampling=sampling, face_batch_size=face_batch_size,
                              device=device, group=group, backend=backend, segment_frames=segment_frames)
    config.spec  # noqa: B018 - raises ValueError naming the known featurizers
    return config


def _dataclass_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a frozen settings dataclass from JSON (lists back to tuples, unknown keys ignored)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class PreviousScores:
    """The scores table of an earlier run, or why there is none to build on."""

    table: pd.DataFrame | None
    problem: str | None = None


REQUIRED_PREVIOUS_COLUMNS = ("path", "size_bytes", "mtime_ns", "status", "model_sha256")


def read_scores(path: str | os.PathLike[str]) -> PreviousScores:
    """Read an earlier ``scores.parquet``; an unreadable or foreign file means "score everything"."""
    path = Path(path)
    if not path.exists():
        return PreviousScores(None)
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        return PreviousScores(None, f"{path} is not a readable Parquet file ({exc})")
    missing = [c for c in REQUIRED_PREVIOUS_COLUMNS if c not in table.columns]
    if missing:
        return PreviousScores(None, f"{path} lacks the scores columns {missing}")
    return PreviousScores(table)


def scores_metadata(extraction_provenance: dict[str, Any], model: dict[str, Any]) -> dict[bytes, bytes]:
    """Schema metadata: the extraction settings (as in descriptor tables) and the model that scored."""
    return {PROVENANCE_KEY: json.dumps(extraction_provenance, sort_keys=True).encode(),
            SCORING_KEY: json.dumps(model, sort_keys=True, default=str).encode()}


def write_scores(table: pa.Table, path: str | os.PathLike[str]) -> Path:
    """Readers of the scores see the old table or the new one, never half of one."""
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))

