"""Rows written as Parquet shards while a run goes on, and the one rule that settles rows written twice.

Every table the workers write (clip rows, per-face rows, a face export's manifest, a scoring
run's staged scores) goes through :class:`ShardWriter`: it buffers rows and writes a shard every
``flush_rows`` rows, when it is flushed, and, with ``flush_seconds``, once the oldest buffered row
has waited that long (a slow next clip does not hold finished ones back), so what is written
survives a kill. Shard names are deterministic: a writer given a ``name_prefix`` names its shards
``part-<prefix>-<n>`` (a retried segment rewrites the same files), and one without names each
shard by the rows it holds (keys and statuses), so a retried bundle that reached the same result
replaces its earlier shard.

A retried bundle that reached another result (an error the first time, ``ok`` the second, or the
reverse) leaves both. :func:`winning_attempts` settles them, the same way for every table: a row
with a final status (anything but ``error``) beats an ``error`` row of the same key, then the
latest attempt wins. An attempt is a shard; its time is the writer's clock, kept in the shard's
footer (:data:`WRITTEN_AT_KEY`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common.stores import storage
from common.flush_policy import FLUSH_EVERY_ROWS
from common.tables.parquet_io import read_parquet, rows_to_table, shard_paths, write_parquet

log = logging.getLogger(__name__)

WRITTEN_AT_KEY = b"emotiw_written_at_ns"
"""Shard footer key: when the writer wrote it (nanoseconds since the epoch), the order of attempts."""
ATTEMPT_COLUMN = "_attempt"
"""Column that :func:`read_shards` adds: the written-at time of the row's shard."""
ERROR_STATUS = "error"


def shard_name(rows: Sequence[dict[str, Any]], key_columns: Sequence[str], status_column: str | None) -> str:
    """A name derived from what the shard holds: the same rows with the same outcome, the same name."""
    digest = hashlib.sha1()
    for row in rows:
        parts = [str(row.get(column)) for column in key_columns]
        if status_column is not None:
            parts.append(str(row.get(status_column)))
        digest.update("\x1f".join(parts).encode() + b"\x1e")
    return digest.hexdigest()[:20]


def write_rows(rows: Sequence[dict[str, Any]], folder: str | os.PathLike[str], schema: pa.Schema, name: str) -> str:
    """One shard ``part-<name>.parquet`` (local or in a bucket), its write time in its footer; returns its path."""
    return write_table(rows_to_table(rows, schema), folder, name)


def write_table(table: pa.Table, folder: str | os.PathLike[str], name: str) -> str:
    """:func:`write_rows` for a table already built."""
    metadata = dict(table.schema.metadata or {})
    metadata[WRITTEN_AT_KEY] = str(time.time_ns()).encode()
    target = storage.join(folder, f"part-{name}.parquet")
    write_parquet(table.replace_schema_metadata(metadata), target)
    return target


class ShardWriter:
    """Buffers rows and writes them as shards of ``schema`` under ``folder``; see the module doc.

    Call :meth:`close` when done: it stops the timer and writes what is left. Thread-safe, so the
    timer and the caller can both flush.
    """

    def __init__(self, folder: str | os.PathLike[str], schema: pa.Schema, *, key_columns: Sequence[str] = ("clip_id",),
                 status_column: str | None = "status", name_prefix: str | None = None,
                 flush_rows: int = FLUSH_EVERY_ROWS, flush_seconds: float | None = None) -> None:
        if flush_rows <= 0:
            raise ValueError(f"flush_rows must be positive, got {flush_rows}")
        if flush_seconds is not None and flush_seconds <= 0:
            raise ValueError(f"flush_seconds must be positive, got {flush_seconds}")
        missing = [c for c in (*key_columns, *([status_column] if status_column else [])) if c not in schema.names]
        if name_prefix is None and missing:  # content names need the keys, or every shard would get one name
            raise ValueError(f"columns {missing} are not in the shards' schema ({', '.join(schema.names)})")
        self.folder = str(folder)
        self.schema = schema
        self._key_columns = tuple(key_columns)
        self._status_column = status_column
        self._prefix = name_prefix
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._parts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.written: list[str] = []
        if flush_seconds is not None:
            threading.Thread(target=self._flush_when_old, daemon=True, name="flush-shards").start()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                if not self._buffer:
                    self._oldest = time.monotonic()
                self._buffer.append(row)
                if len(self._buffer) >= self._flush_rows:
                    self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()

    def _flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if not rows:
            return
        if self._prefix is not None:
            name = f"{self._prefix}-{self._parts:04d}"
        else:
            name = shard_name(rows, self._key_columns, self._status_column)
        try:
            self.written.append(write_rows(rows, self.folder, self.schema, name))
        except BaseException:
            self._buffer = rows + self._buffer  # kept: the next flush retries them
            raise
        self._parts += 1

    def _flush_when_old(self) -> None:
        assert self._flush_seconds is not None
        while not self._stop.wait(min(1.0, self._flush_seconds / 4)):
            with self._lock:
                if self._buffer and time.monotonic() - self._oldest >= self._flush_seconds:
                    try:
                        self._flush()
                    except Exception as exc:  # noqa: BLE001 - a thread cannot fail the caller; the next flush retries
                        log.warning("timed flush of %d rows failed (%s); they stay buffered", len(self._buffer), exc)


def written_at(path: str) -> int:
    """A shard's write time from its footer (0 for a shard written without one)."""
    if storage.is_remote(path):
        fs, inner = storage.filesystem(path)
        with fs.open(inner, "rb") as handle:
            metadata = pq.read_schema(handle).metadata or {}
    else:
        metadata = pq.read_schema(path).metadata or {}
    return int(metadata.get(WRITTEN_AT_KEY, b"0"))


def read_shards(folder: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table | None:
    """Every shard of a folder as one table, with :data:`ATTEMPT_COLUMN` (None when there is none).

    A shard cut short by a kill cannot be read; it is skipped with a warning (its rows are
    missing, and the caller records the clips without a row as it does for any lost clip).
    """
    tables = []
    for path in shard_paths(folder):
        try:
            table = read_parquet(path, columns)
        except (OSError, ValueError, pa.ArrowException) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        attempt = written_at(path)
        tables.append(table.replace_schema_metadata(None).append_column(
            ATTEMPT_COLUMN, pa.array(np.full(len(table), attempt, np.int64))))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


def winning_attempts(keys: pd.DataFrame, statuses: pd.Series, attempts: pd.Series, *,
                     one_row_per_key: bool = True) -> np.ndarray:
    """Which rows to keep: for each key (a row of ``keys``), the rows of its winning attempt.

    A final status (anything but ``error``) beats an error; among those the latest attempt wins.
    With ``one_row_per_key`` (a clip table) only the first row of the winner is kept; without it
    (a face export's manifest, several images per clip) every row of the winning attempt is.
    """
    frame = keys.reset_index(drop=True)
    groups = [frame[column] for column in frame.columns]
    final = (statuses.reset_index(drop=True) != ERROR_STATUS).astype(int)
    attempt = attempts.reset_index(drop=True).astype("int64")
    best_final = final.groupby(groups, dropna=False).transform("max")
    candidate = final == best_final
    best_attempt = attempt.where(candidate).groupby(groups, dropna=False).transform("max")
    keep = candidate & (attempt == best_attempt)
    chosen = keep.to_numpy(dtype=bool).copy()
    if one_row_per_key:  # the same attempt holding a key twice: its first row
        positions = np.flatnonzero(chosen)
        chosen[positions[frame.iloc[positions].duplicated(keep="first").to_numpy()]] = False
    return chosen


def settle_table(table: pa.Table, key_columns: Sequence[str], *, status_column: str = "status",
                 one_row_per_key: bool = True) -> pa.Table:
    """A table read by :func:`read_shards` with the losing attempts' rows dropped, and without the attempt column."""
    keys = table.select(list(key_columns)).to_pandas()
    keep = winning_attempts(keys, table.column(status_column).to_pandas(), table.column(ATTEMPT_COLUMN).to_pandas(),
                            one_row_per_key=one_row_per_key)
    return table.filter(pa.array(keep)).drop_columns([ATTEMPT_COLUMN])


def settle_shards(folder: str | os.PathLike[str], schema: pa.Schema, key_columns: Sequence[str] = ("clip_id",), *,
                  status_column: str = "status", one_row_per_key: bool = True) -> int:
    """Apply :func:`winning_attempts` to a folder of shards in place; returns how many rows were dropped.

    Nothing is rewritten when no key was written twice (the usual case), and then only the key
    columns are read. Otherwise the kept rows are written as one shard before the old shards are
    removed, so a kill in between leaves rows twice (settled again by the next call), never none.
    """
    keys = read_shards(folder, list(key_columns))
    if keys is None or not keys.select(list(key_columns)).to_pandas().duplicated().any():
        return 0
    table = read_shards(folder)
    assert table is not None
    settled = settle_table(table, key_columns, status_column=status_column, one_row_per_key=one_row_per_key)
    dropped = table.num_rows - settled.num_rows
    if dropped:
        old = shard_paths(folder)
        kept = write_table(settled.select(schema.names).cast(schema), folder, f"settled-{time.time_ns()}")
        for path in old:
            if path != kept:
                storage.remove(path)
    return dropped

