"""Planning a scoring run on hand-made tables: what is skipped, reused, given up on, scored and why."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from pipelines.scoring.archive_state import (
    CHANGED,
    FAILED_PERMANENTLY,
    NEW,
    OTHER_MODEL,
    RETRIED,
    bucket_of,
    count_run,
    empty_index,
    merge_bucket,
    plan_run,
    settle_rows,
)

SHA = "ab" * 32
OLD = pd.Timestamp("2024-04-30", tz="UTC")


def _listing(*rows: tuple[str, int, int]) -> pd.DataFrame:
    return pd.DataFrame([{"key": k, "url": f"s3://b/in/{k}", "size_bytes": s, "mtime_ns": m} for k, s, m in rows])


def _index_row(key: str, size: int, mtime: int, status: str = "ok", attempts: int = 0,
               model: str = SHA) -> dict[str, Any]:
    return {"key": key, "size_bytes": size, "mtime_ns": mtime, "status": status, "attempts": attempts,
            "model_sha256": model}


@pytest.fixture
def index() -> pd.DataFrame:
    return pd.DataFrame([
        _index_row("same.avi", 10, 100),
        _index_row("faceless.avi", 11, 100, "faceless"),
        _index_row("changed_size.avi", 12, 100),
        _index_row("changed_mtime.avi", 13, 100),
        _index_row("failed_once.avi", 14, 100, "error", 1),
        _index_row("failed_twice.avi", 15, 100, "error", 2),
        _index_row("given_up.avi", 16, 100, FAILED_PERMANENTLY, 3),
        _index_row("given_up_changed.avi", 17, 100, FAILED_PERMANENTLY, 3),
        _index_row("deleted.avi", 18, 100),
    ])


def _archive() -> pd.DataFrame:
    return _listing(("same.avi", 10, 100), ("faceless.avi", 11, 100), ("changed_size.avi", 99, 100),
                    ("changed_mtime.avi", 13, 101), ("failed_once.avi", 14, 100), ("failed_twice.avi", 15, 100),
                    ("given_up.avi", 16, 100), ("given_up_changed.avi", 17, 200), ("sub/new.avi", 19, 100))


def _no_staged() -> pd.DataFrame:
    return pd.DataFrame(columns=["key", "size_bytes", "mtime_ns", "status", "attempts", "model_sha256", "scored_at"])


def test_first_run_scores_everything() -> None:
    plan = plan_run(_archive(), empty_index(), _no_staged(), SHA, 3)
    assert plan.to_score["key"].tolist() == _archive()["key"].tolist()
    assert plan.reason_counts() == {NEW: 9} and (plan.skipped, plan.permanently_failed, plan.removed) == (0, 0, [])
    assert plan.to_score["prior_attempts"].tolist() == [0] * 9


def test_each_video_is_skipped_given_up_or_scored_for_its_reason(index: pd.DataFrame) -> None:
    plan = plan_run(_archive(), index, _no_staged(), SHA, 3)
    reasons = dict(zip(plan.to_score["key"], plan.to_score["reason"]))
    assert reasons == {"changed_size.avi": CHANGED, "changed_mtime.avi": CHANGED, "failed_once.avi": RETRIED,
                       "failed_twice.avi": RETRIED, "given_up_changed.avi": CHANGED, "sub/new.avi": NEW}
    attempts = dict(zip(plan.to_score["key"], plan.to_score["prior_attempts"]))
    assert attempts["failed_once.avi"] == 1 and attempts["failed_twice.avi"] == 2
    assert attempts["given_up_changed.avi"] == 0  # a new file starts its attempts again
    assert plan.skipped == 2 and plan.permanently_failed == 1  # same + faceless; given_up
    assert plan.removed == ["deleted.avi"] and plan.reused.empty


def test_lowering_max_attempts_gives_up_on_videos_that_already_failed_that_often(index: pd.DataFrame) -> None:
    plan = plan_run(_archive(), index, _no_staged(), SHA, 2)
    assert "failed_twice.avi" not in set(plan.to_score["key"]) and plan.permanently_failed == 2


def test_another_model_rescores_every_video_even_given_up_ones(index: pd.DataFrame) -> None:
    plan = plan_run(_archive(), index, _no_staged(), "cd" * 32, 3)
    assert plan.reason_counts() == {NEW: 1, OTHER_MODEL: 8} and plan.skipped == 0 and plan.permanently_failed == 0


def test_a_video_without_size_or_mtime_is_never_taken_as_unchanged() -> None:
    index = pd.DataFrame([_index_row("x.avi", 10, 100)])
    index[["size_bytes", "mtime_ns"]] = None
    plan = plan_run(_listing(("x.avi", 10, 100)), index, _no_staged(), SHA, 3)
    assert plan.to_score["reason"].tolist() == [CHANGED]


def test_rows_finished_by_an_interrupted_run_are_reused_while_their_file_is_unchanged(index: pd.DataFrame) -> None:
    staged = pd.DataFrame([
        {**_index_row("sub/new.avi", 19, 100), "scored_at": OLD, "predicted_label": "Happy"},
        {**_index_row("changed_size.avi", 98, 100), "scored_at": OLD, "predicted_label": "Sad"},  # changed again since
        {**_index_row("failed_once.avi", 14, 100, "error", 2), "scored_at": OLD, "predicted_label": None},
        {**_index_row("failed_once.avi", 14, 100, "ok", 0), "scored_at": OLD + pd.Timedelta("1s"),
         "predicted_label": "Fear"},  # the same clip twice (a retried bundle): the newer row wins
    ])
    plan = plan_run(_archive(), index, staged, SHA, 3)
    assert sorted(plan.reused["key"]) == ["failed_once.avi", "sub/new.avi"]
    assert plan.reused.set_index("key").loc["failed_once.avi", "predicted_label"] == "Fear"
    assert "changed_size.avi" in set(plan.to_score["key"]) and "sub/new.avi" not in set(plan.to_score["key"])
    assert len(plan.to_score) + len(plan.reused) + plan.skipped + plan.permanently_failed == len(_archive())
    assert plan.removed == ["deleted.avi"]  # reused videos are listed, not removed


def _worker_rows(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame([{"key": k, "status": s, "size_bytes": None, "mtime_ns": None, "attempts": None}
                         for k, s in rows])


def test_settling_counts_attempts_and_gives_up_at_the_limit() -> None:
    planned = _listing(("a.avi", 1, 10), ("b.avi", 2, 20), ("c.avi", 3, 30))
    planned["prior_attempts"] = [0, 2, 1]
    rows = _worker_rows(("a.avi", "ok"), ("b.avi", "error"), ("c.avi", "error"), ("c.avi", "error"),
                        ("stray.avi", "ok"))
    settled = settle_rows(rows, planned, max_attempts=3).set_index("key")
    assert settled.index.tolist() == ["a.avi", "b.avi", "c.avi"]  # one row each, nothing invented
    assert settled["attempts"].tolist() == [0, 3, 2]
    assert settled["status"].tolist() == ["ok", FAILED_PERMANENTLY, "error"]
    assert settled["size_bytes"].tolist() == [1, 2, 3] and settled["mtime_ns"].tolist() == [10, 20, 30]


def test_merging_a_bucket_replaces_updated_rows_and_drops_removed_ones() -> None:
    existing = pd.DataFrame({"key": ["a", "b", "c"], "status": ["ok", "error", "ok"]})
    updates = pd.DataFrame({"key": ["b", "d"], "status": ["ok", "faceless"]})
    merged = merge_bucket(existing, updates, removed=["c"])
    assert merged.to_dict("list") == {"key": ["a", "b", "d"], "status": ["ok", "ok", "faceless"]}
    assert merge_bucket(None, updates, []).key.tolist() == ["b", "d"]


def test_buckets_are_stable_and_spread() -> None:
    keys = [f"2024/{i:05d}.mp4" for i in range(6400)]
    buckets = [bucket_of(k) for k in keys]
    assert bucket_of("2024/00001.mp4") == buckets[1]  # a function of the key alone
    counts = pd.Series(buckets).value_counts()
    assert len(counts) == 64 and counts.max() < 2 * counts.min()


def test_counts_of_a_run(index: pd.DataFrame) -> None:
    plan = plan_run(_archive(), index, _no_staged(), SHA, 3)
    settled = pd.DataFrame({"key": plan.to_score["key"], "status": ["ok", "ok", "error", FAILED_PERMANENTLY,
                                                                      "ok", "faceless"]})
    counts = count_run(plan, settled)
    assert counts.line() == ("1 new, 5 rescored, 0 reused, 2 skipped, 2 failed, 2 permanently failed, 1 removed")
