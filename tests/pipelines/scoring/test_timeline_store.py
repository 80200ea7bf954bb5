"""Window scores follow the clip rows' life: per-run history, a latest view rewritten only where a video changed,
the staged rows of an interrupted run adopted, failures and removed videos without windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from classifiers.scoring import scores_table
from classifiers.timeline_scoring import window_scores_schema
from common.tables.shards import ShardWriter
from pipelines.graph.face_rows import clip_shard_key
from pipelines.scoring.archive_state import bucket_of
from pipelines.scoring.score_store import ScoreStore
from pipelines.scoring.timeline_store import (WINDOWS, collect_timeline_rows, fold_timeline, latest_file, staged_dir,
                                             write_timeline_history)

CLASSES = ("Happy", "Sad")
SCHEMA = window_scores_schema(CLASSES)


def _stage(store: ScoreStore, run: str, key: str, starts: list[float], part: str = "s00000") -> None:
    rows = [{"key": key, "start_s": s, "end_s": s + 10.0, "n_frames": 250, "n_face_frames": 250, "has_face": True,
             "predicted_label": "Happy", "score_Happy": 0.5, "score_Sad": -0.5, "error": None,
             "scored_at": pd.Timestamp("2026-03-01", tz="UTC"), "run_id": run} for s in starts]
    writer = ShardWriter(staged_dir(store, run, WINDOWS), SCHEMA, key_columns=("key", "start_s"), status_column=None,
                         name_prefix=f"{clip_shard_key(key)}-{part}")
    writer.add(rows)
    writer.close()


def _settled(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["key", "status", "run_id"])


def _commit(store: ScoreStore, run: str, settled: pd.DataFrame, removed: list[str] = ()) -> int:
    """The window table's part of a run's commit (``commit_intent.apply_intent`` does the same for every table)."""
    rows = collect_timeline_rows(store, WINDOWS, settled)
    keys = list(settled["key"]) + list(removed)
    to_table = lambda frame: scores_table(frame, SCHEMA)  # noqa: E731
    write_timeline_history(store, WINDOWS, run, rows, keys, to_table)
    fold_timeline(store, WINDOWS, rows, keys, to_table)
    return len(rows)


def _keys_in_distinct_buckets(n: int) -> list[str]:
    keys, buckets = [], set()
    for i in range(1000):
        key = f"videos/{i:03d}.mp4"
        if bucket_of(key) not in buckets:
            keys.append(key)
            buckets.add(bucket_of(key))
        if len(keys) == n:
            return keys
    raise AssertionError("not enough buckets")


def test_windows_of_each_videos_latest_score_only_where_it_changed(tmp_path: Path) -> None:
    store = ScoreStore(str(tmp_path))
    a, b, c, d, e = _keys_in_distinct_buckets(5)
    _stage(store, "r1", a, [0.0, 10.0])
    _stage(store, "r1", a, [0.0, 10.0])  # a retried bundle rewrote the same shard
    _stage(store, "r1", a, [10.0, 20.0], part="m")  # a split clip: the merge finished a window twice-held
    _stage(store, "r1", b, [0.0])
    _stage(store, "r1", c, [0.0])  # c's score failed in the end: its windows are not its latest score's
    _stage(store, "r1", e, [0.0, 10.0, 20.0])
    assert _commit(store, "r1", _settled((a, "ok", "r1"), (b, "faceless", "r1"), (c, "error", "r1"),
                                         (e, "ok", "r1"))) == 7
    latest = pd.read_parquet(tmp_path / "windows")
    assert sorted(latest.groupby("key").size().items()) == sorted([(a, 3), (b, 1), (e, 3)])
    untouched = Path(latest_file(store, WINDOWS, bucket_of(e)))
    before = (untouched.read_bytes(), untouched.stat().st_mtime_ns)

    # r0 was killed after staging d; the next run (r2) adopts d's row, rescores a, and b left the archive.
    _stage(store, "r0", d, [0.0, 10.0])
    _stage(store, "r2", a, [0.0])
    assert _commit(store, "r2", _settled((a, "ok", "r2"), (d, "ok", "r0"), (c, "failed_permanently", "r2")),
                   removed=[b]) == 3
    latest = pd.read_parquet(tmp_path / "windows")
    assert sorted(latest.groupby(["key", "run_id"]).size().items()) == sorted(
        [((a, "r2"), 1), ((d, "r0"), 2), ((e, "r1"), 3)])
    assert (untouched.read_bytes(), untouched.stat().st_mtime_ns) == before  # e did not change: its file neither
    assert not Path(latest_file(store, WINDOWS, bucket_of(b))).exists()  # b's bucket held only b
    history = pd.read_parquet(tmp_path / "windows_history")  # every run's rows, with a `run` column
    assert sorted(history.astype({"run": str}).groupby("run").size().items()) == [("r1", 7), ("r2", 3)]
    assert np.array_equal(latest.start_s[latest.key == e], [0.0, 10.0, 20.0])  # in time order


def test_a_run_that_scored_nothing_and_removed_nothing_writes_nothing(tmp_path: Path) -> None:
    store = ScoreStore(str(tmp_path))
    assert _commit(store, "r1", _settled()) == 0
    assert not (tmp_path / "windows").exists() and not (tmp_path / "windows_history").exists()
