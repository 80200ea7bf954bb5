"""Per-face rows (``--frames-output``) written while a clip streams, idempotently.

A long clip's face rows are written every few thousand rows instead of being held until
the clip ends. Shard names derive from the clip, the segment and a running part number, all
fixed by the input, so a retried bundle rewrites the same files instead of adding duplicates,
and the rows of a clip that ends in error can be found and removed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

import pyarrow as pa

from common.stores import storage
from common.tables.shards import ShardWriter

FACE_ROWS_PER_SHARD = 4096


def clip_shard_key(clip_id: str) -> str:
    """A file-name-safe key of a clip (clip ids may hold slashes)."""
    return hashlib.sha1(clip_id.encode()).hexdigest()[:16]


def face_row_writer(folder: str | os.PathLike[str], schema: pa.Schema, clip_id: str, segment: int,
                    rows_per_shard: int = FACE_ROWS_PER_SHARD) -> ShardWriter:
    """A writer of one segment's face rows, its shards named by clip, segment and part."""
    return ShardWriter(folder, schema, name_prefix=f"{clip_shard_key(clip_id)}-s{segment:05d}",
                       flush_rows=rows_per_shard)


def remove_face_rows(folder: str | os.PathLike[str], clip_ids: Iterable[str]) -> int:
    """Delete the face shards of clips that ended in error (no partial trace survives); returns files removed."""
    removed = 0
    for clip_id in clip_ids:
        for url in storage.glob_files(str(folder), f"part-{clip_shard_key(clip_id)}-s*.parquet"):
            storage.remove(url)
            removed += 1
    return removed
