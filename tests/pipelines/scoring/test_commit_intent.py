"""A scoring commit through its intent: applied again it writes the same files, an intent cut short is
ignored, and only the intents of runs after the last finished one are finished."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from common.tables.parquet_io import frame_to_table
from pipelines.scoring.commit_intent import (
    INTENT_FILE,
    CommitIntent,
    apply_intent,
    finish_unfinished_commits,
    read_intent,
    write_intent,
)
from pipelines.scoring.score_store import MANIFEST_FILE, ScoreStore

SCHEMA = pa.schema([("key", pa.string()), ("status", pa.string()), ("run_id", pa.string()),
                    ("scored_at", pa.timestamp("us", tz="UTC"))])


def _intent(run_id: str, keys: list[str], removed: list[str] = ()) -> CommitIntent:
    rows = pd.DataFrame({"key": keys, "status": "ok", "run_id": run_id,
                         "scored_at": pd.Timestamp("2026-03-01", tz="UTC")})
    return CommitIntent(run_id, frame_to_table(rows, SCHEMA), list(removed), {"counts": {"new": len(keys)}})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
            if "_commit" not in str(p)}


def test_an_intent_applied_again_writes_the_same_files_and_one_row_per_video(tmp_path: Path) -> None:
    store = ScoreStore(str(tmp_path))
    write_intent(store, _intent("r1", ["a", "b", "c"]))
    apply_intent(store, read_intent(store, "r1"))
    write_intent(store, _intent("r2", ["b", "d"], removed=["c"]))
    intent = read_intent(store, "r2")
    apply_intent(store, intent)
    first = _files(tmp_path)
    apply_intent(store, intent)  # a run killed after some writes is finished by doing them all again
    assert _files(tmp_path) == first
    latest = pd.read_parquet(tmp_path / "latest").set_index("key")
    assert latest.run_id.to_dict() == {"a": "r1", "b": "r2", "d": "r2"}
    history = pd.read_parquet(tmp_path / "scores")
    assert sorted(zip(history.key, history.run_id)) == [("a", "r1"), ("b", "r1"), ("b", "r2"), ("c", "r1"),
                                                         ("d", "r2")]
    manifest = json.loads((tmp_path / "scores" / "run=r2" / MANIFEST_FILE).read_text())
    assert manifest["rows"] == 2 and manifest["removed"] == 1 and manifest["counts"] == {"new": 2}


def test_only_whole_intents_of_runs_after_the_last_finished_one_are_finished(tmp_path: Path) -> None:
    store = ScoreStore(str(tmp_path))
    write_intent(store, _intent("r1", ["a"]))  # killed before any write: r2 will not finish it...
    write_intent(store, _intent("r2", ["a", "b"]))
    apply_intent(store, read_intent(store, "r2"))  # ...as r2 finished after it (r2 adopted what r1 had)
    write_intent(store, _intent("r3", ["b"]))  # killed once its intent was whole
    write_intent(store, _intent("r4", ["a"]))
    (tmp_path / "scores" / "run=r4" / INTENT_FILE).unlink()  # killed while writing its intent
    assert read_intent(store, "r4") is None
    confirmed = []
    assert finish_unfinished_commits(store, before_commit=lambda: confirmed.append(1)) == ["r3"]
    assert confirmed == [1]  # the lock is confirmed before the commit is finished
    latest = pd.read_parquet(tmp_path / "latest").set_index("key")
    assert latest.run_id.to_dict() == {"a": "r2", "b": "r3"}  # r1's older intent never overwrote r2's rows
    assert not (tmp_path / "scores" / "run=r1" / MANIFEST_FILE).exists()
    assert not (tmp_path / "scores" / "run=r1" / "part-0.parquet").exists()
    assert (tmp_path / "scores" / "run=r3" / MANIFEST_FILE).exists()
    assert store.unfinished_runs() == ["r4"]  # left for the next run to adopt
    assert finish_unfinished_commits(store) == []
