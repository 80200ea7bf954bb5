"""Describe one clip at an adaptive frame rate (``jobs.score --adaptive``): a decoding pass per step.

Pass k decodes only the frames :class:`~pipelines.extraction.adaptive.AdaptivePlan` asks for (the
open windows' frames of step k that no earlier pass described), detects and embeds their faces,
and adds them to each window's accumulator; the classifier's margins on the windows' descriptors
then decide which windows are done. Accumulators only grow, so no frame is described twice and
nothing but one accumulator per window is held between passes (never frames or face features).

Clips are described whole (never split into segments: a window's decision needs all of its
frames) and without face tracks (a tracker follows consecutive frames; adaptive passes give
them out of order). Any failure becomes the result's ``error``, never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from common.errors import FrameRateError
from common.stores.storage import local_copy
from featurizers.decoding.decode import FrameChunk, iter_frame_chunks
from pipelines.extraction.adaptive import AdaptivePlan, AdaptiveSettings
from pipelines.extraction.clip_describer import ClipExtractor, faces_of_chunk
from pipelines.extraction.segments import SegmentResult, SegmentTask
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.extraction.timeline import TimelineSink, window_error_row, window_row
from pipelines.extraction.windows import Window, check_fps, clip_end_seconds, window_indices

log = logging.getLogger(__name__)

MarginFn = Callable[[np.ndarray], np.ndarray]
"""Descriptors (N, L) to the classifier's margin between its top two classes (N,)."""


class AdaptiveJudge(Protocol):
    """The classifier on a worker, as adaptive description needs it (the graph's scoring step gives one)."""

    settings: AdaptiveSettings
    """With its threshold resolved."""

    def setup(self) -> None:
        """Load the classifier, once per worker process."""

    def margins(self, descriptors: np.ndarray) -> np.ndarray:
        """The margin between the top two class scores of each descriptor (N, L)."""


class _ClipState:
    """What the passes share: the plan (made once the first pass knows the sampled frames) and the accumulators."""

    def __init__(self, extractor: ClipExtractor, settings: AdaptiveSettings) -> None:
        self.extractor = extractor
        self.settings = settings
        self.plan: AdaptivePlan | None = None
        self.fps: float | None = None
        self.n_native: int | None = None
        self.window_error: str | None = None
        self.window_s = extractor.config.timeline.window_seconds
        self.accumulators: dict[int, ClipAccumulator] = {}
        """One per window (one for the clip with windows off), growing pass after pass."""
        self.n_corrupt = 0

    def first_pick(self, sampled: np.ndarray, fps: float) -> np.ndarray:
        """The decoder's ``pick`` for the first pass: make the plan from every sampled frame; the
        first step's frames are decoded."""
        self.fps = fps
        base_step = self.extractor.config.sampling.step_for(fps)
        units = np.zeros(len(sampled), np.int64)
        if self.window_s > 0:
            try:
                units = window_indices(sampled, check_fps(fps), self.window_s)
            except FrameRateError as exc:  # the clip is still scored as one unit; its windows get an error row
                self.window_error = f"{type(exc).__name__}: {exc}"
        self.plan = AdaptivePlan(self.settings.steps, sampled, base_step, units)
        self.accumulators = {u: ClipAccumulator(self.extractor.layout) for u in self.plan.available()}
        return self.plan.wanted()

    def unit_of(self, frame_indices: np.ndarray) -> np.ndarray:
        assert self.plan is not None
        position = np.searchsorted(self.plan.sampled, frame_indices)
        return self.plan.units[position]

    def add_chunk(self, chunk: FrameChunk) -> None:
        """Detect, crop (or align) and embed a chunk's faces as exact scoring does; add them to their windows."""
        extractor = self.extractor
        self.n_native = chunk.n_native_frames
        self.n_corrupt += chunk.n_corrupt
        frame_indices = chunk.frame_indices
        faces = faces_of_chunk(chunk, extractor.detector.detect(chunk.frames), extractor.layout.aligns_faces)
        units = self.unit_of(frame_indices)
        for unit, count in zip(*np.unique(units, return_counts=True)):
            self.accumulators[int(unit)].add_frames(int(count))
        if not faces.images:
            return
        features, _ = extractor.embed_faces(faces.images)
        face_frames = frame_indices[faces.frame_positions]
        face_units = units[faces.frame_positions]
        for unit in np.unique(face_units):
            mask = face_units == unit
            self.accumulators[int(unit)].add_faces(features[mask], face_frames[mask])

    def margins(self, margin_of: MarginFn) -> dict[int, float | None]:
        """The open windows' margins; None for a window without a face (no prediction)."""
        assert self.plan is not None
        with_face = [u for u in sorted(self.plan.open) if self.accumulators[u].has_face]
        out: dict[int, float | None] = {u: None for u in self.plan.open}
        if with_face:
            values = margin_of(np.stack([self.accumulators[u].descriptor() for u in with_face]))
            out.update({u: float(v) for u, v in zip(with_face, values)})
        return out


def describe_adaptive(extractor: ClipExtractor, task: SegmentTask, settings: AdaptiveSettings, margin_of: MarginFn,
                      timeline_sink: TimelineSink | None = None) -> SegmentResult:
    """Describe a whole clip at an adaptive frame rate; window rows (with their ``frame_step`` and
    ``n_frames_available``) go to ``timeline_sink`` at the end. ``settings.threshold`` must be resolved."""
    ref = task.clip
    if task.count != 1:
        raise ValueError("adaptive scoring describes whole clips: plan them with segment_frames=0")
    if settings.threshold is None:
        raise ValueError("resolve the adaptive threshold (AdaptiveSettings.resolved) before describing")
    started = time.perf_counter()
    state = _ClipState(extractor, settings)
    error = ref.problem
    if error is None:
        try:
            with local_copy(ref.path) as path:  # one copy of a remote video for every pass
                pick: Callable[[np.ndarray, float], np.ndarray] | None = state.first_pick
                while True:
                    if pick is not None:  # None: nothing new on this level's grid (short windows)
                        for chunk in iter_frame_chunks(path, extractor.config.sampling, None, pick):
                            state.add_chunk(chunk)
                    plan = state.plan
                    assert plan is not None
                    plan.settle(state.margins(margin_of), settings.threshold)
                    if plan.finished:
                        break
                    wanted = plan.wanted()
                    pick = (lambda sampled, fps, w=wanted: w) if len(wanted) else None
        except Exception as exc:  # one bad clip must not stop the job: record why instead
            log.warning("clip %s failed: %s", ref.clip_id, exc)
            error = f"{type(exc).__name__}: {exc}"
    accumulator = ClipAccumulator(extractor.layout)
    adaptive = None
    if error is None and state.plan is not None:
        for acc in state.accumulators.values():
            accumulator.merge(acc)
        final = state.plan.final_step
        adaptive = {"frame_step": min(final.values()) if final else None,
                    "n_frames_available": len(state.plan.sampled)}
        if timeline_sink is not None and extractor.config.timeline.windows_on:
            timeline_sink.windows(_window_rows(state))
    return SegmentResult(ref, task.index, task.count, accumulator, error, state.fps, time.perf_counter() - started,
                         state.n_corrupt, None, adaptive)


def _window_rows(state: _ClipState) -> list[dict]:
    plan = state.plan
    assert plan is not None
    if state.window_error is not None:
        return [window_error_row(state.window_error, state.extractor.layout)]
    clip_end = clip_end_seconds(state.n_native, state.fps) if state.n_native and state.fps else None
    available = plan.available()
    rows = []
    for unit in sorted(state.accumulators):
        row = window_row(Window(unit, state.window_s, state.accumulators[unit]), clip_end)
        row.update(frame_step=plan.final_step[unit], n_frames_available=available[unit])
        rows.append(row)
    return rows
