"""A video's frame index: every frame's timestamp in presentation order and which frames are keyframes.

Frames are numbered as decord numbers them: a frame's index is the rank of its timestamp among
the video stream's packets. The index is built once per clip (a probe on a worker) and handed
to every segment of the clip, so no segment reads the file to number its frames, and a
segment seeks straight to the keyframe before its first frame. A segment carries only its
:meth:`FrameIndex.window`, not the whole clip's index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FrameIndex:
    """Timestamps (stream time base) of frames ``first .. first + len(timestamps) - 1``, ascending."""

    timestamps: np.ndarray = field(compare=False, repr=False)
    keyframes: np.ndarray = field(compare=False, repr=False)
    """Ranks (clip-wide frame indices) of the keyframes within this index, ascending."""
    n_frames: int
    """Frames of the whole video (decord's count: its video packets)."""
    fps: float
    declared_frames: int = 0
    """The frame count the container's header states (0: none)."""
    first: int = 0
    """The clip-wide index of ``timestamps[0]`` (0 for a whole clip's index)."""

    @property
    def stop(self) -> int:
        """One past the last frame this index numbers."""
        return self.first + len(self.timestamps)

    def keyframe_at_or_before(self, index: int) -> int:
        """The rank of the last keyframe at or before frame ``index``; the first frame known when none is."""
        position = int(np.searchsorted(self.keyframes, index, side="right")) - 1
        return int(self.keyframes[position]) if position >= 0 else self.first

    def timestamp(self, index: int) -> int:
        return int(self.timestamps[index - self.first])

    def rank(self, timestamp: int) -> int | None:
        """The frame index of a decoded picture's timestamp.

        None when the timestamp is not one of the stream's packets (or lies before this window);
        :attr:`stop` when it lies past the window: the picture comes after every frame numbered here.
        """
        if len(self.timestamps) == 0:
            return None
        if timestamp > self.timestamps[-1]:
            return self.stop if self.stop < self.n_frames else None
        position = int(np.searchsorted(self.timestamps, timestamp))
        if self.timestamps[position] != timestamp:
            return None
        return self.first + position

    def window(self, start: int, stop: int) -> FrameIndex:
        """The part of this index a segment ``[start, stop)`` needs: from the keyframe before ``start`` to ``stop``."""
        stop = min(stop, self.stop)
        begin = min(self.keyframe_at_or_before(start), stop)
        keys = self.keyframes[(self.keyframes >= begin) & (self.keyframes < stop)]
        return FrameIndex(self.timestamps[begin - self.first : stop - self.first].copy(), keys.copy(),
                          self.n_frames, self.fps, self.declared_frames, begin)


def index_of_packets(packets: Iterable[tuple[int | None, int | None, bool]], fps: float,
                     declared_frames: int = 0) -> FrameIndex:
    """The index of a stream from its packets' ``(pts, dts, is_keyframe)`` in file order (empty ones left out).

    A packet with neither timestamp ranks by its position, as decord does.
    """
    stamps, keys = [], []
    for pts, dts, is_keyframe in packets:
        ts = pts if pts is not None else dts
        stamps.append(len(stamps) if ts is None else ts)
        keys.append(is_keyframe)
    order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
    timestamps = np.asarray(stamps, np.int64)[order]
    keyframes = np.flatnonzero(np.asarray(keys, bool)[order]).astype(np.int64) if keys else np.zeros(0, np.int64)
    return FrameIndex(timestamps, keyframes, len(timestamps), fps, declared_frames)
