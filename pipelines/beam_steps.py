"""Beam plumbing of the extraction job: thin DoFns over ClipExtractor and the Parquet writer.

The graph is a single chain ending in a step that writes its own files: Beam's Dask runner
computes only the last step of a graph (and what it depends on), and Beam's file sinks branch
inside, so they would silently write nothing there.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import apache_beam as beam
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared

from featurizers.decode import probe_video
from pipelines import storage
from pipelines.clip_extractor import ClipExtractor, clip_result
from pipelines.config import (
    DASK_MAX_DEFAULT_PARTITIONS,
    FLUSH_EVERY_ROWS,
    FLUSH_EVERY_S,
    MAX_PLANNING_SHARDS,
    PLANNING_BYTES_PER_FRAME,
    ExtractionConfig,
)
from pipelines.face_rows import FaceRowWriter
from pipelines.output import write_shard
from pipelines.records import ClipRef, ClipResult
from pipelines.schema import descriptor_table_schema, frame_table_schema
from pipelines.segments import (
    PlanningShard,
    SegmentResult,
    SegmentTask,
    merge_segments,
    plan_segments,
    planning_shard_count,
    segment_ranges,
    tasks_of_shard,
    whole_chunks,
)

log = logging.getLogger(__name__)
T = TypeVar("T")



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
                                                 sampling.chunk_size))


def planning_elements(refs: Iterable[ClipRef], config: ExtractionConfig) -> list[PlanningShard]:
    """What the driver creates: each clip once, or a long local clip as several planning shards.

    The estimate needs only the file's size (one stat, no header read on the driver): see
    :func:`pipelines.segments.planning_shard_count`.
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


_clips_done = itertools.count(1)
"""Clips this worker process finished, for its progress lines (each worker counts its own)."""


def log_clip_done(result: ClipResult, total_clips: int, n_segments: int) -> None:
    row = result.row
    beam.metrics.Metrics.counter("clips", row["status"]).inc()
    segments = f" in {n_segments} segments" if n_segments > 1 else ""
    # With several workers each counts its own clips: the pid tells the lines apart.
    log.info(
        "[%d of %d clips, worker %d] %s: %s, %d frames%s (%d with faces), %.1f frames/s",
        next(_clips_done), total_clips, os.getpid(), row["clip_id"], row["status"], row["n_frames"], segments,
        row["n_face_frames"], row["n_frames"] / result.seconds if result.seconds > 0 else 0.0,
    )


class DescribeSegmentsFn(beam.DoFn):
    """Describe segments; the models load once per worker process.

    A whole clip leaves as its ClipResult; the parts of a split clip leave as ``(clip_id,
    SegmentResult)`` to be grouped and merged. Face rows are written as the segment streams
    (see face_rows.py), not carried downstream.
    """

    def __init__(self, config: ExtractionConfig, faces_dir: str | None, total_clips: int) -> None:
        self._config = config
        self._faces_dir = faces_dir
        self._total = total_clips
        self._shared = shared.Shared()
        self._extractor: ClipExtractor | None = None

    def setup(self) -> None:
        # Shared: every DoFn instance of this process reuses one loaded model.
        self._extractor = acquire_shared(self._shared, lambda: ClipExtractor(self._config))

    def process(self, task: SegmentTask) -> Iterator[ClipResult | tuple[str, SegmentResult]]:
        assert self._extractor is not None, "setup() loads the models before process()"
        writer = None
        if self._faces_dir is not None:
            schema = frame_table_schema(self._config.spec.head_outputs)
            writer = FaceRowWriter(self._faces_dir, schema, task.clip.clip_id, task.index)
        result = self._extractor.describe(task, writer.add if writer is not None else None)
        if writer is not None:
            writer.flush()
        if task.count == 1:
            clip = clip_result(task.clip, merge_segments([result], self._config.layout), self._config.spec.name)
            log_clip_done(clip, self._total, 1)
            yield clip
            return
        log.info("clip %s, %s: %s, %d frames, %.1f frames/s", task.clip.clip_id, task.describe(),
                 "failed" if result.error else "done", result.accumulator.n_frames,
                 result.accumulator.n_frames / result.seconds if result.seconds > 0 else 0.0)
        yield task.clip.clip_id, result


class MergeSegmentsFn(beam.DoFn):
    """A split clip's segments to its descriptor row, logged as the clip completes."""

    def __init__(self, config: ExtractionConfig, total_clips: int) -> None:
        self._config = config
        self._total = total_clips

    def process(self, keyed: tuple[str, Iterable[SegmentResult]]) -> Iterator[ClipResult]:
        _, results = keyed
        results = list(results)
        merged = merge_segments(results, self._config.layout)
        result = clip_result(results[0].clip, merged, self._config.spec.name)
        log_clip_done(result, self._total, merged.n_segments)
        yield result


class _SharedValue:
    """Shared.acquire needs a weak-referenceable object; a loaded model may not be one."""

    def __init__(self, value: Any) -> None:
        self.value = value


def acquire_shared(handle: shared.Shared, make: Callable[[], T]) -> T:
    """The object ``make`` builds, once per worker process: every DoFn instance holding ``handle`` reuses it."""
    return handle.acquire(lambda: _SharedValue(make())).value


class OnClipResultsFn(beam.DoFn):
    """Apply a per-clip DoFn (a classifier scoring each row) to ClipResults; pass anything else on.

    Lets the post-processing run in the same fused step as the description of whole clips,
    while the parts of split clips travel on untouched to be merged.
    """

    def __init__(self, inner: beam.DoFn) -> None:
        self._inner = inner

    def setup(self) -> None:
        self._inner.setup()

    def start_bundle(self) -> None:
        self._inner.start_bundle()

    def process(self, element: Any) -> Iterator[Any]:
        if isinstance(element, ClipResult):
            yield from self._inner.process(element)
        else:
            yield element

    def finish_bundle(self) -> None:
        self._inner.finish_bundle()

    def teardown(self) -> None:
        self._inner.teardown()


class WriteShardsFn(beam.DoFn):
    """Write clip rows as Parquet shards in the staging folder; pass anything else on.

    Rows are written every ``flush_rows`` rows, at the end of the bundle, and, when
    ``flush_seconds`` is set, by a timer once the oldest buffered row has waited that long (a
    slow next clip does not hold finished ones back): what is written survives a kill.
    ``schema`` replaces the descriptor table's schema when a post-processing step changed the
    rows. Nothing is emitted from ``finish_bundle``: the Dask runner drops it, and the job reads
    the shards back from the staging folder anyway.
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str, schema: pa.Schema | None = None,
                 flush_rows: int = FLUSH_EVERY_ROWS, flush_seconds: float | None = FLUSH_EVERY_S) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._schema = schema
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._buffer: list[dict] = []
        self._oldest = 0.0
        self._lock: threading.Lock | None = None
        self._stop: threading.Event | None = None

    def start_bundle(self) -> None:
        self._buffer = []
        self._lock = threading.Lock()  # made here: locks and events do not pickle
        if self._flush_seconds is not None:
            self._stop = threading.Event()
            threading.Thread(target=self._flush_when_old, args=(self._stop,), daemon=True,
                             name="flush-shards").start()

    def process(self, element: Any) -> Iterator[Any]:
        if not isinstance(element, ClipResult):
            yield element  # a part of a split clip, on its way to be merged
            return
        assert self._lock is not None
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(element.row)
            if len(self._buffer) >= self._flush_rows:
                self._flush()

    def finish_bundle(self) -> None:
        if self._stop is not None:
            self._stop.set()
        assert self._lock is not None
        with self._lock:
            self._flush()

    def _flush_when_old(self, stop: threading.Event) -> None:
        assert self._flush_seconds is not None and self._lock is not None
        lock = self._lock
        while not stop.wait(min(1.0, self._flush_seconds / 4)):
            with lock:
                if self._buffer and time.monotonic() - self._oldest >= self._flush_seconds:
                    batch = list(self._buffer)
                    try:
                        self._flush()
                    except Exception as exc:  # noqa: BLE001 - a thread cannot fail the bundle; the next flush retries
                        self._buffer = batch
                        log.warning("timed flush of %d rows failed (%s); they stay buffered", len(batch), exc)

    def _flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if rows:
            schema = self._schema or descriptor_table_schema(self._config.layout, self._provenance)
            write_shard(rows, self._clips_dir, schema)


def run_to_completion(pipeline: beam.Pipeline) -> None:
    """Run the pipeline and wait for it; then close the Dask runner's client, which Beam leaves
    open (and with it the local cluster it started when no address was given), so that its
    workers do not outlive the job."""
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()


def describe_and_write(
    pipeline: beam.Pipeline,
    refs: list[ClipRef],
    config: ExtractionConfig,
    provenance: dict,
    clips_dir: str,
    faces_dir: str | None,
    post_process: beam.DoFn | None = None,
    schema: pa.Schema | None = None,
    flush_rows: int = FLUSH_EVERY_ROWS,
    flush_seconds: float | None = FLUSH_EVERY_S,
) -> beam.PCollection:
    """The whole graph: list the clips, plan segments, describe them, write whole clips, merge split ones, write.

    Long local clips are listed as several planning elements (:func:`planning_elements`), and
    on Beam's Dask runner each element gets its own partition (:func:`spread_on_dask`), so that
    even a lone clip's segments reach different workers on a runner that never repartitions.
    Segments are redistributed on their own, so the parts of one long clip run on different
    workers and meet again in one group. Whole clips are (post-processed and) written in the
    step fused with their description, so they reach storage as they finish: a batch runner's
    grouping waits for all of its input, and only split clips wait for it. ``post_process``
    maps each finished ClipResult to another (a classifier turning the descriptor into scores
    on the workers); ``schema`` is then the rows' schema. The graph stays one chain.
    """
    def write() -> beam.ParDo:
        return beam.ParDo(WriteShardsFn(config, provenance, clips_dir, schema, flush_rows, flush_seconds))

    elements = planning_elements(refs, config)
    spread_on_dask(pipeline.options, len(elements))
    described = (
        pipeline
        | "ListClips" >> beam.Create(elements)
        | "RedistributeClips" >> beam.Reshuffle()
        | "PlanSegments" >> beam.ParDo(PlanSegmentsFn(config))
        | "RedistributeSegments" >> beam.Reshuffle()
        | "DescribeSegments" >> beam.ParDo(DescribeSegmentsFn(config, faces_dir, len(refs)))
    )
    if post_process is not None:
        described = described | "PostProcessWholeClips" >> beam.ParDo(OnClipResultsFn(post_process))
    merged = (
        described
        | "WriteWholeClipRows" >> write()
        | "GroupSegmentsByClip" >> beam.GroupByKey()
        | "MergeSegments" >> beam.ParDo(MergeSegmentsFn(config, len(refs)))
    )
    if post_process is not None:
        merged = merged | "PostProcessSplitClips" >> beam.ParDo(post_process)
    return merged | "WriteSplitClipRows" >> write()
