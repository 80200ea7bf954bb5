"""Parquet output: shards written by workers into a staging folder, published atomically.

A run writes into ``<output>.incomplete-<id>/``; only when every clip has its row is that
folder renamed to ``<output>``, so an interrupted run never leaves a table that looks whole.
``<output>`` may be an object-store URL (``s3://bucket/prefix``): the shards are then written
to ``<output>.incomplete-<id>/`` in the bucket, and publishing copies them under ``<output>``
(object stores have no rename: a reader may see a mix while the copy runs, never a half file).
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

from common import storage

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
    """Write one Parquet shard (a local folder or a bucket prefix); returns its path.

    Uniquely named unless ``name`` is given: a given name makes the write idempotent, so a
    retried bundle replaces its earlier shard.
    """
    table = rows_to_table(rows, schema)
    target = storage.join(folder, f"part-{name or uuid.uuid4().hex}.parquet")
    if storage.is_remote(target):  # one PUT: the object appears whole or not at all
        fs, path = storage.filesystem(target)
        pq.write_table(table, path, filesystem=fs)
        return target
    return str(write_atomically(target, lambda tmp: pq.write_table(table, tmp)))


def shard_paths(folder: str | os.PathLike[str]) -> list[str]:
    return storage.glob_files(str(folder), "part-*.parquet")


def read_parquet(url: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file from a local path or a bucket."""
    if storage.is_remote(url):
        fs, path = storage.filesystem(url)
        return pq.read_table(path, columns=list(columns) if columns else None, filesystem=fs)
    return pq.read_table(url, columns=list(columns) if columns else None)


def write_parquet(table: pa.Table, url: str) -> None:
    """Readers see the whole file or none: renamed into place on disk, a single PUT in a bucket."""
    if storage.is_remote(url):
        fs, path = storage.filesystem(url)
        pq.write_table(table, path, filesystem=fs)
    else:
        write_atomically(url, lambda tmp: pq.write_table(table, tmp))


def read_columns(folder: str | os.PathLike[str], columns: Sequence[str]) -> dict[str, list[Any]]:
    """Some columns of every shard, in one pass over the shards."""
    values: dict[str, list[Any]] = {column: [] for column in columns}
    for path in shard_paths(folder):
        table = read_parquet(path, columns)
        for column in columns:
            values[column] += table.column(column).to_pylist()
    return values


def read_column(folder: str | os.PathLike[str], column: str) -> list[Any]:
    return read_columns(folder, [column])[column]


def staging_dir(output: str | os.PathLike[str]) -> str:
    if storage.is_remote(output):  # prefixes need no creating
        return f"{str(output).rstrip('/')}.incomplete-{uuid.uuid4().hex[:8]}"
    target = Path(output)
    staging = target.with_name(f"{target.name}.incomplete-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    return str(staging)


def deduplicate_shards(folder: str | os.PathLike[str], schema: pa.Schema, key: str = "clip_id") -> int:
    """Drop rows repeated by a runner's retried bundles; returns how many were dropped."""
    ids = read_column(folder, key)
    if len(ids) == len(set(ids)):
        return 0
    seen: set[Any] = set()
    kept = []
    for path in shard_paths(folder):
        table = read_parquet(path)
        mask = []
        for value in table.column(key).to_pylist():
            mask.append(value not in seen)
            seen.add(value)
        kept.append(table.filter(pa.array(mask)))
        storage.remove(path)
    write_parquet(pa.concat_tables(kept).cast(schema), storage.join(folder, f"part-{uuid.uuid4().hex}.parquet"))
    return len(ids) - len(seen)


def publish(staging: str | os.PathLike[str], output: str | os.PathLike[str],
            summary: dict[str, Any] | None = None) -> str:
    """Atomically replace ``output`` by the finished staging folder (on a bucket: see the module doc)."""
    if storage.is_remote(output):
        return _publish_remote(str(staging), str(output), summary)
    staging, target = Path(staging), Path(output)
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
    return str(target)


def _publish_remote(staging: str, output: str, summary: dict[str, Any] | None) -> str:
    """Copy the staged objects under ``output`` (server side), drop what the last run left, clean up."""
    fs, target = storage.filesystem(output)
    _, source = storage.filesystem(staging)
    target, source = target.rstrip("/"), source.rstrip("/")
    if summary is not None:
        storage.write_bytes(storage.join(staging, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True).encode())
    fs.invalidate_cache()
    old = set(fs.find(target)) if fs.exists(target) else set()
    new = set()
    for path in fs.find(source):
        destination = f"{target}/{path[len(source) + 1:]}"
        fs.copy(path, destination)
        new.add(destination)
    for path in sorted(old - new):
        fs.rm_file(path)
    fs.rm(source, recursive=True)
    return output


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    counts = Counter(statuses)
    return {status: counts.get(status, 0) for status in ("ok", "faceless", "error")}
