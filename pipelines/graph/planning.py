"""Planning: what the driver creates for each clip, the one probe of each clip, and its frame segments.

Every clip is probed once, on a worker: one read of its packets gives the frame index that all
its segments share (:func:`plan_clip`). Long local clips are also listed as several planning
elements so that, on a runner that never repartitions (Beam's Dask runner), even a lone clip's
segments reach different workers; those elements do not probe, they take their share of the
plan that the clip's one probe made (a side input, ``ProbeLongClips``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from common.stores import storage
from featurizers.decoding.decode import probe_video
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.segments import (
    PlanningShard,
    SegmentTask,
    plan_segments,
    planning_shard_count,
    segment_ranges,
    tasks_of_shard,
    whole_chunks,
)
from pipelines.extraction.settings import ExtractionConfig

log = logging.getLogger(__name__)

PLANNING_BYTES_PER_FRAME = 500
"""A low guess of a video's bytes per frame, from which the driver estimates how many segments a
local clip will hold before any header is read (pipelines/segments.py, ``planning_shard_count``).
Low on purpose: an over-estimate costs an element that emits no segment; an under-estimate
leaves segments of a long clip together. Our synthetic clips take 450-1,800 bytes a frame, real
H.264 at 640x360 2,000-5,000."""
MAX_PLANNING_SHARDS = 64
"""At most this many planning elements for one clip."""
DASK_MAX_DEFAULT_PARTITIONS = 256
"""Beam's Dask runner packs 128 elements into each partition of its first ``Create`` and never
repartitions; unless ``--dask_npartitions`` or ``--dask_partition_size`` is given, the jobs ask
for one partition per element up to this many, so that a few clips still spread over workers."""


def plan_clip(ref: ClipRef, config: ExtractionConfig) -> list[SegmentTask]:
    """A clip's segments, from one probe of the clip: its frame count, rate and frame index.

    A clip whose probe fails is one task carrying the failure as its ``problem``: the describing
    step records that one error row without opening the file again. Splitting off
    (``segment_frames <= 0``) plans the whole clip without a probe, as before.
    """
    segment_frames = config.segment_frames
    if segment_frames <= 0 or ref.problem is not None:
        return [SegmentTask(ref)]
    try:
        info = probe_video(ref.path, config.sampling)
    except Exception as exc:  # one row for the clip, with why
        log.warning("clip %s failed: %s: %s", ref.clip_id, type(exc).__name__, exc)
        return [SegmentTask(dataclasses.replace(ref, problem=f"{type(exc).__name__}: {exc}"))]
    sampling = config.sampling
    ranges = segment_ranges(info.n_frames, sampling.step_for(info.fps), segment_frames, config.segment_alignment)
    tasks = plan_segments(ref, ranges, info.index)
    if len(tasks) > 1:
        log.info("clip %s: %d frames, split into %d segments; its probe read %d bytes", ref.clip_id,
                 info.n_frames, len(tasks), info.bytes_read)
    return tasks


class ProbeClipFn(beam.DoFn):
    """A long clip to ``(clip_id, its tasks)``: the one probe that all its planning elements share."""

    def __init__(self, config: ExtractionConfig) -> None:
        self._config = config

    def process(self, ref: ClipRef) -> Iterator[tuple[str, list[SegmentTask]]]:
        yield ref.clip_id, plan_clip(ref, self._config)


class PlanSegmentsFn(beam.DoFn):
    """A clip's planning element to the frame segments that workers describe.

    A clip listed once is probed here (:func:`plan_clip`); the elements of a clip listed several
    times take their share (:class:`PlanningShard`) of the tasks its one probe planned, given as
    ``plans`` (clip id to tasks).
    """

    def __init__(self, config: ExtractionConfig) -> None:
        self._config = config

    def process(self, element: PlanningShard,
                plans: Mapping[str, list[SegmentTask]] | None = None) -> Iterator[SegmentTask]:
        ref = element.clip
        if element.shards == 1:
            tasks = plan_clip(ref, self._config)
        else:
            tasks = (plans or {}).get(ref.clip_id) or [SegmentTask(ref)]
        yield from tasks_of_shard(tasks, element.shard, element.shards)


def plan_steps(pipeline: beam.Pipeline, elements: list[PlanningShard], config: ExtractionConfig) -> beam.ParDo:
    """The planning step; for clips listed several times, it reads the plans of a step that probes each once."""
    long_clips = list({e.clip.clip_id: e.clip for e in elements if e.shards > 1}.values())
    if not long_clips:
        return beam.ParDo(PlanSegmentsFn(config))
    plans = (pipeline
             | "ListLongClips" >> beam.Create(long_clips)
             | "ProbeLongClips" >> beam.ParDo(ProbeClipFn(config)))
    return beam.ParDo(PlanSegmentsFn(config), beam.pvalue.AsDict(plans))


def planning_elements(refs: Iterable[ClipRef], config: ExtractionConfig) -> list[PlanningShard]:
    """What the driver creates: each clip once, or a long local clip as several planning shards.

    A clip in a bucket is listed once (its size would cost the driver a request per clip); it is
    split like a local one, but on Beam's Dask runner its segments stay on one worker.

    The estimate needs only the file's size (one stat, no header read on the driver): see
    :func:`pipelines.extraction.segments.planning_shard_count`.
    """
    sampling = config.sampling
    segment_frames = whole_chunks(max(config.segment_frames, 0), config.segment_alignment)
    native_frames = segment_frames * (sampling.step if sampling.target_fps is None else 1)
    elements = []
    for ref in refs:
        size = None
        if ref.problem is None and not storage.is_remote(ref.path):
            try:
                size = os.path.getsize(ref.path)
            except OSError:  # the describing step records why it cannot be read
                size = None
        shards = planning_shard_count(size, native_frames, PLANNING_BYTES_PER_FRAME, MAX_PLANNING_SHARDS)
        elements.extend(PlanningShard(ref, i, shards) for i in range(shards))
    return elements


def spread_on_dask(options: PipelineOptions, n_elements: int) -> None:
    """One Dask partition per created element (up to :data:`DASK_MAX_DEFAULT_PARTITIONS`), unless the
    user sized the partitions: the Dask runner would otherwise put 128 elements in each."""
    if not str(options.view_as(StandardOptions).runner).endswith("DaskRunner"):
        return
    from apache_beam.runners.dask.dask_runner import DaskOptions

    dask = options.view_as(DaskOptions)
    if dask.npartitions is None and dask.partition_size is None:
        dask.npartitions = max(1, min(n_elements, DASK_MAX_DEFAULT_PARTITIONS))
