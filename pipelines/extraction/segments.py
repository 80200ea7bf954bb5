"""Long clips as frame segments: planning the ranges and merging the parts back into one clip.

A two-hour archive video is one clip but too much work for one worker: it is cut into ranges
of frames that different workers describe, and the segments' accumulators merge exactly into
the clip's statistics. Pure functions on small records; the Beam steps live in beam_steps.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from common.tables.schema import DescriptorLayout
from featurizers.decoding.decode import corrupt_share_error
from featurizers.decoding.frame_index import FrameIndex
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.extraction.timeline import TimelinePart

FrameRange = tuple[int, int]
"""Native frame indices ``[start, stop)``."""


@dataclass(frozen=True)
class SegmentTask:
    """One unit of work: a range of a clip's frames (``None``: the whole clip, unsplit)."""

    clip: ClipRef
    index: int = 0
    count: int = 1
    frame_range: FrameRange | None = None
    frames: FrameIndex | None = field(default=None, compare=False, repr=False)
    """The part of the clip's frame index this task needs (from the clip's one probe); None: the
    decoder indexes the clip itself (splitting off)."""

    def describe(self) -> str:
        """How log lines and error messages name this part of the clip."""
        if self.frame_range is None:
            return "the whole clip"
        start, stop = self.frame_range
        return f"segment {self.index + 1} of {self.count} (frames {start}-{stop - 1})"


@dataclass
class SegmentResult:
    """What a worker found in one segment: its statistics, or why it failed."""

    clip: ClipRef
    index: int
    count: int
    accumulator: ClipAccumulator
    error: str | None = None
    native_fps: float | None = None
    seconds: float = 0.0
    n_corrupt_frames: int = 0
    """Sampled frames the decoder left out as undecodable."""
    timeline: TimelinePart | None = None
    """A split clip's part of its windows and tracks, to be put together with the others' (None unsplit)."""
    adaptive: dict[str, int | None] | None = None
    """Adaptive scoring's clip columns (``frame_step``, ``n_frames_available``); None in exact mode."""
    bytes_read: int = -1
    """Bytes of the video the segment's decoder read (-1: unknown)."""


def whole_chunks(frames: int, chunk_frames: int) -> int:
    """``frames`` rounded up to whole decoding chunks; 0 or less stays 0 or less (splitting off)."""
    return -(-frames // chunk_frames) * chunk_frames


def segment_ranges(n_frames: int, step: int, segment_frames: int, chunk_frames: int = 1) -> list[FrameRange]:
    """Consecutive native-frame ranges holding ``segment_frames`` sampled frames each.

    ``segment_frames`` counts the frames a worker decodes (after the frame step), so a segment
    is the same amount of work whatever the step; it is rounded up to whole decoding chunks of
    ``chunk_frames``, so that every chunk, and so every detector and featurizer batch, holds
    the same frames split or unsplit (batch composition moves float32 results, and with them
    VGAF's landmark alignment). The last range holds the remainder. Splitting off
    (``segment_frames <= 0``) or a clip that fits in one segment gives one range.
    """
    if step < 1 or chunk_frames < 1:
        raise ValueError(f"frame step and chunk size must be >= 1, got {step} and {chunk_frames}")
    segment_frames = whole_chunks(segment_frames, chunk_frames)
    if segment_frames <= 0 or n_frames <= segment_frames * step:
        return [(0, max(n_frames, 0))]
    span = segment_frames * step
    return [(start, min(start + span, n_frames)) for start in range(0, n_frames, span)]


def plan_segments(clip: ClipRef, ranges: list[FrameRange], frames: FrameIndex | None = None) -> list[SegmentTask]:
    """The tasks of a clip; a single range is the whole clip, decoded exactly as unsplit.

    Every task gets its window of the clip's frame index ``frames`` (when known), so all segments
    number and seek by the one index the clip's probe read.
    """
    if len(ranges) <= 1:
        return [SegmentTask(clip, frames=frames)]
    return [SegmentTask(clip, i, len(ranges), r, frames.window(*r) if frames is not None else None)
            for i, r in enumerate(ranges)]


@dataclass(frozen=True)
class PlanningShard:
    """A listed clip and which share of its segments one planning element emits.

    Runners that never repartition what the driver created (Beam's Dask runner keeps one
    partition per ``Create`` chunk) run all segments planned from one element in one place; a
    long clip is therefore listed as several elements, each keeping every ``shards``-th segment.
    """

    clip: ClipRef
    shard: int = 0
    shards: int = 1


def planning_shard_count(size_bytes: int | None, frames_per_segment: int, bytes_per_frame: int,
                         max_shards: int) -> int:
    """How many planning elements a clip of ``size_bytes`` gets: its estimated whole segments.

    ``frames_per_segment`` counts native frames (sampled frames per segment times the step);
    0 or less means splitting is off. Unknown sizes and clips estimated below two segments get one.
    """
    if size_bytes is None or frames_per_segment <= 0 or bytes_per_frame <= 0:
        return 1
    estimated_segments = size_bytes // bytes_per_frame // frames_per_segment
    return int(min(max(estimated_segments, 1), max(max_shards, 1)))


def tasks_of_shard(tasks: list[SegmentTask], shard: int, shards: int) -> list[SegmentTask]:
    """The tasks one planning element emits: every ``shards``-th, so the shards cover each task once."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of {shards}")
    return tasks[shard::shards]


@dataclass
class MergedClip:
    """A clip put back together from its segments."""

    accumulator: ClipAccumulator
    error: str | None
    native_fps: float | None
    n_segments: int
    seconds: float
    n_corrupt_frames: int = 0


def merge_segments(results: Iterable[SegmentResult], layout: DescriptorLayout) -> MergedClip:
    """Merge a clip's segment results; any failed or missing segment makes the clip an error, and so does
    a share of corrupt frames over the limit in the whole clip (:func:`corrupt_share_error`).

    A segment delivered twice (a retried bundle) counts once. No partial descriptor survives
    an error: the caller writes the zero descriptor of an error row.
    """
    by_index: dict[int, SegmentResult] = {}
    for result in results:
        by_index.setdefault(result.index, result)
    if not by_index:
        raise ValueError("merge_segments needs at least one segment result")
    ordered = [by_index[i] for i in sorted(by_index)]
    count = ordered[0].count
    merged = ClipAccumulator(layout)
    error = None
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        error = f"segments {[m + 1 for m in missing]} of {count} came back without a result"
    for result in ordered:
        if result.error is not None and error is None:
            error = result.error
        merged.merge(result.accumulator)
    fps = next((r.native_fps for r in ordered if r.native_fps is not None), None)
    n_corrupt = sum(r.n_corrupt_frames for r in ordered)
    if error is None and count > 1:  # the limit applies to the clip's total, as when it is decoded unsplit
        problem = corrupt_share_error(n_corrupt, merged.n_frames + n_corrupt, " of the whole clip")
        if problem is not None:
            error = f"VideoDecodeError: {ordered[0].clip.path}: {problem}"
    return MergedClip(merged, error, fps, count, sum(r.seconds for r in ordered), n_corrupt)
