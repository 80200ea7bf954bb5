"""Run the extraction pipeline over listed clips and publish its table: the job's engine room.

Shared by ``jobs.extract`` (a dataset) and ``jobs.score`` (the new videos of an archive).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from common.tables.parquet_io import read_columns
from common.stores.publishing import publish, staging_dir
from common.tables.schema import descriptor_table_schema
from common.tables.shards import settle_shards, write_rows
from pipelines.extraction.clip_describer import clip_row
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.statistics import ClipAccumulator
from pipelines.graph.extraction_graph import describe_and_write
from pipelines.graph.face_rows import remove_face_rows
from pipelines.graph.lost_clips import NO_RESULT_ERROR, clips_without_rows
from pipelines.graph.run_summary import RunSummary, status_counts
from pipelines.graph.runner import run_to_completion
from pipelines.graph.timeline_rows import TimelineOutputs, TimelineRows, remove_clip_shards

log = logging.getLogger(__name__)


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
) -> RunSummary:
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
    repeated = settle_shards(clips_staging, schema)
    if repeated:
        log.warning("dropped %d rows of clips written again by retried bundles", repeated)
    table = read_columns(clips_staging, ["clip_id", "status", "error", "n_frames"])
    lost = clips_without_rows([r.clip_id for r in refs], table["clip_id"])
    if lost:
        empty = ClipAccumulator(config.layout)
        by_id = {r.clip_id: r for r in refs}
        rows = [clip_row(by_id[clip_id], empty, config.featurizer, NO_RESULT_ERROR) for clip_id in lost]
        write_rows(rows, clips_staging, schema, "lost-clips")
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
    summary = RunSummary(
        clips=len(refs), counts=status_counts(table["status"], ("ok", "faceless", "error")),
        frames=sum(table["n_frames"]), seconds=time.perf_counter() - started, runner=runner,
        warnings=list(warnings or []), failures=failures,
    )
    publish(clips_staging, output, summary.to_dict())
    for staged, target in ((faces_staging, frames_output), (windows_staging, windows_output),
                           (tracks_staging, tracks_output)):
        if staged is not None and target is not None:
            publish(staged, target)
    return summary
