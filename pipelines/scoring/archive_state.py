"""What a scoring run does with an archive, decided on small tables: pure functions, no I/O.

A video is identified by its ``key``, its path relative to the archive root, so the same
archive under another mount point or bucket prefix is recognised. It is unchanged while its
size and modification time are. For every listed video :func:`plan_run` decides one of:

- reuse a row that an interrupted run already finished (file unchanged since),
- skip it: its latest row is final (``ok``/``faceless``) for this model and file,
- give up on it: it failed ``max_attempts`` times on this very file (``failed_permanently``),
- score it: new, changed, failed fewer times than allowed, or scored by another model.

Videos in the latest scores but no longer listed are removed from the latest view.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

OK, FACELESS, ERROR, FAILED_PERMANENTLY = "ok", "faceless", "error", "failed_permanently"
FINAL_STATUSES = frozenset({OK, FACELESS})
FAILED_STATUSES = frozenset({ERROR, FAILED_PERMANENTLY})

# Why a video is scored, as logged.
NEW, CHANGED, RETRIED, OTHER_MODEL = "new", "changed", "failed before", "scored by another model"

INDEX_COLUMNS = ("key", "size_bytes", "mtime_ns", "status", "attempts", "model_sha256")
"""The per-video index a run plans from: the latest view's columns it reads, and nothing more."""
LISTING_COLUMNS = ("key", "url", "size_bytes", "mtime_ns")
LATEST_BUCKETS = 64
"""Files of the latest view; a video's file is fixed by its key, so a run rewrites only the files it touches."""


def bucket_of(key: str, buckets: int = LATEST_BUCKETS) -> int:
    """Which file of the latest view holds ``key`` (CRC-32: stable across Python and pandas versions)."""
    return zlib.crc32(key.encode()) % buckets


@dataclass(frozen=True)
class RunPlan:
    """What one run does; every listed video is in exactly one of ``to_score``, ``reused``, or the skipped counts."""

    to_score: pd.DataFrame
    """LISTING_COLUMNS plus ``prior_attempts`` (failed attempts on this file so far) and ``reason``."""
    reused: pd.DataFrame
    """Finished rows of interrupted runs, taken as they are."""
    skipped: int
    """Unchanged videos with a final row."""
    permanently_failed: int
    """Unchanged videos that failed ``max_attempts`` times: not tried again."""
    removed: list[str]
    """Keys in the latest view that are no longer listed."""

    def reason_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.to_score["reason"].value_counts().sort_index().items()}


def empty_index() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object" if c in ("key", "status", "model_sha256") else "Int64")
                         for c in INDEX_COLUMNS})


def plan_run(listing: pd.DataFrame, index: pd.DataFrame, staged: pd.DataFrame, model_sha256: str,
             max_attempts: int) -> RunPlan:
    """Decide the run: ``listing`` is the archive now (LISTING_COLUMNS), ``index`` the latest view's
    INDEX_COLUMNS, ``staged`` the finished rows of interrupted runs (any columns including INDEX_COLUMNS
    and ``scored_at``).

    Vectorised (one hash lookup of every listed key in the index): archives run to millions of videos.
    """
    current = _unique_keys(listing.loc[:, list(LISTING_COLUMNS)], keep="first")
    reused = staged.iloc[0:0]
    rest = current
    if len(staged):
        newest = _unique_keys(staged.sort_values("scored_at", kind="stable"), keep="last")
        now = _lookup(current, newest["key"])
        here = now >= 0
        same = here & _same_file(newest, current, now) & (newest["model_sha256"] == model_sha256).to_numpy()
        reused = newest.loc[same].reset_index(drop=True)
        rest = current.loc[_lookup(reused, current["key"]) < 0].reset_index(drop=True)
    before = _unique_keys(index.loc[:, list(INDEX_COLUMNS)], keep="last")
    at = _lookup(before, rest["key"])
    known = at >= 0
    found = before.iloc[np.where(known, at, 0)] if len(before) else None
    if found is None:
        same_model = same_file = np.zeros(len(rest), dtype=bool)
        attempts = np.zeros(len(rest), dtype="int64")
        status = np.full(len(rest), "", dtype=object)
    else:
        same_model = known & (found["model_sha256"] == model_sha256).to_numpy()
        same_file = known & _same_file(rest, before, at)
        attempts = found["attempts"].fillna(0).to_numpy(dtype="int64")
        status = found["status"].fillna("").to_numpy(dtype=object)
    unchanged = same_model & same_file
    final = unchanged & np.isin(status, list(FINAL_STATUSES))
    given_up = unchanged & ((status == FAILED_PERMANENTLY) | ((status == ERROR) & (attempts >= max_attempts)))
    retried = unchanged & (status == ERROR) & ~given_up
    work = ~(final | given_up)
    reasons = np.select([~known, ~same_model, ~same_file], [NEW, OTHER_MODEL, CHANGED], RETRIED)
    to_score = rest.loc[work].reset_index(drop=True)
    to_score["prior_attempts"] = np.where(retried, attempts, 0)[work]
    to_score["reason"] = reasons[work]
    listed = np.zeros(len(before), dtype=bool)  # from the lookups already made: no second pass over a million keys
    listed[at[known]] = True
    if len(reused):
        again = _lookup(before, reused["key"])
        listed[again[again >= 0]] = True
    removed = before.loc[~listed, "key"]
    return RunPlan(to_score, reused, int(final.sum()), int(given_up.sum()), sorted(removed.tolist()))


def _keys(values: pd.Series) -> pa.Array:
    # Hashed in Arrow's C++ kernels: pandas' own hashing of a million strings takes seconds.
    return pa.array(values, type=pa.large_string()) if len(values) else pa.array([], type=pa.large_string())


def _unique_keys(frame: pd.DataFrame, keep: str) -> pd.DataFrame:
    """``frame`` with one row per key; the usual case (already unique) costs one hash pass and no copy."""
    if pc.count_distinct(_keys(frame["key"])).as_py() == len(frame):
        return frame
    return frame.drop_duplicates("key", keep=keep).reset_index(drop=True)  # type: ignore[arg-type]


def _lookup(table: pd.DataFrame, keys: pd.Series) -> np.ndarray:
    """Row position in ``table`` (unique keys) of each of ``keys``, -1 where absent."""
    positions = pc.index_in(_keys(keys), value_set=_keys(table["key"]))
    return positions.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _same_file(rows: pd.DataFrame, other: pd.DataFrame, at: np.ndarray) -> np.ndarray:
    """Whether each row's size and mtime equal those of ``other`` at positions ``at`` (-1: never)."""
    result = at >= 0
    if not len(other):
        return np.zeros(len(rows), dtype=bool)
    for column in ("size_bytes", "mtime_ns"):
        mine = pd.array(rows[column], dtype="Int64")
        theirs = pd.array(other[column], dtype="Int64")[np.where(result, at, 0)]
        result = result & np.asarray((mine == theirs).fillna(False), dtype=bool)
    return result


def settle_rows(rows: pd.DataFrame, planned: pd.DataFrame, max_attempts: int) -> pd.DataFrame:
    """Give workers' rows what only the plan knows: the file's size and mtime, and the attempt count.

    A failure counts one more attempt on the same file; reaching ``max_attempts`` turns its
    status into ``failed_permanently``. Rows of keys not in ``planned`` are dropped (a runner
    cannot invent videos), and a key with several rows keeps its last (the store has settled retried bundles already).
    """
    rows = rows.drop_duplicates("key", keep="last")
    plan = planned.set_index("key")
    rows = rows[rows["key"].isin(plan.index)].reset_index(drop=True)
    info = plan.loc[rows["key"]]
    rows["size_bytes"] = info["size_bytes"].to_numpy()
    rows["mtime_ns"] = info["mtime_ns"].to_numpy()
    failed = rows["status"].isin(list(FAILED_STATUSES)).to_numpy()
    attempts = np.where(failed, info["prior_attempts"].to_numpy(dtype="int64") + 1, 0)
    rows["attempts"] = attempts
    rows.loc[failed & (attempts >= max_attempts), "status"] = FAILED_PERMANENTLY
    return rows


def merge_bucket(existing: pd.DataFrame | None, updates: pd.DataFrame, removed: Iterable[str]) -> pd.DataFrame:
    """One file of the latest view after a run: its rows minus updated and removed keys, plus the updates."""
    updates = updates.drop_duplicates("key", keep="last")
    if existing is None or existing.empty:
        merged = updates
    else:
        gone = set(updates["key"]) | set(removed)
        kept = existing[~existing["key"].isin(gone)]
        merged = pd.concat([kept, updates], ignore_index=True) if len(updates) else kept
    return merged.sort_values("key", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class RunCounts:
    """The summary line's numbers."""

    new: int
    rescored: int
    reused: int
    skipped: int
    failed: int
    permanently_failed: int
    removed: int

    def line(self) -> str:
        return (f"{self.new} new, {self.rescored} rescored, {self.reused} reused, {self.skipped} skipped, "
                f"{self.failed} failed, {self.permanently_failed} permanently failed, {self.removed} removed")


def count_run(plan: RunPlan, settled: pd.DataFrame) -> RunCounts:
    """Counts of a finished run; ``settled`` holds this run's rows (fresh and reused), settled.

    ``failed`` counts the failures this run saw (including reused rows of an interrupted run,
    which no run reported); ``permanently failed`` counts every video now given up on.
    """
    new = int((plan.to_score["reason"] == NEW).sum())
    statuses = settled["status"] if len(settled) else pd.Series(dtype=object)
    return RunCounts(new=new, rescored=len(plan.to_score) - new, reused=len(plan.reused), skipped=plan.skipped,
                     failed=int(statuses.isin(list(FAILED_STATUSES)).sum()),
                     permanently_failed=plan.permanently_failed + int((statuses == FAILED_PERMANENTLY).sum()),
                     removed=len(plan.removed))
