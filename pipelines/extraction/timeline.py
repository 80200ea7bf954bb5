"""A clip's time windows and face tracks, built while its chunks stream, and put together across segments.

One :class:`PartTimeline` follows one part of a clip (the whole clip, or a segment of a split
one) beside its accumulator: windows (:mod:`pipelines.extraction.windows`) and tracks
(:mod:`pipelines.extraction.face_tracks`). Rows that nothing later can change leave at once
(:meth:`PartTimeline.pop_final`), so memory stays flat in clip length: windows before the current
one, and, in a clip's first part, whose local track ids are the clip's, finished tracks. What a
neighbouring segment may still change travels in the part's :class:`TimelinePart` and is put
together by :func:`finish_timeline`, which also gives each later segment's local-to-clip track ids.

Rows here are bare (times, counts, descriptor); the graph adds the clip's columns or scores them.
Pure and Beam-free.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from common.errors import FrameRateError
from common.tables.schema import DescriptorLayout
from featurizers.decoding.decode import FrameChunk
from pipelines.extraction.face_tracks import (
    DEFAULT_MIN_TRACK_SECONDS,
    FaceTracker,
    SegmentTracks,
    TrackerSettings,
    stitch_tracks,
    track_rows,
)
from pipelines.extraction.windows import Window, WindowedAccumulator, check_fps, clip_end_seconds

DEFAULT_WINDOW_SECONDS = 10.0


def timeline_from_flags(window_seconds: float, min_track_seconds: float, *, windows: bool, tracks: bool,
                        windows_can_be_off: bool = False) -> TimelineSettings:
    """The settings of ``--window-seconds`` and ``--min-track-seconds``; ValueError naming the flag when bad.

    ``windows``/``tracks``: whether the run writes them. ``--window-seconds 0`` means "no windows"
    where ``windows_can_be_off`` (``jobs.score``); elsewhere a window must last some time.
    """
    if not math.isfinite(window_seconds) or window_seconds < 0 or (window_seconds == 0 and not windows_can_be_off):
        expected = ">= 0 (0: no windows)" if windows_can_be_off else "> 0"
        raise ValueError(f"--window-seconds must be a number of seconds {expected}, got {window_seconds!r}")
    if not math.isfinite(min_track_seconds) or min_track_seconds < 0:
        raise ValueError(f"--min-track-seconds must be a number of seconds >= 0, got {min_track_seconds!r}")
    return TimelineSettings(window_seconds=window_seconds if windows else 0.0, track_faces=tracks,
                            min_track_seconds=min_track_seconds)


class TimelineSink(Protocol):
    """Receives a clip's bare window and track rows as soon as they are final (the graph writes them)."""

    def windows(self, rows: list[dict[str, Any]]) -> None: ...

    def tracks(self, rows: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class TimelineSettings:
    """Which timeline a run builds: windows of ``window_seconds`` (0: none) and face tracks."""

    window_seconds: float = 0.0
    track_faces: bool = False
    min_track_seconds: float = DEFAULT_MIN_TRACK_SECONDS
    """Tracks shorter than this (first to last face) keep their face rows' ``track_id`` but get no track row."""
    tracker: TrackerSettings = field(default_factory=TrackerSettings)

    def __post_init__(self) -> None:
        if not math.isfinite(self.window_seconds) or self.window_seconds < 0:
            raise ValueError(f"window length must be a finite number of seconds >= 0 (0: no windows), "
                             f"got {self.window_seconds!r}")
        if not math.isfinite(self.min_track_seconds) or self.min_track_seconds < 0:
            raise ValueError(f"minimum track length must be a finite number of seconds >= 0, "
                             f"got {self.min_track_seconds!r}")

    @property
    def windows_on(self) -> bool:
        return self.window_seconds > 0

    def windows_dict(self) -> dict[str, Any]:
        """What a window table records of how it was made."""
        return {"window_seconds": self.window_seconds}

    def tracks_dict(self) -> dict[str, Any]:
        """What a track table records of how it was made."""
        return {"min_track_seconds": self.min_track_seconds, "tracker": self.tracker.to_dict()}

    def for_face_rows(self) -> TimelineSettings:
        """These settings when face rows are written: tracks too, as every face row carries its ``track_id``."""
        return self if self.track_faces else replace(self, track_faces=True)


def window_row(window: Window, clip_end_s: float | None) -> dict[str, Any]:
    """A bare window row: span, counts, descriptor (zeros without a face), no error."""
    row = window.row(clip_end_s)
    row.update(n_faces=window.accumulator.n_faces, max_faces_in_frame=window.accumulator.max_faces_in_frame,
               error=None)
    return row


def window_error_row(error: str, layout: DescriptorLayout) -> dict[str, Any]:
    """The one window row of a clip whose frames cannot be placed in time: no span, the reason."""
    return {"start_s": None, "end_s": None, "n_frames": 0, "n_face_frames": 0, "n_faces": 0, "max_faces_in_frame": 0,
            "has_face": False, "descriptor": np.zeros(layout.length, np.float32), "error": error}


@dataclass
class TimelinePart:
    """What one part hands on to be put together with its clip's other parts: small and picklable."""

    index: int
    windows: WindowedAccumulator | None = None
    """The windows the part still holds (its first, which the previous segment may share, and its last)."""
    tracks: SegmentTracks | None = None
    fps: float | None = None
    n_native_frames: int | None = None
    window_error: str | None = None
    """Why the part has no windows (the video states no usable frame rate)."""


@dataclass
class ClipTimeline:
    """A clip's last window and track rows, and each part's local-to-clip track ids (None: no tracking)."""

    window_rows: list[dict[str, Any]]
    track_rows: list[dict[str, Any]]
    id_maps: list[np.ndarray] | None


class PartTimeline:
    """Windows and tracks of one part of a clip, fed chunk by chunk as the clip's accumulator is."""

    def __init__(self, settings: TimelineSettings, layout: DescriptorLayout, index: int = 0,
                 frame_range: tuple[int, int] | None = None, where: str = "the video") -> None:
        self.settings = settings
        self.layout = layout
        self.index = index
        self._frame_range = frame_range
        self._where = where
        self._windows: WindowedAccumulator | None = None
        self._window_error: str | None = None
        self._tracker = FaceTracker(layout.feature_dim, settings.tracker) if settings.track_faces else None
        self._fps: float | None = None
        self._n_native_frames: int | None = None
        self._started = False

    @property
    def tracks_faces(self) -> bool:
        return self._tracker is not None

    def _start(self, chunk: FrameChunk) -> None:
        self._started = True
        self._fps = chunk.native_fps
        self._n_native_frames = chunk.n_native_frames
        if self.settings.windows_on:
            try:
                self._windows = WindowedAccumulator(self.layout, self.settings.window_seconds, chunk.native_fps,
                                                    self._frame_range, where=self._where)
            except FrameRateError as exc:  # the clip is still described; its windows get an error row
                self._window_error = f"{type(exc).__name__}: {exc}"

    def add_chunk(self, chunk: FrameChunk, face_positions: np.ndarray, boxes: np.ndarray,
                  features: np.ndarray) -> np.ndarray:
        """Add a chunk's frames and its faces (position of each face's frame in the chunk, box, features);
        returns each face's local track id (empty when tracks are off). Faceless chunks count too."""
        if not self._started:
            self._start(chunk)
        face_positions = np.asarray(face_positions, np.int64)
        if self._windows is not None:
            self._windows.add_frames(chunk.frame_indices)
            if len(face_positions):
                self._windows.add_faces(features, chunk.frame_indices[face_positions])
        if self._tracker is None:
            return np.zeros(0, np.int64)
        return self._tracker.update_chunk(chunk.frame_indices, face_positions, boxes, features)

    def pop_final(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Window and track rows that no later frame or segment can change, handed out once.

        Windows before the current one (never the clip's last, so none needs the clip's end), and,
        in the first part, finished tracks (their local ids are the clip's) that last long enough.
        """
        windows = [window_row(w, None) for w in self._windows.pop_closed()] if self._windows is not None else []
        tracks: list[dict[str, Any]] = []
        if self._tracker is not None and self.index == 0:
            closed = self._tracker.pop_closed()
            if closed and self._usable_fps() is not None:
                tracks = track_rows(closed, self._fps, self.settings.min_track_seconds)  # type: ignore[arg-type]
        return windows, tracks

    def _usable_fps(self) -> float | None:
        try:
            return check_fps(self._fps)
        except FrameRateError:
            return None

    def finish(self) -> TimelinePart:
        """End the part: what it still holds, for :func:`finish_timeline`."""
        return TimelinePart(self.index, self._windows, self._tracker.finish() if self._tracker is not None else None,
                            self._fps, self._n_native_frames, self._window_error)


def finish_timeline(parts: Sequence[TimelinePart], settings: TimelineSettings,
                    layout: DescriptorLayout) -> ClipTimeline:
    """Put a clip's parts (all of them, any order) together: its remaining window and track rows.

    A window two segments share is merged exactly; tracks are stitched across the boundaries
    (:func:`stitch_tracks`), and each part's local ids are mapped to clip ids. A clip without a
    usable frame rate gets one window error row and no track row (its face rows keep their ids).
    What the parts built decides what there is (tracks may have been built for face rows alone);
    ``settings`` gives the minimum track length and the tracker's settings.
    """
    ordered = sorted(parts, key=lambda p: p.index)
    fps = next((p.fps for p in ordered if p.fps is not None), None)
    n_native = next((p.n_native_frames for p in ordered if p.n_native_frames is not None), None)
    usable_fps = None
    try:
        usable_fps = check_fps(fps)
    except FrameRateError:
        pass
    windows: list[dict[str, Any]] = []
    error = next((p.window_error for p in ordered if p.window_error is not None), None)
    held = [p.windows for p in ordered if p.windows is not None]
    if error is not None:
        windows = [window_error_row(error, layout)]
    elif held:
        merged = copy.deepcopy(held[0])
        for other in held[1:]:
            merged.merge(other)
        clip_end = clip_end_seconds(n_native, usable_fps) if n_native and usable_fps else None
        windows = [window_row(w, clip_end) for w in merged.windows()]
    tracks: list[dict[str, Any]] = []
    id_maps = None
    if ordered and all(p.tracks is not None for p in ordered):
        stitched = stitch_tracks([p.tracks for p in ordered], settings.tracker)  # type: ignore[misc]
        id_maps = stitched.id_maps
        if usable_fps is not None:
            tracks = track_rows(stitched.tracks, usable_fps, settings.min_track_seconds)
    return ClipTimeline(windows, tracks, id_maps)
