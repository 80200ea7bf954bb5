"""The one shard writer and the one rule for rows written twice (retried bundles), on real shards."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from common.tables.shards import (
    ATTEMPT_COLUMN,
    ShardWriter,
    read_shards,
    settle_shards,
    settle_table,
    winning_attempts,
    written_at,
)

SCHEMA = pa.schema([pa.field("clip_id", pa.string(), nullable=False), pa.field("status", pa.string()),
                    pa.field("value", pa.int64())])


def _write(folder: Path, *rows: tuple[str, str, int]) -> list[str]:
    """One attempt: a writer that flushes its rows as one shard, as a bundle does."""
    writer = ShardWriter(folder, SCHEMA)
    writer.add({"clip_id": c, "status": s, "value": v} for c, s, v in rows)
    writer.close()
    return writer.written


def _settled(folder: Path) -> dict[str, tuple[str, int]]:
    frame = pd.read_parquet(folder)
    return {c: (s, v) for c, s, v in zip(frame.clip_id, frame.status, frame.value)}


def test_a_retry_that_turns_an_error_into_ok_keeps_the_ok_row(tmp_path: Path) -> None:
    _write(tmp_path, ("a", "error", 1), ("b", "ok", 1))
    _write(tmp_path, ("a", "ok", 2))
    assert settle_shards(tmp_path, SCHEMA) == 1
    assert _settled(tmp_path) == {"a": ("ok", 2), "b": ("ok", 1)}


def test_a_retry_that_fails_after_an_ok_attempt_keeps_the_ok_row(tmp_path: Path) -> None:
    _write(tmp_path, ("a", "ok", 1))
    _write(tmp_path, ("a", "error", 2), ("b", "faceless", 2))
    assert settle_shards(tmp_path, SCHEMA) == 1
    assert _settled(tmp_path) == {"a": ("ok", 1), "b": ("faceless", 2)}


def test_between_two_final_rows_or_two_errors_the_latest_attempt_wins(tmp_path: Path) -> None:
    _write(tmp_path, ("a", "ok", 1), ("b", "error", 1))
    _write(tmp_path, ("a", "faceless", 2), ("b", "error", 2))
    assert settle_shards(tmp_path, SCHEMA) == 2
    assert _settled(tmp_path) == {"a": ("faceless", 2), "b": ("error", 2)}


def test_nothing_is_rewritten_when_no_key_was_written_twice(tmp_path: Path) -> None:
    first = _write(tmp_path, ("a", "ok", 1))
    second = _write(tmp_path, ("b", "ok", 1))
    assert settle_shards(tmp_path, SCHEMA) == 0
    assert sorted(str(p) for p in tmp_path.glob("part-*.parquet")) == sorted(first + second)


def test_the_same_rows_with_the_same_outcome_replace_their_shard(tmp_path: Path) -> None:
    first = _write(tmp_path, ("a", "ok", 1), ("b", "ok", 1))
    again = _write(tmp_path, ("a", "ok", 1), ("b", "ok", 1))
    other = _write(tmp_path, ("a", "error", 1), ("b", "ok", 1))
    assert first == again and other != first
    assert len(list(tmp_path.glob("part-*.parquet"))) == 2


def test_attempts_are_ordered_by_the_time_in_each_shards_footer(tmp_path: Path) -> None:
    (early,) = _write(tmp_path, ("a", "ok", 1))
    (late,) = _write(tmp_path, ("b", "ok", 2))
    assert 0 < written_at(early) < written_at(late)
    table = read_shards(tmp_path)
    attempts = dict(zip(table.column("clip_id").to_pylist(), table.column(ATTEMPT_COLUMN).to_pylist()))
    assert attempts == {"a": written_at(early), "b": written_at(late)}


def test_several_rows_of_a_clip_in_one_attempt_are_kept_together() -> None:
    # A face export's manifest: the images of a clip's winning attempt, all of them; the losing attempt's, none.
    table = pa.table({"clip_id": ["a", "a", "a", "b"], "status": ["error", "ok", "ok", "ok"],
                      "frame_index": [None, 0, 5, 0], ATTEMPT_COLUMN: [1, 2, 2, 1]})
    settled = settle_table(table, ["clip_id"], one_row_per_key=False)
    assert settled.column("frame_index").to_pylist() == [0, 5, 0] and ATTEMPT_COLUMN not in settled.column_names


def test_the_rule_with_keys_of_several_columns() -> None:
    keys = pd.DataFrame({"clip_id": ["a", "a", "a"], "start_s": [0.0, 0.0, 10.0]})
    keep = winning_attempts(keys, pd.Series(["ok", "error", "error"]), pd.Series([1, 2, 2]))
    assert keep.tolist() == [True, False, True]


def test_a_shard_cut_short_by_a_kill_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    (whole,) = _write(tmp_path, ("a", "ok", 1))
    (cut,) = _write(tmp_path, ("b", "ok", 1))
    data = Path(cut).read_bytes()
    Path(cut).write_bytes(data[: len(data) // 2])
    assert read_shards(tmp_path).column("clip_id").to_pylist() == ["a"]


def test_rows_are_written_every_n_rows_and_the_rest_on_close(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, SCHEMA, flush_rows=2)
    writer.add([{"clip_id": "a", "status": "ok", "value": 1}, {"clip_id": "b", "status": "ok", "value": 1},
                {"clip_id": "c", "status": "ok", "value": 1}])
    assert len(writer.written) == 1
    writer.close()
    assert len(writer.written) == 2 and sorted(pd.read_parquet(tmp_path).clip_id) == ["a", "b", "c"]


def test_a_named_writer_names_its_shards_by_prefix_and_part(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, SCHEMA, name_prefix="clip-s00001", flush_rows=1)
    writer.add([{"clip_id": "a", "status": "ok", "value": v} for v in range(2)])
    writer.close()
    assert [Path(p).name for p in writer.written] == ["part-clip-s00001-0000.parquet", "part-clip-s00001-0001.parquet"]


@pytest.mark.parametrize("rows, seconds", [(0, None), (5, 0.0), (5, -1.0)])
def test_a_flush_policy_that_cannot_work_is_refused(tmp_path: Path, rows: int, seconds: float | None) -> None:
    with pytest.raises(ValueError, match="flush"):
        ShardWriter(tmp_path, SCHEMA, flush_rows=rows, flush_seconds=seconds)
