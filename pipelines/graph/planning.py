"""Planning: what the driver creates for each clip, and the step that turns it into frame segments.

Long local clips are listed as several planning elements so that, on a runner that never
repartitions (Beam's Dask runner), even a lone clip's segments reach different workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from common import storage
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
Low on purpose: an over-estimate costs a header read that finds no segment; an under-estimate
leaves segments of a long clip together. Our synthetic clips take 450-1,800 bytes a frame, real
H.264 at 640x360 2,000-5,000."""
MAX_PLANNING_SHARDS = 64
"""At most this many planning elements for one clip."""
DASK_MAX_DEFAULT_PARTITIONS = 256
"""Beam's Dask runner packs 128 elements into each partition of its first ``Create`` and never
repartitions; unless ``--dask_npartitions`` or ``--dask_partition_size`` is given, the jobs ask
for one partition per element up to this many, so that a few clips still spread over workers."""


class PlanSegmentsFn(beam.DoFn):
    """A clip's planning element to the frame segments that workers describe.

    Only the container's header is read here (frame count and rate), and each element keeps its
    share of the segments (:class:`PlanningShard`); a clip that fits is one segment, emitted by
    its first element. A clip whose header cannot be read goes on as one segment, so the
    describing step records the error as usual. A video in object storage is not split: each
    segment would download the whole file.
    """

    def __init__(self, config: ExtractionConfig) -> None:
        self._config = config

    def process(self, element: PlanningShard) -> Iterator[SegmentTask]:
        ref = element.clip
        tasks = self._plan(ref)
        if len(tasks) > 1 and element.shard == 0:
            log.info("clip %s: split into %d segments, planned from %d elements", ref.clip_id, len(tasks),
                     element.shards)
        yield from tasks_of_shard(tasks, element.shard, element.shards)

    def _plan(self, ref: ClipRef) -> list[SegmentTask]:
        segment_frames = self._config.segment_frames
        if segment_frames <= 0 or ref.problem is not None or storage.is_remote(ref.path):
            return [SegmentTask(ref)]
        try:
            info = probe_video(ref.path, self._config.sampling)
        except Exception:  # the describing step opens it again and records why it fails
            return [SegmentTask(ref)]
        sampling = self._config.sampling
        return plan_segments(ref, segment_ranges(info.n_frames, sampling.step_for(info.fps), segment_frames,
                                                 self._config.segment_alignment))


def planning_elements(refs: Iterable[ClipRef], config: ExtractionConfig) -> list[PlanningShard]:
    """What the driver creates: each clip once, or a long local clip as several planning shards.

    The estimate needs only the file's size (one stat, no header read on the driver): see
    :func:`pipelines.extraction.segments.planning_shard_count`.
    """
    sampling = config.sampling
    segment_frames = whole_chunks(max(config.segment_frames, 0), sampling.chunk_size)
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
