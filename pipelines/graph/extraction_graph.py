"""The extraction graph, one chain: list clips, plan segments, describe them, write whole clips, merge
split ones, write them."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from pipelines.extraction.adaptive_describer import AdaptiveJudge
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.describe_steps import DescribeSegmentsFn, MergeSegmentsFn, OnClipResultsFn
from pipelines.graph.planning import plan_steps, planning_elements, spread_on_dask
from pipelines.graph.timeline_rows import TimelineOutputs
from pipelines.graph.write_steps import WriteShardsFn


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
    timeline: TimelineOutputs | None = None,
    adaptive: AdaptiveJudge | None = None,
) -> beam.PCollection:
    """The whole graph: list the clips, plan segments, describe them, write whole clips, merge split ones, write.

    Each clip is probed once, on a worker, and all its segments share the frame index that probe
    read (:func:`pipelines.graph.planning.plan_clip`). Long local clips are listed as several
    planning elements (:func:`planning_elements`) that share that one probe's plan (a side input,
    ``ProbeLongClips``), and on Beam's Dask runner each element gets its own partition
    (:func:`spread_on_dask`), so that even a lone clip's segments reach different workers on a
    runner that never repartitions.
    Segments are redistributed on their own, so the parts of one long clip run on different
    workers and meet again in one group. Whole clips are (post-processed and) written in the
    step fused with their description, so they reach storage as they finish: a batch runner's
    grouping waits for all of its input, and only split clips wait for it. ``post_process``
    maps each finished ClipResult to another (a classifier turning the descriptor into scores
    on the workers); ``schema`` is then the rows' schema. ``timeline`` is where window and track
    rows go, written by the describing and merging steps themselves. ``adaptive`` describes each
(whole) clip at an adaptive frame rate with the classifier's help. The graph stays one chain.
    """
    def write() -> beam.ParDo:
        return beam.ParDo(WriteShardsFn(config, provenance, clips_dir, schema, flush_rows, flush_seconds))

    elements = planning_elements(refs, config)
    spread_on_dask(pipeline.options, len(elements))
    described = (
        pipeline
        | "ListClips" >> beam.Create(elements)
        | "RedistributeClips" >> beam.Reshuffle()
        | "PlanSegments" >> plan_steps(pipeline, elements, config)
        | "RedistributeSegments" >> beam.Reshuffle()
        | "DescribeSegments" >> beam.ParDo(DescribeSegmentsFn(config, faces_dir, len(refs), timeline, adaptive))
    )
    if post_process is not None:
        described = described | "PostProcessWholeClips" >> beam.ParDo(OnClipResultsFn(post_process))
    merged = (
        described
        | "WriteWholeClipRows" >> write()
        | "GroupSegmentsByClip" >> beam.GroupByKey()
        | "MergeSegments" >> beam.ParDo(MergeSegmentsFn(config, len(refs), faces_dir, timeline))
    )
    if post_process is not None:
        merged = merged | "PostProcessSplitClips" >> beam.ParDo(post_process)
    return merged | "WriteSplitClipRows" >> write()
