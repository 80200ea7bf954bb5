"""Beam plumbing of the extraction job: thin DoFns over ClipExtractor and the Parquet writer.

The graph is a single chain ending in a step that writes its own files: Beam's Dask runner
computes only the last step of a graph, and Beam's file sinks branch inside, so they would
silently write nothing there.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.utils import shared

from featurizers.decode import probe_video
from pipelines.clip_extractor import ClipExtractor, clip_result
from pipelines.config import ExtractionConfig
from pipelines.face_rows import FaceRowWriter
from pipelines.output import write_shard
from pipelines.records import ClipRef, ClipResult
from pipelines.segments import SegmentResult, SegmentTask, merge_segments, plan_segments, segment_ranges
from pipelines.schema import descriptor_table_schema, frame_table_schema

log = logging.getLogger(__name__)

FLUSH_EVERY_ROWS = 50
FLUSH_EVERY_S = 60.0
"""Finished clip rows are written at least this often, so a killed run loses little."""


class PlanSegmentsFn(beam.DoFn):
    """A clip to the frame segments that workers describe; a clip that fits is one segment.

    Only the container's header is read here (frame count and rate). A clip whose header
    cannot be read goes on as one segment, so the describing step records the error as usual.
    """

    def __init__(self, config: ExtractionConfig) -> None:
        self._config = config

    def process(self, ref: ClipRef) -> Iterator[SegmentTask]:
        segment_frames = self._config.segment_frames
        if segment_frames <= 0 or ref.problem is not None:
            yield SegmentTask(ref)
            return
        try:
            info = probe_video(ref.path, self._config.sampling)
        except Exception:  # the describing step opens it again and records why it fails
            yield SegmentTask(ref)
            return
        sampling = self._config.sampling
        ranges = segment_ranges(info.n_frames, sampling.step_for(info.fps), segment_frames, sampling.chunk_size)
        tasks = plan_segments(ref, ranges)
        if len(tasks) > 1:
            log.info("clip %s: %d frames, split into %d segments", ref.clip_id, info.n_frames, len(tasks))
        yield from tasks


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


class ClipRowBuffer:
    """Clip rows on their way to Parquet shards in the staging folder.

    Written every ``max_rows`` rows, at the end of a bundle, and before a row could wait more
    than ``max_seconds``: a row is written early when the next clip, taking as long as the
    last, would pass that age. Finished clips thus reach storage while a long run goes on.
    """

    def __init__(self, clips_dir: str, schema: pa.Schema, max_rows: int = FLUSH_EVERY_ROWS,
                 max_seconds: float = FLUSH_EVERY_S) -> None:
        self._clips_dir = clips_dir
        self._schema = schema
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._rows: list[dict] = []
        self._oldest = self._last_add = time.monotonic()

    def add(self, row: dict) -> None:
        now = time.monotonic()
        interval, self._last_add = now - self._last_add, now
        if not self._rows:
            self._oldest = now
        self._rows.append(row)
        if len(self._rows) >= self._max_rows or now - self._oldest + interval >= self._max_seconds:
            self.flush()

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        if rows:
            write_shard(rows, self._clips_dir, self._schema)


class DescribeSegmentsFn(beam.DoFn):
    """Describe segments; the models load once per worker process.

    A whole clip's row is written from here as soon as it is done, so short clips reach
    storage as they finish, without waiting for the grouping of split clips (a batch runner's
    grouping waits for all of its input). The parts of split clips go on, keyed by clip, to be
    merged. Face rows are written as the segment streams (see face_rows.py).
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str, faces_dir: str | None,
                 total_clips: int) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._faces_dir = faces_dir
        self._total = total_clips
        self._shared = shared.Shared()
        self._extractor: ClipExtractor | None = None
        self._rows: ClipRowBuffer | None = None

    def setup(self) -> None:
        # Shared: every DoFn instance of this process reuses one loaded model.
        self._extractor = self._shared.acquire(lambda: _Holder(ClipExtractor(self._config))).extractor

    def start_bundle(self) -> None:
        self._rows = ClipRowBuffer(self._clips_dir, descriptor_table_schema(self._config.layout, self._provenance))

    def process(self, task: SegmentTask) -> Iterator[tuple[str, SegmentResult]]:
        assert self._extractor is not None and self._rows is not None, "setup() and start_bundle() come first"
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
            self._rows.add(clip.row)
            return
        log.info("clip %s, %s: %s, %d frames, %.1f frames/s", task.clip.clip_id, task.describe(),
                 "failed" if result.error else "done", result.accumulator.n_frames,
                 result.accumulator.n_frames / result.seconds if result.seconds > 0 else 0.0)
        yield task.clip.clip_id, result

    def finish_bundle(self) -> None:
        assert self._rows is not None
        self._rows.flush()


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


class _Holder:
    """Shared.acquire needs a weak-referenceable object."""

    def __init__(self, extractor: object) -> None:
        self.extractor = extractor


class WriteShardsFn(beam.DoFn):
    """Write the rows of merged (split) clips as Parquet shards.

    Nothing is emitted downstream: the Dask runner drops what ``finish_bundle`` emits, and the
    job reads the shards back from the staging folder anyway.
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._rows: ClipRowBuffer | None = None

    def start_bundle(self) -> None:
        self._rows = ClipRowBuffer(self._clips_dir, descriptor_table_schema(self._config.layout, self._provenance))

    def process(self, result: ClipResult) -> Iterator[str]:
        assert self._rows is not None
        self._rows.add(result.row)
        return iter(())

    def finish_bundle(self) -> None:
        assert self._rows is not None
        self._rows.flush()


def describe_and_write(
    clips: beam.PCollection,
    config: ExtractionConfig,
    provenance: dict,
    total_clips: int,
    clips_dir: str,
    faces_dir: str | None,
) -> beam.PCollection:
    """The chain after the listed clips: plan segments, describe them, merge split clips, write.

    Segments are redistributed on their own, so the parts of one long clip run on different
    workers and meet again in one group. The graph stays one chain whose last step writes:
    Beam's Dask runner computes only the last step of a graph (and what it depends on).
    """
    return (
        clips
        | "RedistributeClips" >> beam.Reshuffle()
        | "PlanSegments" >> beam.ParDo(PlanSegmentsFn(config))
        | "RedistributeSegments" >> beam.Reshuffle()
        | "DescribeSegments" >> beam.ParDo(DescribeSegmentsFn(config, provenance, clips_dir, faces_dir, total_clips))
        | "GroupSegmentsByClip" >> beam.GroupByKey()
        | "MergeSegments" >> beam.ParDo(MergeSegmentsFn(config, total_clips))
        | "WriteSplitClipRows" >> beam.ParDo(WriteShardsFn(config, provenance, clips_dir))
    )
