"""Window and track scores under ``--output``: the same life as the clip rows of ``score_store``.

::

    <output>/scores/run=<run id>/_staged_windows/part-*   window rows the workers wrote as clips streamed
    <output>/scores/run=<run id>/_staged_tracks/part-*    track rows, likewise
    <output>/windows_history/run=<run id>/part-NNN.parquet  the run's window rows (its history), by bucket
    <output>/tracks_history/run=<run id>/part-NNN.parquet
    <output>/windows/part-NNN.parquet                     one row per window of each video's latest score
    <output>/tracks/part-NNN.parquet                      one row per track of each video's latest score

A video's window and track rows belong to its latest score: the run that wrote its settled row
(this run, or an interrupted one whose staged rows the run adopted). Only videos with a final
row (``ok``, ``faceless``) have any; a video whose latest row is a failure has none. A run
rewrites only the latest files (bucketed by key like ``latest/``) of videos it scored or that
left the archive, each in one atomic write, before the run's manifest. ``jobs.score`` first records
the rows in the run's commit intent (:mod:`pipelines.scoring.commit_intent`): a run killed in
between is finished by the next one, which redoes these writes from the intent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa

from common.stores import storage
from common.fail_points import fail_point
from common.tables.parquet_io import read_parquet, write_parquet
from pipelines.graph.face_rows import clip_shard_key
from pipelines.scoring.archive_state import FINAL_STATUSES, bucket_of
from pipelines.scoring.score_store import RUN_PREFIX, ScoreStore, read_latest_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimelineTable:
    """One of a scoring output's timeline tables: where its rows are staged, kept and read."""

    name: str
    key_columns: tuple[str, ...]
    """The columns that identify a row of a video (``key`` first): its order in the latest files."""

    @property
    def staged_name(self) -> str:
        return f"_staged_{self.name}"

    @property
    def history_name(self) -> str:
        return f"{self.name}_history"


WINDOWS = TimelineTable("windows", ("key", "start_s"))
TRACKS = TimelineTable("tracks", ("key", "track_id"))


def staged_dir(store: ScoreStore, run_id: str, table: TimelineTable) -> str:
    return storage.join(store.run_dir(run_id), table.staged_name)


def latest_file(store: ScoreStore, table: TimelineTable, bucket: int) -> str:
    return storage.join(store.output, table.name, f"part-{bucket:03d}.parquet")


def history_file(store: ScoreStore, table: TimelineTable, run_id: str, bucket: int) -> str:
    return storage.join(store.output, table.history_name, f"{RUN_PREFIX}{run_id}", f"part-{bucket:03d}.parquet")


def _staged_files_by_clip(folder: str) -> dict[str, list[str]]:
    """A run's staged shards grouped by the clip key their name starts with (``part-<clip key>-...``)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for url in storage.glob_files(folder, "part-*.parquet"):
        name = PurePosixPath(url).name
        grouped[name[len("part-"):].split("-", 1)[0]].append(url)
    return grouped


def collect_timeline_rows(store: ScoreStore, table: TimelineTable, settled: pd.DataFrame) -> pd.DataFrame:
    """The staged ``table`` rows of every video of ``settled`` with a final status, from the run that scored it."""
    final = settled[settled["status"].isin(list(FINAL_STATUSES))] if len(settled) else settled
    source = dict(zip(final["key"], final["run_id"])) if len(final) else {}
    staged = {run: _staged_files_by_clip(staged_dir(store, run, table)) for run in set(source.values())}
    return _staged_rows(table, sorted(source.items()), staged)


def _by_bucket(keys: Sequence[str]) -> dict[int, set[str]]:
    touched: dict[int, set[str]] = defaultdict(set)
    for key in keys:
        touched[bucket_of(key)].add(key)
    return touched


def write_timeline_history(store: ScoreStore, table: TimelineTable, run_id: str, rows: pd.DataFrame,
                           keys: Sequence[str], to_table: Callable[[pd.DataFrame], pa.Table]) -> None:
    """The run's ``table`` rows as its history, a file per bucket of ``keys`` that has rows (same rows, same files)."""
    for bucket, bucket_keys in sorted(_by_bucket(keys).items()):
        here = rows[rows["key"].isin(bucket_keys)] if len(rows) else rows
        if len(here):
            write_parquet(to_table(_sorted(here, table)), history_file(store, table, run_id, bucket))


def fold_timeline(store: ScoreStore, table: TimelineTable, rows: pd.DataFrame, keys: Sequence[str],
                  to_table: Callable[[pd.DataFrame], pa.Table]) -> None:
    """Rewrite the latest files of ``keys``: their old rows out, ``rows`` in; each file one atomic write."""
    for bucket, bucket_keys in sorted(_by_bucket(keys).items()):
        here = rows[rows["key"].isin(bucket_keys)] if len(rows) else rows
        url = latest_file(store, table, bucket)
        existing = read_latest_file(url)
        if existing is not None and len(existing):
            existing = existing[~existing["key"].isin(bucket_keys)]
        parts = [f for f in (existing, here) if f is not None and len(f)]
        if parts:
            write_parquet(to_table(_sorted(pd.concat(parts, ignore_index=True), table)), url)
        elif storage.exists(url):
            storage.remove(url)
        fail_point("commit.timeline_file")


def _sorted(rows: pd.DataFrame, table: TimelineTable) -> pd.DataFrame:
    return rows.sort_values(list(table.key_columns), kind="stable").reset_index(drop=True)


def _staged_rows(table: TimelineTable, wanted: list[tuple[str, str]],
                 staged: dict[str, dict[str, list[str]]]) -> pd.DataFrame:
    """The staged rows of the (key, run) pairs wanted, each row once (a retried bundle rewrote the same rows)."""
    frames = []
    for key, run in wanted:
        keys_here = []
        for url in staged[run].get(clip_shard_key(key), []):
            try:
                frame = read_parquet(url).to_pandas()
            except (OSError, ValueError, pa.ArrowException) as exc:  # cut short by a kill: its clip is redone
                log.warning("skipping %s: %s", url, exc)
                continue
            keys_here.append(frame[frame["key"] == key])
        frames += [f for f in keys_here if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(table.key_columns))
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates(list(table.key_columns), keep="last").reset_index(drop=True)
