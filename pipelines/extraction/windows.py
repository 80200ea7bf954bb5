"""Time windows of a clip: window k holds the sampled frames whose time lies in [k*S, (k+1)*S).

A frame's time is its native index divided by the clip's frame rate, the same ``time_s`` the
face rows carry. Each window keeps its own :class:`ClipAccumulator` (AFEW or VGAF statistics,
as the clip), so a window cut in two by a segment boundary merges exactly, and the clip's
accumulator is the merge of its windows. Pure and Beam-free: the Beam steps only move
:class:`WindowedAccumulator` objects (small, picklable) and :class:`Window` rows.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import FrameRateError
from common.tables.schema import DescriptorLayout
from pipelines.extraction.statistics import ClipAccumulator

EDGE_TOLERANCE = 1e-9
"""Relative slack at window edges: a frame at 0.3 s with S = 0.1 s computes 2.9999999999999996
windows in floating point; it belongs to window 3, as by hand."""


def check_fps(fps: float | None, where: str = "the video") -> float:
    """The clip's frame rate, or :class:`FrameRateError` when there is none to place frames in time."""
    if fps is None or not isinstance(fps, (int, float, np.floating, np.integer)) or not math.isfinite(fps) \
            or fps <= 0:
        raise FrameRateError(f"{where} states no usable frame rate (got {fps!r}); windows and track times "
                             "need frame index / fps, so re-encode the video with a frame rate")
    return float(fps)


def check_window_seconds(window_s: float) -> float:
    """A window length in seconds: finite and > 0 (0 means "windows off" to the jobs, never here)."""
    if not isinstance(window_s, (int, float, np.floating, np.integer)) or not math.isfinite(window_s) \
            or window_s <= 0:
        raise ValueError(f"window length must be a finite number of seconds > 0, got {window_s!r}")
    return float(window_s)


def window_indices(frame_indices: np.ndarray, fps: float, window_s: float) -> np.ndarray:
    """Window of each sampled frame: floor((index / fps) / S), robust to rounding at the edges."""
    fps = check_fps(fps)
    window_s = check_window_seconds(window_s)
    frame_indices = np.asarray(frame_indices)
    if frame_indices.size and frame_indices.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {int(frame_indices.min())}")
    quotient = (frame_indices / fps) / window_s
    nearest = np.rint(quotient)
    on_edge = np.abs(quotient - nearest) <= EDGE_TOLERANCE * np.maximum(1.0, nearest)
    return np.where(on_edge, nearest, np.floor(quotient)).astype(np.int64)


def window_index(frame_index: int, fps: float, window_s: float) -> int:
    """The window of one sampled frame (see :func:`window_indices`)."""
    return int(window_indices(np.array([frame_index]), fps, window_s)[0])


def clip_end_seconds(n_native_frames: int, fps: float) -> float:
    """Where a clip of ``n_native_frames`` ends in time: the end of its last native frame."""
    return n_native_frames / check_fps(fps)


@dataclass
class Window:
    """One window's statistics; ``start_s``/``end_s`` are the window's own edges."""

    index: int
    window_s: float
    accumulator: ClipAccumulator

    @property
    def start_s(self) -> float:
        return self.index * self.window_s

    @property
    def end_s(self) -> float:
        return (self.index + 1) * self.window_s

    def row(self, clip_end_s: float | None = None) -> dict[str, Any]:
        """The window's row: its span (end clipped to the clip's end), counts and descriptor.

        The descriptor is all zeros when ``has_face`` is false, as for a faceless clip; a
        scorer must not feed it to a classifier.
        """
        end_s = self.end_s if clip_end_s is None else min(self.end_s, clip_end_s)
        if end_s <= self.start_s:
            raise ValueError(f"window {self.index} starts at {self.start_s} s, at or after the clip's end "
                             f"({clip_end_s} s): the clip end or the frame rate is wrong")
        acc = self.accumulator
        return {
            "start_s": self.start_s,
            "end_s": end_s,
            "n_frames": acc.n_frames,
            "n_face_frames": acc.n_face_frames,
            "has_face": acc.has_face,
            "descriptor": acc.descriptor(),
        }


class WindowedAccumulator:
    """One :class:`ClipAccumulator` per time window, fed like the clip's accumulator.

    Frames must come in time order (as decoding gives them), so windows before the current
    one are complete and :meth:`pop_closed` hands them out while the clip streams: memory
    holds the current window, plus, for a segment of a split clip (``frame_range`` not None
    and not starting at 0), the first window, which the previous segment may share. What
    stays here at the end travels with the segment's result and is merged exactly with the
    neighbours' by :meth:`merge`.
    """

    def __init__(self, layout: DescriptorLayout, window_s: float, fps: float | None,
                 frame_range: tuple[int, int] | None = None, where: str = "the video") -> None:
        self.layout = layout
        self.window_s = check_window_seconds(window_s)
        self.fps = check_fps(fps, where)
        self._windows: dict[int, ClipAccumulator] = {}
        self._current = -1  # window of the latest frame seen
        self._closed_below = 0  # windows below this index were handed out by pop_closed
        starts_mid_clip = frame_range is not None and frame_range[0] > 0
        self._shared_first = self.window_of(np.array([frame_range[0]]))[0] if starts_mid_clip else None

    def window_of(self, frame_indices: np.ndarray) -> np.ndarray:
        return window_indices(frame_indices, self.fps, self.window_s)

    def _window(self, index: int) -> ClipAccumulator:
        acc = self._windows.get(index)
        if acc is None:
            acc = self._windows[index] = ClipAccumulator(self.layout)
        return acc

    def _place(self, frame_indices: np.ndarray) -> np.ndarray:
        windows = self.window_of(frame_indices)
        if windows.size:
            closed = windows[windows < self._closed_below]
            if closed.size and not (self._shared_first is not None and np.all(closed == self._shared_first)):
                raise ValueError(f"frames of window {int(closed.min())} came after that window was closed: "
                                 "frames must be added in time order")
            self._current = max(self._current, int(windows.max()))
        return windows

    def add_frames(self, frame_indices: np.ndarray) -> None:
        """Count sampled frames (native indices), with or without faces, in their windows."""
        windows = self._place(np.asarray(frame_indices))
        for index, count in zip(*np.unique(windows, return_counts=True)):
            self._window(int(index)).add_frames(int(count))

    def add_faces(self, features: np.ndarray, frame_ids: np.ndarray) -> None:
        """Add face features (N, D) tagged with their frame's native index; a frame's faces in one call."""
        features = np.asarray(features)
        if len(features) == 0:
            return
        frame_ids = np.asarray(frame_ids)
        windows = self._place(frame_ids)
        first, last = int(windows.min()), int(windows.max())
        if first == last:  # the usual case: a chunk's faces lie in one window
            self._window(first).add_faces(features, frame_ids)
            return
        for index in np.unique(windows):
            mask = windows == index
            self._window(int(index)).add_faces(features[mask], frame_ids[mask])

    def pop_closed(self) -> list[Window]:
        """Hand out (and forget) the windows that no later frame of this part can change, in order."""
        ready = sorted(k for k in self._windows if k < self._current and k != self._shared_first)
        self._closed_below = max(self._closed_below, self._current)
        return [Window(k, self.window_s, self._windows.pop(k)) for k in ready]

    def windows(self) -> list[Window]:
        """The windows held now, in time order (all of them, once every part is merged)."""
        return [Window(k, self.window_s, self._windows[k]) for k in sorted(self._windows)]

    def merge(self, other: WindowedAccumulator) -> WindowedAccumulator:
        """Fold another part's held windows into this one; a window both hold is merged exactly."""
        if (other.layout, other.window_s, other.fps) != (self.layout, self.window_s, self.fps):
            raise ValueError(f"cannot merge windows of {other.window_s} s at {other.fps} fps ({other.layout}) "
                             f"into windows of {self.window_s} s at {self.fps} fps ({self.layout})")
        for index, acc in other._windows.items():
            mine = self._windows.get(index)
            if mine is None:
                self._windows[index] = copy.deepcopy(acc)
            else:
                mine.merge(acc)
        self._current = max(self._current, other._current)
        return self

    def __len__(self) -> int:
        return len(self._windows)


def merge_windows(windows: Iterable[Window], layout: DescriptorLayout) -> ClipAccumulator:
    """The clip's accumulator as the merge of its windows' (equal to feeding the clip directly)."""
    merged = ClipAccumulator(layout)
    for window in windows:
        merged.merge(window.accumulator)
    return merged
