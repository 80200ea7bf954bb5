"""Emotion over time, Beam-free: time windows of a clip and face tracks across its frames.

- :mod:`pipelines.timeline.windows`: window k = floor((frame index / fps) / S); one mergeable
  :class:`~pipelines.aggregate.ClipAccumulator` per window (:class:`WindowedAccumulator`).
- :mod:`pipelines.timeline.face_tracks`: a streaming :class:`FaceTracker` (box overlap and the
  face's own embedding, one optimal assignment per frame) and :func:`stitch_tracks`, which
  numbers a split clip's tracks clip-wide.
"""

from pipelines.timeline.face_tracks import (ClipTracks, ClosedTrack, FaceTracker, SegmentTracks, TrackerSettings,
                                            stitch_tracks, track_rows)
from pipelines.timeline.windows import Window, WindowedAccumulator, check_fps, merge_windows, window_indices

__all__ = ["ClipTracks", "ClosedTrack", "FaceTracker", "SegmentTracks", "TrackerSettings", "Window",
           "WindowedAccumulator", "check_fps", "merge_windows", "stitch_tracks", "track_rows", "window_indices"]
