"""Parquet output: shards written by workers into a staging folder, published atomically.

A run writes into ``<output>.incomplete-<id>/``; only when every clip has its row is that
folder renamed to ``<output>``, so an interrupted run never leaves a table that looks whole.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SUMMARY_FILE = "_summary.json"  # leading underscore: pyarrow and pandas skip it when reading


def rows_to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts keyed by column) to an Arrow table of exactly ``schema``."""
    columns = {}
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_fixed_size_list(field.type):
            flat = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in values]) if values else np.zeros(0, np.float32)
            columns[field.name] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), field.type.list_size)
        else:
            columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=schema)


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden file beside ``path``, then rename it into place.

    Readers see the old file or the new one, never half of one; a failed write leaves nothing.
    (A plain unique name rather than ``mkstemp``, whose 0600 mode would make the file private.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_shard(rows: Sequence[dict[str, Any]], folder: str | os.PathLike[str], schema: pa.Schema,
                name: str | None = None) -> str:
    """Write one Parquet shard, uniquely named unless ``name`` is given; returns its path.

    A given name makes the write idempotent: a retried bundle replaces its earlier shard.
    """
    table = rows_to_table(rows, schema)
    path = Path(folder) / f"part-{name or uuid.uuid4().hex}.parquet"
    return str(write_atomically(path, lambda tmp: pq.write_table(table, tmp)))


def shard_paths(folder: str | os.PathLike[str]) -> list[Path]:
    return sorted(Path(folder).glob("part-*.parquet"))


def read_columns(folder: str | os.PathLike[str], columns: Sequence[str]) -> dict[str, list[Any]]:
    """Some columns of every shard, in one pass over the shards."""
    values: dict[str, list[Any]] = {column: [] for column in columns}
    for path in shard_paths(folder):
        table = pq.read_table(path, columns=list(columns))
        for column in columns:
            values[column] += table.column(column).to_pylist()
    return values


def read_column(folder: str | os.PathLike[str], column: str) -> list[Any]:
    return read_columns(folder, [column])[column]


def staging_dir(output: str | os.PathLike[str]) -> Path:
    target = Path(output)
    staging = target.with_name(f"{target.name}.incomplete-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    return staging


def deduplicate_shards(folder: Path, schema: pa.Schema, key: str = "clip_id") -> int:
    """Drop rows repeated by a runner's retried bundles; returns how many were dropped."""
    ids = read_column(folder, key)
    if len(ids) == len(set(ids)):
        return 0
    seen: set[Any] = set()
    kept = []
    for path in shard_paths(folder):
        table = pq.read_table(path)
        mask = []
        for value in table.column(key).to_pylist():
            mask.append(value not in seen)
            seen.add(value)
        kept.append(table.filter(pa.array(mask)))
        path.unlink()
    pq.write_table(pa.concat_tables(kept).cast(schema), folder / f"part-{uuid.uuid4().hex}.parquet")
    return len(ids) - len(seen)


def publish(staging: Path, output: str | os.PathLike[str], summary: dict[str, Any] | None = None) -> Path:
    """Atomically replace ``output`` by the finished staging folder."""
    target = Path(output)
    if summary is not None:
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    if target.exists():
        if target.is_file():
            raise FileExistsError(f"{target} is a file; --output must be a folder")
        old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    return target


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    counts = Counter(statuses)
    return {status: counts.get(status, 0) for status in ("ok", "faceless", "error")}
