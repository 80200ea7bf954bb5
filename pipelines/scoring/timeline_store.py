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
left the archive, each in one atomic write, and does so before the run's manifest: a run killed
in between is finished by the next one, which redoes these writes from the same staged rows.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pandas as pd
import pyarrow as pa

from common import storage
from common.parquet_io import read_parquet, write_parquet
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


def commit_timeline(store: ScoreStore, table: TimelineTable, run_id: str, settled: pd.DataFrame,
                    removed: Sequence[str], to_table: Callable[[pd.DataFrame], pa.Table]) -> int:
    """Fold the rows of the videos a run settled into ``table``'s history and latest files; returns rows kept.

    ``settled`` holds the run's settled clip rows (``key``, ``status``, ``run_id``: the run that
    scored each, this one or an adopted one); ``to_table`` makes an Arrow table of the run's schema.
    """
    touched: dict[int, set[str]] = defaultdict(set)
    for key in list(settled["key"] if len(settled) else []) + list(removed):
        touched[bucket_of(key)].add(key)
    if not touched:
        return 0
    final = settled[settled["status"].isin(list(FINAL_STATUSES))] if len(settled) else settled
    source = dict(zip(final["key"], final["run_id"])) if len(final) else {}
    staged = {run: _staged_files_by_clip(staged_dir(store, run, table)) for run in set(source.values())}
    kept = 0
    for bucket in sorted(touched):
        rows = _staged_rows(table, [(key, source[key]) for key in sorted(touched[bucket]) if key in source], staged)
        if len(rows):
            write_parquet(to_table(rows), history_file(store, table, run_id, bucket))
        url = latest_file(store, table, bucket)
        existing = read_latest_file(url)
        if existing is not None and len(existing):
            existing = existing[~existing["key"].isin(touched[bucket])]
        merged = pd.concat([f for f in (existing, rows) if f is not None and len(f)], ignore_index=True) \
            if (existing is not None and len(existing)) or len(rows) else rows
        if len(merged):
            merged = merged.sort_values(list(table.key_columns), kind="stable").reset_index(drop=True)
            write_parquet(to_table(merged), url)
        elif storage.exists(url):
            storage.remove(url)
        kept += len(rows)
    return kept


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
