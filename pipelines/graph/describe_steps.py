"""The describing steps of the extraction graph: thin DoFns over the Beam-free clip describer."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.utils import shared

from common.tables.schema import frame_table_schema
from featurizers.embedding.registry import weights_identity
from pipelines.extraction.adaptive_describer import AdaptiveJudge, describe_adaptive
from pipelines.extraction.clip_describer import ClipExtractor, clip_result
from pipelines.extraction.clip_records import ClipResult
from pipelines.extraction.segments import SegmentResult, SegmentTask, merge_segments
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.timeline import TimelinePart, finish_timeline
from pipelines.graph.face_rows import face_row_writer
from pipelines.graph.shared_models import acquire_shared
from pipelines.graph.timeline_rows import MERGE_PART, TimelineOutputs, renumber_face_tracks, segment_part

log = logging.getLogger(__name__)


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
    SegmentResult)`` to be grouped and merged. Face rows, and window and track rows, are written
    as the segment streams (see face_rows.py and timeline_rows.py), not carried downstream.
    """

    def __init__(self, config: ExtractionConfig, faces_dir: str | None, total_clips: int,
                 timeline: TimelineOutputs | None = None, adaptive: AdaptiveJudge | None = None) -> None:
        self._config = config
        self._faces_dir = faces_dir
        self._total = total_clips
        self._timeline = timeline
        self._adaptive = adaptive
        """Adaptive frame rate (``jobs.score --adaptive``): whole clips, described with the classifier's help."""
        self._shared = shared.Shared()
        self._extractor: ClipExtractor | None = None

    def setup(self) -> None:
        # Every DoFn instance of this process, and a later job with the same settings, reuses one loaded model.
        key = ("clip-describer", self._config, weights_identity(self._config.spec, self._config.weights))
        self._extractor = acquire_shared(self._shared, lambda: ClipExtractor(self._config), key)
        if self._timeline is not None:
            self._timeline.setup()
        if self._adaptive is not None:
            self._adaptive.setup()

    def process(self, task: SegmentTask) -> Iterator[ClipResult | tuple[str, SegmentResult]]:
        assert self._extractor is not None, "setup() loads the models before process()"
        writer = None
        if self._faces_dir is not None:
            schema = frame_table_schema(self._config.spec.head_outputs)
            writer = face_row_writer(self._faces_dir, schema, task.clip.clip_id, task.index)
        timeline = self._timeline.open(task.clip, segment_part(task.index), task.count) \
            if self._timeline is not None else None
        if self._adaptive is not None:
            result = describe_adaptive(self._extractor, task, self._adaptive.settings, self._adaptive.margins,
                                       timeline)
        else:
            result = self._extractor.describe(task, writer.add if writer is not None else None, timeline)
        if writer is not None:
            writer.close()
        if timeline is not None:
            timeline.close()
        if task.count == 1:
            clip = clip_result(task.clip, merge_segments([result], self._config.layout), self._config.spec.name)
            if result.adaptive is not None:
                clip.row.update(result.adaptive)
            log_clip_done(clip, self._total, 1)
            yield clip
            return
        log.info("clip %s, %s: %s, %d frames, %.1f frames/s, %d bytes of the video read", task.clip.clip_id,
                 task.describe(), "failed" if result.error else "done", result.accumulator.n_frames,
                 result.accumulator.n_frames / result.seconds if result.seconds > 0 else 0.0, result.bytes_read)
        yield task.clip.clip_id, result


class MergeSegmentsFn(beam.DoFn):
    """A split clip's segments to its descriptor row, logged as the clip completes.

    Its windows and tracks are put together too: the rows the segments could not finish are
    written, and the face rows of later segments get the clip's track ids, before the row leaves.
    """

    def __init__(self, config: ExtractionConfig, total_clips: int, faces_dir: str | None = None,
                 timeline: TimelineOutputs | None = None) -> None:
        self._config = config
        self._total = total_clips
        self._faces_dir = faces_dir
        self._timeline = timeline

    def setup(self) -> None:
        if self._timeline is not None:
            self._timeline.setup()

    def process(self, keyed: tuple[str, Iterable[SegmentResult]]) -> Iterator[ClipResult]:
        _, results = keyed
        results = list(results)
        merged = merge_segments(results, self._config.layout)
        if merged.error is None:
            self._finish_timeline(results)
        result = clip_result(results[0].clip, merged, self._config.spec.name)
        log_clip_done(result, self._total, merged.n_segments)
        yield result

    def _finish_timeline(self, results: list[SegmentResult]) -> None:
        parts: dict[int, TimelinePart] = {}
        for r in results:  # a segment delivered twice (a retried bundle) counts once
            if r.timeline is not None:
                parts.setdefault(r.index, r.timeline)
        if not parts:
            return
        clip = results[0].clip
        done = finish_timeline(list(parts.values()), self._config.timeline, self._config.layout)
        if self._timeline is not None:
            writer = self._timeline.open(clip, MERGE_PART, results[0].count)
            writer.windows(done.window_rows)
            writer.tracks(done.track_rows)
            writer.close()
        if self._faces_dir is not None and done.id_maps is not None:
            renumber_face_tracks(self._faces_dir, clip.clip_id, done.id_maps)


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
