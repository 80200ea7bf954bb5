"""Beam plumbing of the extraction job: thin DoFns over ClipExtractor and the Parquet writer.

The graph is a single chain ending in a step that writes its own files: Beam's Dask runner
computes only the last step of a graph, and Beam's file sinks branch inside, so they would
silently write nothing there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.utils import shared

from pipelines.clip_extractor import ClipExtractor
from pipelines.config import ExtractionConfig
from pipelines.output import write_shard
from pipelines.records import ClipRef, ClipResult
from pipelines.schema import descriptor_table_schema, frame_table_schema

log = logging.getLogger(__name__)


class DescribeClipsFn(beam.DoFn):
    """Clip references to descriptor rows; the models load once per worker process."""

    def __init__(self, config: ExtractionConfig, total_clips: int) -> None:
        self._config = config
        self._total = total_clips
        self._shared = shared.Shared()
        self._extractor: ClipExtractor | None = None
        self._done = 0

    def setup(self) -> None:
        # Shared: every DoFn instance of this process reuses one loaded model.
        self._extractor = self._shared.acquire(lambda: _Holder(ClipExtractor(self._config))).extractor

    def process(self, ref: ClipRef) -> Iterator[ClipResult]:
        assert self._extractor is not None, "setup() loads the models before process()"
        result = self._extractor.process(ref)
        self._done += 1
        row = result.row
        beam.metrics.Metrics.counter("clips", row["status"]).inc()
        # With several workers each counts its own clips: the pid tells the lines apart.
        log.info(
            "[%d of %d clips, worker %d] %s: %s, %d frames (%d with faces), %.1f frames/s",
            self._done, self._total, os.getpid(), row["clip_id"], row["status"], row["n_frames"],
            row["n_face_frames"], row["n_frames"] / result.seconds if result.seconds > 0 else 0.0,
        )
        yield result


class _Holder:
    """Shared.acquire needs a weak-referenceable object."""

    def __init__(self, extractor: object) -> None:
        self.extractor = extractor


class WriteShardsFn(beam.DoFn):
    """Write results as Parquet shards of clip rows (and of face rows when asked for).

    Rows are buffered and written every ``rows_per_shard`` rows, at the end of the bundle, and,
    when ``flush_seconds`` is set, by a timer once the oldest buffered row has waited that long
    (a slow next clip does not hold finished ones back): what is written survives a kill.
    ``schema`` replaces the descriptor table's schema when a post-processing step changed the rows.
    Nothing is emitted downstream: the Dask runner drops what ``finish_bundle`` emits, and the
    job reads the shards back from the staging folder anyway.
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str, faces_dir: str | None,
                 rows_per_shard: int, schema: pa.Schema | None = None, flush_seconds: float | None = None) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._faces_dir = faces_dir
        self._rows_per_shard = rows_per_shard
        self._schema = schema
        self._flush_seconds = flush_seconds
        self._buffer: list[ClipResult] = []
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

    def process(self, result: ClipResult) -> Iterator[str]:
        assert self._lock is not None
        with self._lock:
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(result)
            if len(self._buffer) >= self._rows_per_shard:
                self._flush()
        return iter(())

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
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        schema = self._schema or descriptor_table_schema(self._config.layout, self._provenance)
        write_shard([r.row for r in batch], self._clips_dir, schema)
        face_rows = [row for r in batch for row in r.face_rows]
        if self._faces_dir is not None and face_rows:
            write_shard(face_rows, self._faces_dir, frame_table_schema(self._config.spec.head_outputs))


def describe_and_write(
    clips: beam.PCollection,
    config: ExtractionConfig,
    provenance: dict,
    total_clips: int,
    clips_dir: str,
    faces_dir: str | None,
    rows_per_shard: int = 256,
    post_process: beam.DoFn | None = None,
    schema: pa.Schema | None = None,
    flush_seconds: float | None = None,
) -> beam.PCollection:
    """The chain after the listed clips: redistribute, describe, (post-process,) write.

    ``post_process`` maps each finished ClipResult to another (for example a classifier that
    turns the descriptor into scores on the workers); ``schema`` is then the rows' schema.
    """
    described = (
        clips
        | "RedistributeClips" >> beam.Reshuffle()
        | "DescribeClips" >> beam.ParDo(DescribeClipsFn(config, total_clips))
    )
    if post_process is not None:
        described = described | "PostProcessClips" >> beam.ParDo(post_process)
    return described | "WriteParquetShards" >> beam.ParDo(
        WriteShardsFn(config, provenance, clips_dir, faces_dir, rows_per_shard, schema, flush_seconds))
