"""Window and track rows written by the workers as clips stream, and the renumbering of a split clip's face tracks.

The describer hands out bare window and track rows (times, counts, descriptor) as soon as they
are final; a :class:`TimelineRows` turns them into the rows of the run's tables (the clip's
columns for ``jobs.extract``, classifier scores for ``jobs.score``), and a :class:`TimelineWriter`
writes them with :class:`common.tables.shards.ShardWriter` under names fixed by the clip and the part
(``<clip key>-s<segment>`` while a segment streams, ``<clip key>-m`` for the rows a split clip's
merge completes), so a retried bundle rewrites its own files and a failed clip's rows can be
found and removed, as its face rows are.

Face rows of a split clip's later segments are written with their segment's local track ids;
once the clip's segments are merged, :func:`renumber_face_tracks` rewrites those shards with
the clip's ids. The rewrite runs on the worker that merges, never on the driver, and is
idempotent: each local shard is rewritten under a new name (``...-clip``) before it is deleted,
so a retried merge finds only the shards not yet done, and rewrites one cut short the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from common.stores import storage
from common.tables.parquet_io import read_parquet, write_parquet
from common.tables.shards import ShardWriter
from common.tables.timeline_schema import track_table_schema, window_table_schema
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.face_rows import clip_shard_key

TIMELINE_ROWS_PER_SHARD = 4096
"""Rows a timeline writer buffers: one shard holds 11 hours of 10-second windows."""
MERGE_PART = "m"
RENUMBERED_SUFFIX = "-clip"


def segment_part(index: int) -> str:
    """The name part of a segment's shards (the one of face rows: ``s<index>``)."""
    return f"s{index:05d}"


def timeline_prefix(clip_id: str, part: str) -> str:
    return f"{clip_shard_key(clip_id)}-{part}"


class TimelineRows:
    """How bare window and track rows become a run's rows; the base keeps ``jobs.extract``'s descriptor rows."""

    def __init__(self, config: ExtractionConfig, provenance: dict[str, Any] | None = None) -> None:
        self._config = config
        timeline = config.timeline
        self.window_schema = window_table_schema(config.layout, provenance, timeline.windows_dict())
        self.track_schema = track_table_schema(config.spec.feature_dim, provenance, timeline.tracks_dict())
        self.window_keys: tuple[str, ...] = ("clip_id", "start_s")
        self.track_keys: tuple[str, ...] = ("clip_id", "track_id")

    def setup(self) -> None:
        """Load what the rows need, once per worker (nothing for descriptor rows)."""

    def windows(self, clip: ClipRef, n_segments: int, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Window rows with the clip's columns: the clip's ``status`` vocabulary per window."""
        base = {"clip_id": clip.clip_id, "path": clip.path, "dataset": clip.dataset, "split": clip.split,
                "label": clip.label, "label_index": clip.label_index, "featurizer": self._config.spec.name,
                "n_segments": n_segments, "n_corrupt_frames": None}
        out = []
        for row in rows:
            status = "error" if row["error"] else ("ok" if row["has_face"] else "faceless")
            out.append({**base, **row, "status": status})
        return out

    def tracks(self, clip: ClipRef, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"clip_id": clip.clip_id, **row} for row in rows]


@dataclass
class TimelineOutputs:
    """Where a run's window and track rows go (either may be None: not written) and what they look like."""

    windows_dir: str | None
    tracks_dir: str | None
    rows: TimelineRows

    def setup(self) -> None:
        self.rows.setup()

    def open(self, clip: ClipRef, part: str, n_segments: int) -> TimelineWriter:
        return TimelineWriter(self, clip, part, n_segments)


class TimelineWriter:
    """One part's window and track rows, turned into the run's rows and written as they come (a TimelineSink)."""

    def __init__(self, outputs: TimelineOutputs, clip: ClipRef, part: str, n_segments: int) -> None:
        self._rows = outputs.rows
        self._clip = clip
        self._n_segments = n_segments
        prefix = timeline_prefix(clip.clip_id, part)
        rows = outputs.rows
        self._windows = ShardWriter(outputs.windows_dir, rows.window_schema, key_columns=rows.window_keys,
                                    status_column=None, name_prefix=prefix, flush_rows=TIMELINE_ROWS_PER_SHARD) \
            if outputs.windows_dir is not None else None
        self._tracks = ShardWriter(outputs.tracks_dir, rows.track_schema, key_columns=rows.track_keys,
                                   status_column=None, name_prefix=prefix, flush_rows=TIMELINE_ROWS_PER_SHARD) \
            if outputs.tracks_dir is not None else None

    def windows(self, rows: list[dict[str, Any]]) -> None:
        if rows and self._windows is not None:
            self._windows.add(self._rows.windows(self._clip, self._n_segments, rows))

    def tracks(self, rows: list[dict[str, Any]]) -> None:
        if rows and self._tracks is not None:
            self._tracks.add(self._rows.tracks(self._clip, rows))

    def close(self) -> None:
        """Write what is buffered: call before the clip's row leaves, so a staged row implies its timeline."""
        for writer in (self._windows, self._tracks):
            if writer is not None:
                writer.close()


def renumber_face_tracks(folder: str | os.PathLike[str], clip_id: str, id_maps: Sequence[np.ndarray]) -> int:
    """Give the face rows of a split clip's later segments their clip-wide track ids; returns shards rewritten.

    The first segment's local ids are the clip's already (its map is the identity).
    """
    rewritten = 0
    for index, id_map in enumerate(id_maps):
        if index == 0:
            continue
        prefix = timeline_prefix(clip_id, segment_part(index))
        for url in storage.glob_files(str(folder), f"part-{prefix}-[0-9][0-9][0-9][0-9].parquet"):
            table = read_parquet(url)
            column = table.schema.get_field_index("track_id")
            local = table.column(column).to_numpy(zero_copy_only=False)
            clip_ids = pa.array(np.asarray(id_map, np.int64)[local.astype(np.int64)], pa.int64())
            write_parquet(table.set_column(column, table.schema.field(column), clip_ids),
                          url.removesuffix(".parquet") + f"{RENUMBERED_SUFFIX}.parquet")
            storage.remove(url)
            rewritten += 1
    return rewritten


def remove_clip_shards(folder: str | os.PathLike[str], clip_ids: Iterable[str]) -> int:
    """Delete every window or track shard of the clips that ended in error; returns files removed."""
    removed = 0
    for clip_id in clip_ids:
        for url in storage.glob_files(str(folder), f"part-{clip_shard_key(clip_id)}-*.parquet"):
            storage.remove(url)
            removed += 1
    return removed
