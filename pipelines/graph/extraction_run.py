"""Run the extraction pipeline over listed clips and publish its table: the job's engine room.

Shared by ``jobs.extract`` (a dataset) and ``jobs.score`` (the new videos of an archive).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from common.parquet_io import deduplicate_shards, publish, read_columns, staging_dir, status_counts, write_shard
from common.schema import descriptor_table_schema
from pipelines.extraction.clip_describer import clip_row
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.graph.extraction_graph import describe_and_write
from pipelines.graph.face_rows import remove_face_rows
from pipelines.graph.runner import run_to_completion
from pipelines.graph.timeline_rows import TimelineOutputs, TimelineRows, remove_clip_shards

log = logging.getLogger(__name__)


@dataclass
class ExtractionSummary:
    """What a run did, as printed at the end and stored beside the table (``_summary.json``)."""

    clips: int
    ok: int
    faceless: int
    error: int
    frames: int
    seconds: float
    runner: str
    warnings: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"clips": self.clips, "ok": self.ok, "faceless": self.faceless, "error": self.error,
                "frames": self.frames, "seconds": round(self.seconds, 2),
                "frames_per_second": round(self.frames_per_second, 2), "runner": self.runner,
                "warnings": self.warnings, "failures": self.failures}

    def line(self) -> str:
        return (f"{self.clips} clips: {self.ok} ok, {self.faceless} faceless, {self.error} failed; "
                f"{self.frames} frames in {self.seconds:.1f} s ({self.frames_per_second:.1f} frames/s)")


def run_extraction(
    refs: list[ClipRef],
    config: ExtractionConfig,
    provenance: dict[str, Any],
    output: str | os.PathLike[str],
    options: PipelineOptions,
    frames_output: str | os.PathLike[str] | None = None,
    warnings: list[str] | None = None,
    windows_output: str | os.PathLike[str] | None = None,
    tracks_output: str | os.PathLike[str] | None = None,
) -> ExtractionSummary:
    """Describe every clip on the configured Beam runner and publish the table at ``output``.

    Every listed clip gets exactly one row: rows repeated by retried bundles are dropped, and a
    clip the runner returned nothing for is recorded as an error rather than lost. Window and
    track rows (``windows_output``, ``tracks_output``) are staged and published like face rows.
    """
    clips_staging = staging_dir(output)
    faces_staging = staging_dir(frames_output) if frames_output else None
    windows_staging = staging_dir(windows_output) if windows_output else None
    tracks_staging = staging_dir(tracks_output) if tracks_output else None
    timeline = TimelineOutputs(windows_staging, tracks_staging, TimelineRows(config, provenance)) \
        if windows_staging or tracks_staging else None
    runner = str(options.view_as(StandardOptions).runner)
    log.info("describing %d clips with %s on %s", len(refs), config.featurizer, runner)
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    describe_and_write(pipeline, refs, config, provenance, str(clips_staging),
                       str(faces_staging) if faces_staging else None, timeline=timeline)
    run_to_completion(pipeline)
    schema = descriptor_table_schema(config.layout, provenance)
    duplicates = deduplicate_shards(clips_staging, schema)
    if duplicates:
        log.warning("dropped %d rows written twice by retried bundles", duplicates)
    table = read_columns(clips_staging, ["clip_id", "status", "error", "n_frames"])
    written = set(table["clip_id"])
    lost = [r for r in refs if r.clip_id not in written]
    if lost:
        log.error("%d clips came back without a row; recorded as errors", len(lost))
        empty = ClipAccumulator(config.layout)
        rows = [clip_row(r, empty, config.featurizer, "no result came back from the runner") for r in lost]
        write_shard(rows, clips_staging, schema)
        for column, values in table.items():
            values += [row[column] for row in rows]
    failed_clips = [c for c, status in zip(table["clip_id"], table["status"]) if status == "error"]
    if faces_staging is not None:
        # A clip that failed in any segment keeps no face rows, as it keeps no descriptor.
        remove_face_rows(faces_staging, failed_clips)
    for timeline_staging in (windows_staging, tracks_staging):
        if timeline_staging is not None:  # nor window or track rows
            remove_clip_shards(timeline_staging, failed_clips)
    failures = {
        clip_id: error
        for clip_id, status, error in zip(table["clip_id"], table["status"], table["error"])
        if status == "error"
    }
    summary = ExtractionSummary(
        clips=len(refs), **status_counts(table["status"]), frames=sum(table["n_frames"]),
        seconds=time.perf_counter() - started, runner=runner, warnings=list(warnings or []), failures=failures,
    )
    publish(clips_staging, output, summary.to_dict())
    for staged, target in ((faces_staging, frames_output), (windows_staging, windows_output),
                           (tracks_staging, tracks_output)):
        if staged is not None and target is not None:
            publish(staged, target)
    return summary
