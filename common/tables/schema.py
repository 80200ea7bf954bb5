"""The descriptor table: its columns, descriptor layouts and provenance metadata.

Column names are part of the interface (``pandas.read_parquet`` users rely on them); this
module is the only place they are spelled out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

DatasetKind = Literal["afew", "vgaf", "folder"]
PROVENANCE_KEY = b"emotiw_video"

AFEW_CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
VGAF_CLASSES = ("Positive", "Neutral", "Negative")

# Which statistic occupies which slice of the descriptor, per aggregation kind.
AFEW_BLOCKS = ("mean", "std", "min", "max")
VGAF_BLOCKS = ("mean_of_frame_mean", "mean_of_frame_std", "std_of_frame_mean", "std_of_frame_std")


@dataclass(frozen=True)
class DescriptorLayout:
    """Named blocks of equal width ``feature_dim`` laid end to end."""

    aggregation: Literal["afew", "vgaf"]
    feature_dim: int

    @property
    def aligns_faces(self) -> bool:
        """Group (VGAF) aggregation describes every face, aligned on its landmarks; AFEW crops one."""
        return self.aggregation == "vgaf"

    @property
    def blocks(self) -> tuple[str, ...]:
        return AFEW_BLOCKS if self.aggregation == "afew" else VGAF_BLOCKS

    @property
    def length(self) -> int:
        return len(self.blocks) * self.feature_dim

    def slices(self) -> dict[str, tuple[int, int]]:
        d = self.feature_dim
        return {name: (i * d, (i + 1) * d) for i, name in enumerate(self.blocks)}

    def to_dict(self) -> dict[str, Any]:
        return {"aggregation": self.aggregation, "feature_dim": self.feature_dim,
                "length": self.length, "blocks": self.slices()}


def aggregation_for(dataset: DatasetKind, group: bool | None = None) -> Literal["afew", "vgaf"]:
    """AFEW aggregation is one face per frame; VGAF is every face. A plain folder picks by flag."""
    if dataset == "folder":
        return "vgaf" if group else "afew"
    return dataset


def class_names(dataset: DatasetKind) -> tuple[str, ...]:
    return {"afew": AFEW_CLASSES, "vgaf": VGAF_CLASSES}.get(dataset, ())


ADAPTIVE_SCORE_FIELDS = (pa.field("frame_step", pa.int64()), pa.field("n_frames_available", pa.int64()))
"""Columns of ``jobs.score --adaptive`` in its clip and window score tables: the frame step a window
ended at (counted in the model's sampled frames; a clip row: the finest step of its windows) and the
frames exact scoring would describe there (``n_frames`` counts those described). Null in exact mode;
absent from tables of earlier versions, which readers take as exact."""


def descriptor_table_schema(layout: DescriptorLayout, provenance: dict[str, Any] | None = None) -> pa.Schema:
    """Arrow schema of the clip table; the descriptor is a fixed-size float32 list."""
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("label", pa.string()),
        pa.field("label_index", pa.int64()),
        pa.field("n_frames", pa.int64(), nullable=False),
        pa.field("n_face_frames", pa.int64(), nullable=False),
        pa.field("n_faces", pa.int64(), nullable=False),
        pa.field("has_face", pa.bool_(), nullable=False),
        pa.field("descriptor", pa.list_(pa.float32(), layout.length), nullable=False),
        pa.field("featurizer", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("max_faces_in_frame", pa.int64(), nullable=False),
        pa.field("fps", pa.float64()),
        pa.field("n_segments", pa.int64(), nullable=False),
        pa.field("n_corrupt_frames", pa.int64(), nullable=False),
    ]
    metadata = {PROVENANCE_KEY: json.dumps(provenance, sort_keys=True).encode()} if provenance else None
    return pa.schema(fields, metadata=metadata)


def frame_table_schema(score_names: tuple[str, ...]) -> pa.Schema:
    """Per-face rows written on request (``--frames-output``): the emotion trace users plot."""
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("frame_index", pa.int64(), nullable=False),
        pa.field("time_s", pa.float64()),
        pa.field("face_index", pa.int64(), nullable=False),
        pa.field("box", pa.list_(pa.float32(), 4), nullable=False),
        pa.field("probability", pa.float32(), nullable=False),
        pa.field("track_id", pa.int64()),  # the face's track in its clip (null only where tracking was off)
    ]
    fields += [pa.field(f"p_{name.lower()}", pa.float32()) for name in score_names]
    return pa.schema(fields)


def read_provenance(schema: pa.Schema) -> dict[str, Any]:
    """The provenance dict stored in a descriptor table's schema metadata ({} if absent)."""
    raw = (schema.metadata or {}).get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}
