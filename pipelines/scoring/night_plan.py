"""What a night's run has to do, worked out before anything heavy loads.

Most nights an archive has nothing new: listing it, reading the small index of its latest view
and comparing the two is all such a night needs. This module does that with pandas and pyarrow
only. The model, torch, Beam and the networks load (:mod:`pipelines.scoring.scoring_run`) only
when a video needs describing or rows need folding in; an idle night writes its manifest and ends.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from common.stores import storage
from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from common.stores.output_paths import check_output, check_output_folder
from featurizers.detection.detection_mode import DetectionMode
from pipelines.extraction.adaptive import adaptive_from_flags
from pipelines.extraction.datasets import VIDEO_EXTENSIONS
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.timeline import (
    DEFAULT_MIN_TRACK_SECONDS,
    DEFAULT_WINDOW_SECONDS,
    TimelineSettings,
    timeline_from_flags,
)
from pipelines.scoring.archive_state import RunCounts, RunPlan, count_run, plan_run
from pipelines.scoring.run_lock import DEFAULT_STALE_MINUTES
from pipelines.scoring.score_store import ScoreStore, finished_manifest

log = logging.getLogger("jobs.score")

OUTPUT_FOLDERS = ("scores", "latest", "windows", "tracks", "windows_history", "tracks_history")
"""What a run writes in under ``--output``; each is checked, like ``--output``, before the first video."""


@dataclass(frozen=True)
class ScoringSettings:
    """What a night's run is asked to do: ``jobs.score``'s flags, or a caller's own choice."""

    model: Path
    input: str
    output: str
    weights: str | None = None
    max_attempts: int = 3
    flush_clips: int = FLUSH_EVERY_ROWS
    flush_seconds: float = FLUSH_EVERY_S
    device: str = "auto"
    batch_size: int = ExtractionConfig.face_batch_size
    backend: str = "auto"
    segment_frames: int = ExtractionConfig.segment_frames
    clip_timeout: float | None = None
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    """Length of the scored time windows (0: none)."""
    min_track_seconds: float = DEFAULT_MIN_TRACK_SECONDS
    lock_stale_minutes: float = DEFAULT_STALE_MINUTES
    """A lock whose heartbeat is older than this was left by a dead run."""
    adaptive: str | None = None
    """``--adaptive``: the schedule of frame steps, e.g. ``"18,9,1"`` (None: exact scoring)."""
    adaptive_threshold: float | None = None
    """``--adaptive-threshold``: the margin that ends a window (None: the calibrated default)."""
    detect_every: int = 1
    """Full face detection on every N-th sampled frame (1: exact, whatever the model was trained on)."""
    detect_max_side: int | None = None
    beam_args: Sequence[str] = field(default_factory=tuple)
    """Flags for Beam (``--runner dask``, ...), as the job received them."""


def check_settings(settings: ScoringSettings) -> TimelineSettings:
    """The checks that need no model loaded and no video read; raises ValueError naming the flag.

    Returns the windows and tracks the flags ask for."""
    check_output(settings.output)
    if not storage.is_remote(settings.output):  # the folders a run writes in, where they exist already
        for folder in OUTPUT_FOLDERS:
            check_output_folder(storage.join(settings.output, folder), "--output")
    for flag, value in (("--max-attempts", settings.max_attempts), ("--flush-clips", settings.flush_clips),
                        ("--flush-seconds", settings.flush_seconds),
                        ("--lock-stale-minutes", settings.lock_stale_minutes)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{flag} must be a positive number, got {value}")
    adaptive_from_flags(settings.adaptive, settings.adaptive_threshold)
    # Against a 1-pixel face here; against the model's minimum face size once it is read (check_model).
    DetectionMode(settings.detect_every, settings.detect_max_side).check(1, "a face of at least one pixel")
    if settings.adaptive is not None and settings.detect_every != 1:
        # Adaptive passes describe sparse frames (every 18th, then 9th): no neighbours to follow faces through.
        raise ValueError("--detect-every cannot be combined with --adaptive (its passes describe sparse frames); "
                         "--detect-max-side can")
    return timeline_from_flags(settings.window_seconds, settings.min_track_seconds, windows=True, tracks=True,
                               windows_can_be_off=True)


def list_archive(settings: ScoringSettings) -> pd.DataFrame:
    """The archive now: key (path relative to --input), url, size_bytes, mtime_ns; raises on usage errors."""
    started = time.perf_counter()
    files = storage.list_files(settings.input, VIDEO_EXTENSIONS)
    if not files:
        raise ValueError(f"no videos under {settings.input} (extensions .avi, .mp4, .mkv, ...); "
                         f"{settings.output} left unchanged")
    log.info("listed %d videos under %s in %.1f s", len(files), settings.input, time.perf_counter() - started)
    return pd.DataFrame({"key": [f.key for f in files], "url": [f.url for f in files],
                         "size_bytes": [f.size_bytes for f in files], "mtime_ns": [f.mtime_ns for f in files]})


@dataclass(frozen=True)
class NightPlan:
    """A run's plan with what it was made from: the store, the runs it adopts, the archive's listing."""

    store: ScoreStore
    plan: RunPlan
    unfinished: list[str]
    """Runs killed before their commit, whose finished rows this run adopts."""
    listed: int
    model_sha256: str

    @property
    def has_work(self) -> bool:
        """Whether anything must be described or folded into the state; an idle night only records itself."""
        return bool(len(self.plan.to_score) or len(self.plan.reused) or self.plan.removed)

    def manifest(self, settings: ScoringSettings, counts: RunCounts) -> dict[str, Any]:
        """The run's manifest before its commit adds what it wrote."""
        return {"input": str(settings.input), "model": str(settings.model), "model_sha256": self.model_sha256,
                "max_attempts": settings.max_attempts, "adopted_runs": self.unfinished, "counts": asdict(counts),
                "listed": self.listed}


def plan_night(settings: ScoringSettings, listing: pd.DataFrame, model_sha256: str) -> NightPlan:
    """Plan from the latest view's small index and the staged rows of runs that were killed."""
    store = ScoreStore(settings.output)
    if storage.exists(storage.join(settings.output, "scores.parquet")):
        log.warning("%s is the single table of an older version; it is not read (every video is scored "
                    "again into latest/) and can be deleted", storage.join(settings.output, "scores.parquet"))
    started = time.perf_counter()
    index = store.read_index()
    unfinished = store.unfinished_runs()
    staged = store.read_staged(unfinished, settings.max_attempts)
    plan = plan_run(listing, index, staged, model_sha256, settings.max_attempts)
    log.info("planned from an index of %d videos in %.1f s", len(index), time.perf_counter() - started)
    if unfinished:
        log.info("run(s) %s did not finish; reused %d clips they had finished", ", ".join(unfinished),
                 len(plan.reused))
    counts_by_reason = plan.reason_counts()
    if counts_by_reason:
        log.info("to score: %s", ", ".join(f"{n} {why}" for why, n in counts_by_reason.items()))
    if plan.removed:
        log.info("%d videos scored before are no longer listed; dropped from the latest view", len(plan.removed))
    return NightPlan(store, plan, unfinished, len(listing), model_sha256)


def commit_idle_night(night: NightPlan, settings: ScoringSettings, run_id: str,
                      before_commit: Callable[[], None] = lambda: None) -> RunCounts:
    """Record a run that had nothing to describe and nothing to fold in: its manifest, nothing else.

    The latest view and the timeline tables stay as they are, so no schema (and no model) is needed.
    """
    if night.has_work:
        raise ValueError("commit_idle_night is for a night without work; this one has some")
    counts = count_run(night.plan, night.plan.reused)
    before_commit()
    night.store.write_manifest(run_id, finished_manifest(night.manifest(settings, counts), run_id, 0, 0, 0))
    log.info("nothing new: wrote the manifest of run %s", run_id)
    return counts


def empty_failures() -> pd.DataFrame:
    """The failures of an idle night: none, in the columns jobs.score prints."""
    return pd.DataFrame(columns=["key", "status", "error"])
