"""The shard writer's flush policy: every N rows, and by a timer once a row has waited long enough."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from pipelines.extraction.clip_records import ClipResult
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.write_steps import WriteShardsFn

SCHEMA = pa.schema([pa.field("clip_id", pa.string(), nullable=False), pa.field("status", pa.string())])


def _writer(folder: Path, rows: int, seconds: float | None) -> WriteShardsFn:
    config = ExtractionConfig(dataset="folder", featurizer="effnet_lite0_imagenet")
    return WriteShardsFn(config, {}, str(folder), schema=SCHEMA, flush_rows=rows, flush_seconds=seconds)


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def test_rows_are_written_every_n_rows_and_at_the_end_of_the_bundle(tmp_path: Path) -> None:
    writer = _writer(tmp_path, 2, None)
    writer.start_bundle()
    for key in "abc":
        assert list(writer.process(ClipResult(row={"clip_id": key, "status": "ok"}))) == []
    part = ("clip", object())  # a segment of a split clip passes on to be merged, unwritten
    assert list(writer.process(part)) == [part]
    assert len(_parts(tmp_path)) == 1
    writer.finish_bundle()
    assert sorted(pd.read_parquet(tmp_path)["clip_id"]) == ["a", "b", "c"] and len(_parts(tmp_path)) == 2


def test_a_row_waiting_longer_than_the_flush_interval_is_written_without_a_next_row(tmp_path: Path) -> None:
    writer = _writer(tmp_path, 50, 0.3)
    writer.start_bundle()
    list(writer.process(ClipResult(row={"clip_id": "a", "status": "ok"})))
    deadline = time.monotonic() + 10
    while not _parts(tmp_path):  # the next clip is still being described: the timer writes "a"
        assert time.monotonic() < deadline, "the buffered row was never flushed"
        time.sleep(0.05)
    assert pd.read_parquet(tmp_path)["clip_id"].tolist() == ["a"]
    list(writer.process(ClipResult(row={"clip_id": "b", "status": "ok"})))
    writer.finish_bundle()
    assert sorted(pd.read_parquet(tmp_path)["clip_id"]) == ["a", "b"] and len(_parts(tmp_path)) == 2
