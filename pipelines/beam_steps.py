"""Beam plumbing of the extraction job: thin DoFns over ClipExtractor and the Parquet writer.

The graph is a single chain ending in a step that writes its own files: Beam's Dask runner
computes only the last step of a graph, and Beam's file sinks branch inside, so they would
silently write nothing there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import apache_beam as beam
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

    Rows are buffered and written every ``rows_per_shard`` rows and at the end of the bundle.
    Nothing is emitted downstream: the Dask runner drops what ``finish_bundle`` emits, and the
    job reads the shards back from the staging folder anyway.
    """

    def __init__(self, config: ExtractionConfig, provenance: dict, clips_dir: str, faces_dir: str | None,
                 rows_per_shard: int) -> None:
        self._config = config
        self._provenance = provenance
        self._clips_dir = clips_dir
        self._faces_dir = faces_dir
        self._rows_per_shard = rows_per_shard
        self._buffer: list[ClipResult] = []

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, result: ClipResult) -> Iterator[str]:
        self._buffer.append(result)
        if len(self._buffer) >= self._rows_per_shard:
            self._flush()
        return iter(())

    def finish_bundle(self) -> None:
        self._flush()

    def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        write_shard([r.row for r in batch], self._clips_dir, descriptor_table_schema(self._config.layout, self._provenance))
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
) -> beam.PCollection:
    """The chain after the listed clips: redistribute, describe, write."""
    return (
        clips
        | "RedistributeClips" >> beam.Reshuffle()
        | "DescribeClips" >> beam.ParDo(DescribeClipsFn(config, total_clips))
        | "WriteParquetShards" >> beam.ParDo(WriteShardsFn(config, provenance, clips_dir, faces_dir, rows_per_shard))
    )
