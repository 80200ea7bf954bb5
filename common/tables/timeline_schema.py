"""The tables of a clip's timeline that ``jobs.extract`` writes: one row per time window, one per face track.

A window row is a descriptor-table row of the window's own frames (the clip's columns, the same
statistics) with its span; a track row carries the AFEW statistics (mean, std, min, max) of the
track's faces, whatever the clip's aggregation, so its provenance names that layout.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from common.tables.schema import PROVENANCE_KEY, DescriptorLayout, descriptor_table_schema

WINDOW_SPAN_FIELDS = (pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64()))
"""Null, with ``status = "error"``, for a video that states no frame rate."""


def _metadata(provenance: dict[str, Any] | None, **extra: Any) -> dict[bytes, bytes] | None:
    if provenance is None:
        return None
    return {PROVENANCE_KEY: json.dumps({**provenance, **extra}, sort_keys=True).encode()}


def window_table_schema(layout: DescriptorLayout, provenance: dict[str, Any] | None = None,
                        windows: dict[str, Any] | None = None) -> pa.Schema:
    """The clip table's columns plus ``start_s`` and ``end_s``; ``n_corrupt_frames`` is the clip's only (null here).

    ``windows`` (the window length) joins the provenance under ``windows``.
    """
    fields = [f.with_nullable(True) if f.name == "n_corrupt_frames" else f for f in descriptor_table_schema(layout)]
    return pa.schema([*fields, *WINDOW_SPAN_FIELDS],
                     metadata=_metadata(provenance, windows=windows or {}))


def track_table_schema(feature_dim: int, provenance: dict[str, Any] | None = None,
                       tracks: dict[str, Any] | None = None) -> pa.Schema:
    """One row per (clip, track): its span (first to last face), face frames and AFEW descriptor (4 x D)."""
    layout = DescriptorLayout("afew", feature_dim)
    fields = [
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("n_frames", pa.int64(), nullable=False),
        pa.field("descriptor", pa.list_(pa.float32(), layout.length), nullable=False),
    ]
    extra: dict[str, Any] = {"tracks": tracks or {}}
    if provenance is not None:
        extra["layout"] = layout.to_dict()  # the track's own statistics, whatever the clip's aggregation
    return pa.schema(fields, metadata=_metadata(provenance, **extra))
