"""Parquet files on a local disk or in a bucket: rows to Arrow tables of an exact schema, whole-file reads
and writes (readers never see half a file), and the columns of a folder of shards."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common.stores import storage


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


def frame_to_table(rows: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """A DataFrame as an Arrow table of exactly ``schema`` (missing columns null, extra ones dropped)."""
    rows = rows.reindex(columns=schema.names)
    arrays = []
    for column in schema:
        values = rows[column.name]
        if pa.types.is_timestamp(column.type):  # naive UTC values; the Arrow type carries the zone
            values = pd.to_datetime(values, utc=True).dt.tz_localize(None)
        elif pa.types.is_integer(column.type):
            values = values.astype("Int64")
        arrays.append(pa.array(values, type=column.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


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
        storage.write_atomically(url, lambda tmp: pq.write_table(table, tmp))


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
