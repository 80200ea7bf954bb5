"""The scoring state under ``--output``: append-only run folders and a latest view, on disk or in a bucket.

::

    <output>/_lock.json                           the run lock and its heartbeat (pipelines.scoring.run_lock)
    <output>/scores/run=<run id>/_plan.parquet    the videos the run set out to score (size, mtime, attempts)
    <output>/scores/run=<run id>/_staged/part-*   rows flushed by the workers as clips finish
    <output>/scores/run=<run id>/_commit.json     the commit's intent, and _commit/ its tables (commit_intent)
    <output>/scores/run=<run id>/part-0.parquet   the run's settled rows (its history)
    <output>/scores/run=<run id>/_manifest.json   written last: the run finished
    <output>/latest/part-NN.parquet               one row per video: the latest score

A run never rewrites another run's files. The latest view is kept in LATEST_BUCKETS files,
each holding the videos whose key hashes to it; a run rewrites only the files holding videos
it scored or that were removed, each in one atomic write (rename on disk, one PUT in a
bucket), so a reader always sees one row per video. Paths starting with ``_`` are skipped by
pandas and pyarrow, so ``pandas.read_parquet(<output>/scores)`` reads the history with a
``run`` column, and ``pandas.read_parquet(<output>/latest)`` the latest scores.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa

from common.stores import storage
from common.fail_points import fail_point
from common.tables.parquet_io import read_parquet, write_parquet
from common.tables.shards import read_shards, settle_table
from pipelines.scoring.archive_state import (
    INDEX_COLUMNS,
    LATEST_BUCKETS,
    bucket_of,
    empty_index,
    merge_bucket,
    settle_rows,
)

log = logging.getLogger(__name__)

SCORES_DIR, LATEST_DIR, STAGED_DIR = "scores", "latest", "_staged"
PLAN_FILE, MANIFEST_FILE, HISTORY_FILE = "_plan.parquet", "_manifest.json", "part-0.parquet"
RUN_PREFIX = "run="
PLAN_COLUMNS = ("key", "size_bytes", "mtime_ns", "prior_attempts")


def read_latest_file(url: str) -> pd.DataFrame | None:
    """One file of a latest view, or None when there is none; an unreadable one (cut by a crash, damaged)
    counts as none, with a warning: the run rewrites it from its own rows."""
    if not storage.exists(url):
        return None
    try:
        return read_parquet(url).to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        log.warning("%s is unreadable (%s); rewritten from this run's rows", url, exc)
        return None


def new_run_id(now: datetime | None = None) -> str:
    """A UTC timestamp that sorts like time and is safe in paths and Hive partition values."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S.%fZ")


class ScoreStore:
    """Reads and writes the state of one ``--output``."""

    def __init__(self, output: str) -> None:
        self.output = str(output)
        self.scores = storage.join(self.output, SCORES_DIR)
        self.latest = storage.join(self.output, LATEST_DIR)

    def run_dir(self, run_id: str) -> str:
        return storage.join(self.scores, f"{RUN_PREFIX}{run_id}")

    def staged_dir(self, run_id: str) -> str:
        return storage.join(self.run_dir(run_id), STAGED_DIR)

    def bucket_file(self, bucket: int) -> str:
        return storage.join(self.latest, f"part-{bucket:03d}.parquet")

    # --- reading -----------------------------------------------------------------------------

    def read_index(self) -> pd.DataFrame:
        """INDEX_COLUMNS of the latest view, and nothing else: what an unchanged night costs."""
        tables = []
        for url in storage.glob_files(self.latest, "part-*.parquet"):
            try:
                tables.append(read_parquet(url, INDEX_COLUMNS))
            except (OSError, ValueError, pa.ArrowException) as exc:
                log.warning("%s is unreadable (%s); its videos are scored again", url, exc)
        if not tables:
            return empty_index()
        return pa.concat_tables(tables).to_pandas()

    def unfinished_runs(self) -> list[str]:
        """Runs after the last finished one (runs are one at a time, and each adopts those before it)."""
        runs = [n[len(RUN_PREFIX):] for n in storage.list_dir(self.scores) if n.startswith(RUN_PREFIX)]
        unfinished = []
        for run_id in sorted(runs, reverse=True):
            if storage.exists(storage.join(self.run_dir(run_id), MANIFEST_FILE)):
                break
            unfinished.append(run_id)
        return sorted(unfinished)

    def read_rows(self, folder: str) -> pd.DataFrame:
        """Every ``part-*.parquet`` row of a folder, a video written twice (retried bundles) settled by
        the one rule of :func:`common.tables.shards.winning_attempts`; an unreadable part, cut by a kill, is skipped."""
        table = read_shards(folder)
        if table is None or table.num_rows == 0:
            return pd.DataFrame(columns=["key", "status", "scored_at"])
        return settle_table(table, ["key"]).to_pandas()

    def read_plan(self, run_id: str) -> pd.DataFrame:
        url = storage.join(self.run_dir(run_id), PLAN_FILE)
        try:
            return read_parquet(url).to_pandas()
        except (OSError, ValueError, pa.ArrowException):
            return pd.DataFrame(columns=list(PLAN_COLUMNS))

    def read_staged(self, run_ids: Iterable[str], max_attempts: int) -> pd.DataFrame:
        """Finished rows of interrupted runs, settled against their own plans (their size and mtime)."""
        frames = []
        for run_id in run_ids:
            rows, plan = self.read_rows(self.staged_dir(run_id)), self.read_plan(run_id)
            if len(rows) and len(plan):
                frames.append(settle_rows(rows, plan, max_attempts))
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=[*INDEX_COLUMNS, "scored_at"])

    # --- writing -----------------------------------------------------------------------------

    def start_run(self, run_id: str, to_score: pd.DataFrame) -> None:
        """Record what the run sets out to score, before any worker writes: a later run resumes from it."""
        plan = pa.Table.from_pandas(to_score.loc[:, list(PLAN_COLUMNS)].reset_index(drop=True), preserve_index=False)
        write_parquet(plan, storage.join(self.run_dir(run_id), PLAN_FILE))

    def write_history(self, run_id: str, table: pa.Table) -> None:
        """The run's settled rows as its history file (written whole; rewriting it gives the same file)."""
        write_parquet(table, storage.join(self.run_dir(run_id), HISTORY_FILE))

    def fold_into_latest(self, rows: pd.DataFrame, removed: Sequence[str], to_table: Any) -> int:
        """Rewrite the latest files holding ``rows``' keys or ``removed`` ones; returns how many.

        Each file is one atomic write and a video lives in one file, so a reader (or a kill) between
        two files finds one row per video. Folding the same rows again gives the same files.
        """
        touched: dict[int, list[int]] = {}
        for position, key in enumerate(rows["key"] if len(rows) else []):
            touched.setdefault(bucket_of(key), []).append(position)
        gone: dict[int, list[str]] = {}
        for key in removed:
            gone.setdefault(bucket_of(key), []).append(key)
        for bucket in sorted(set(touched) | set(gone)):
            url = self.bucket_file(bucket)
            existing = read_latest_file(url)
            updates = rows.iloc[touched.get(bucket, [])]
            merged = merge_bucket(existing, updates, gone.get(bucket, []))
            if len(merged):
                write_parquet(to_table(merged), url)
            else:
                storage.remove(url)
            fail_point("commit.latest_file")
        return len(set(touched) | set(gone))

    def write_manifest(self, run_id: str, manifest: dict[str, Any]) -> None:
        """Written last: the run is finished."""
        data = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        storage.write_bytes(storage.join(self.run_dir(run_id), MANIFEST_FILE), data)


def finished_manifest(manifest: dict[str, Any], run_id: str, rows: int, removed: int,
                      files_rewritten: int) -> dict[str, Any]:
    """A run's manifest with what its commit wrote and when it finished."""
    return {**manifest, "run_id": run_id, "rows": rows, "removed": removed,
            "latest_files_rewritten": files_rewritten, "latest_buckets": LATEST_BUCKETS,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
