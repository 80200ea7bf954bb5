"""A scoring run's commit, made resumable: first the intent (what the run will write), then the writes.

A commit writes several files: the run's history, the latest files it touches, the timeline
tables' history and latest files, then its manifest. Each file is one atomic write, but a kill
can fall between two of them. So the run first records its intent under its run folder::

    <output>/scores/run=<run id>/_commit/scores.parquet    the settled rows (the scores schema)
    <output>/scores/run=<run id>/_commit/windows.parquet   its window rows, tracks.parquet its track rows
    <output>/scores/run=<run id>/_commit.json              written last: removed keys, the manifest

and only then writes the files the intent names, each a pure function of the intent and the file
it replaces, so writing it again gives the same file. The next run, holding the lock, finishes
every intent left without a manifest before it plans (:func:`finish_unfinished_commits`): the
commit ends as if it had never been killed, and no history row is written twice. A run killed
before its ``_commit.json`` is an unfinished run like any other: the next run adopts its staged
rows into its own commit (its history file is never written).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from common.stores import storage
from common.fail_points import fail_point
from common.tables.parquet_io import frame_to_table, read_parquet, write_parquet
from pipelines.scoring.score_store import ScoreStore, finished_manifest
from pipelines.scoring.timeline_store import TRACKS, WINDOWS, fold_timeline, write_timeline_history

log = logging.getLogger(__name__)

INTENT_FILE, INTENT_DIR, SCORES_TABLE = "_commit.json", "_commit", "scores"
TIMELINE_TABLES = {t.name: t for t in (WINDOWS, TRACKS)}


@dataclass(frozen=True)
class CommitIntent:
    """Everything a run's commit writes, decided before the first write."""

    run_id: str
    scores: pa.Table
    """The run's settled rows (fresh and adopted), in the scores schema: its history."""
    removed: list[str]
    """Keys that leave the latest view."""
    manifest: dict[str, Any]
    timeline: Mapping[str, pa.Table] = field(default_factory=dict)
    """The kept window and track rows of the settled videos, by table name."""


def _intent_url(store: ScoreStore, run_id: str, *parts: str) -> str:
    return storage.join(store.run_dir(run_id), *parts)


def write_intent(store: ScoreStore, intent: CommitIntent) -> None:
    """Record the intent: its tables, then ``_commit.json`` (its presence says the intent is whole)."""
    for name, table in {SCORES_TABLE: intent.scores, **intent.timeline}.items():
        write_parquet(table, _intent_url(store, intent.run_id, INTENT_DIR, f"{name}.parquet"))
    fail_point("commit.intent_tables")
    record = {"run_id": intent.run_id, "removed": intent.removed, "manifest": intent.manifest,
              "timeline": sorted(intent.timeline)}
    storage.write_bytes(_intent_url(store, intent.run_id, INTENT_FILE),
                        json.dumps(record, indent=2, sort_keys=True, default=str).encode())
    fail_point("commit.intent_written")


def read_intent(store: ScoreStore, run_id: str) -> CommitIntent | None:
    """The whole intent a run recorded, or None when it recorded none (or was killed while recording it)."""
    url = _intent_url(store, run_id, INTENT_FILE)
    if not storage.exists(url):
        return None
    record = json.loads(storage.read_bytes(url))
    tables = {name: read_parquet(_intent_url(store, run_id, INTENT_DIR, f"{name}.parquet"))
              for name in [SCORES_TABLE, *record["timeline"]]}
    return CommitIntent(run_id, tables.pop(SCORES_TABLE), list(record["removed"]), dict(record["manifest"]), tables)


def _to_table(schema: pa.Schema) -> Callable[[pd.DataFrame], pa.Table]:
    return lambda frame: frame_to_table(frame, schema)


def apply_intent(store: ScoreStore, intent: CommitIntent) -> None:
    """Write what the intent names, then the manifest; safe to run again after a kill at any point."""
    rows = intent.scores.to_pandas()
    keys = list(rows["key"]) + list(intent.removed)
    if len(rows):
        store.write_history(intent.run_id, intent.scores)
    timeline_rows = {name: table.to_pandas() for name, table in intent.timeline.items()}
    for name, frame in timeline_rows.items():
        write_timeline_history(store, TIMELINE_TABLES[name], intent.run_id, frame, keys,
                               _to_table(intent.timeline[name].schema))
    fail_point("commit.history_written")
    rewritten = store.fold_into_latest(rows, intent.removed, _to_table(intent.scores.schema))
    for name, frame in timeline_rows.items():
        fold_timeline(store, TIMELINE_TABLES[name], frame, keys, _to_table(intent.timeline[name].schema))
    fail_point("commit.before_manifest")
    manifest = {**intent.manifest, **{f"{name}_rows": len(frame) for name, frame in timeline_rows.items()}}
    store.write_manifest(intent.run_id, finished_manifest(manifest, intent.run_id, len(rows), len(intent.removed),
                                                          rewritten))


def commit_run(store: ScoreStore, intent: CommitIntent) -> None:
    """A run's commit: its intent, then its writes."""
    write_intent(store, intent)
    apply_intent(store, intent)


def finish_unfinished_commits(store: ScoreStore, before_commit: Callable[[], None] = lambda: None) -> list[str]:
    """Finish the commits that runs recorded and were killed in; returns their run ids.

    Only runs after the last finished one count: an older intent must never overwrite newer rows.
    Called by the lock holder before it plans, so the plan starts from the state those runs meant.
    """
    finished = []
    for run_id in store.unfinished_runs():
        intent = read_intent(store, run_id)
        if intent is None:  # killed before its intent: its staged rows are adopted by this run
            continue
        before_commit()
        apply_intent(store, intent)
        log.warning("run %s was killed during its commit; finished it (%d rows, %d removed)", run_id,
                    intent.scores.num_rows, len(intent.removed))
        finished.append(run_id)
    return finished

