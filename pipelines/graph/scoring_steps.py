"""The scoring pipeline: describe each clip and score it with the classifier on the workers.

The driver sends clip references and gets nothing back: each worker loads the model once,
turns every descriptor row into a scores row right after the clip is described, and writes
the rows to the run's staging folder at least every ``FLUSH_EVERY_ROWS`` clips or ``FLUSH_EVERY_S``
seconds, so a killed run loses at most that much and the night's descriptors are never held
in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared

from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from pipelines.extraction.adaptive import AdaptiveSettings
from pipelines.extraction.clip_records import ClipRef, ClipResult
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.statistics import one_face_per_frame_descriptor
from pipelines.graph.extraction_graph import describe_and_write
from pipelines.graph.runner import run_to_completion
from pipelines.graph.shared_models import acquire_shared
from pipelines.graph.timeline_rows import TimelineOutputs, TimelineRows

log = logging.getLogger(__name__)


class SharedModel:
    """A trained model folder, loaded once per worker process for every step given this object: its
    Beam ``Shared`` handle travels with the steps, so the scores, the timeline and the adaptive
    judge of a job use one loaded copy."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self._shared = shared.Shared()

    def load(self) -> Any:
        from classifiers.model_io import load_model

        return acquire_shared(self._shared, lambda: load_model(Path(self.model_dir)))


class ScoreClipsFn(beam.DoFn):
    """Descriptor rows to scores rows with a trained model, loaded once per worker process."""

    def __init__(self, model: SharedModel, model_sha256: str, run_id: str) -> None:
        self._shared_model = model
        self._model_sha256 = model_sha256
        self._run_id = run_id
        self._model: Any = None

    def setup(self) -> None:
        self._model = self._shared_model.load()

    def process(self, result: ClipResult) -> Iterator[ClipResult]:
        from classifiers.scoring import score_row

        row = score_row(result.row, self._model.pipeline, self._model.provenance.classes,
                        model_sha256=self._model_sha256, run_id=self._run_id,
                        scored_at=pd.Timestamp.now(tz="UTC"))
        yield ClipResult(row=row, seconds=result.seconds)


class ScoredTimelineRows(TimelineRows):
    """Window and track rows scored with the trained model on the workers, as a clip streams.

    A track's descriptor (AFEW statistics of its faces) is scored in the model's layout: as it
    is for an AFEW model, as the VGAF statistics of one face per frame for a group model
    (:func:`one_face_per_frame_descriptor`).
    """

    def __init__(self, config: ExtractionConfig, model: SharedModel, model_sha256: str, run_id: str,
                 window_schema: pa.Schema, track_schema: pa.Schema) -> None:
        self._config = config
        self._shared_model = model
        self._model_sha256 = model_sha256
        self._run_id = run_id
        self.window_schema = window_schema
        self.track_schema = track_schema
        self.window_keys = ("key", "start_s")
        self.track_keys = ("key", "track_id")
        self._model: Any = None

    def setup(self) -> None:
        self._model = self._shared_model.load()

    def windows(self, clip: ClipRef, n_segments: int, rows: Any) -> list[dict[str, Any]]:
        from classifiers.timeline_scoring import score_window_rows

        return score_window_rows(clip.clip_id, rows, self._model.pipeline, self._model.provenance.classes,
                                 run_id=self._run_id, scored_at=pd.Timestamp.now(tz="UTC"))

    def tracks(self, clip: ClipRef, rows: Any) -> list[dict[str, Any]]:
        from classifiers.timeline_scoring import score_track_rows

        layout = self._config.layout
        descriptors = [one_face_per_frame_descriptor(r["descriptor"], layout) for r in rows]
        return score_track_rows(clip.clip_id, rows, descriptors, self._model.pipeline,
                                self._model.provenance.classes, run_id=self._run_id,
                                scored_at=pd.Timestamp.now(tz="UTC"))


class ClassifierJudge:
    """The trained classifier's margins on the workers, for adaptive description (``jobs.score --adaptive``).

    Uses the scoring steps' loaded copy of the model.
    """

    def __init__(self, model: SharedModel, settings: AdaptiveSettings) -> None:
        if settings.threshold is None:
            raise ValueError("resolve the adaptive threshold before building the judge")
        self._shared_model = model
        self.settings = settings
        self._model: Any = None

    def setup(self) -> None:
        self._model = self._shared_model.load()

    def margins(self, descriptors: np.ndarray) -> np.ndarray:
        from classifiers.scoring import class_margins

        return class_margins(self._model.pipeline, descriptors)


def run_scoring_pipeline(refs: list[ClipRef], config: ExtractionConfig, provenance: dict[str, Any],
                         model: SharedModel, model_sha256: str, run_id: str, staged_dir: str, schema: pa.Schema,
                         options: PipelineOptions, flush_rows: int = FLUSH_EVERY_ROWS,
                         flush_seconds: float = FLUSH_EVERY_S, timeline: TimelineOutputs | None = None,
                         adaptive: AdaptiveSettings | None = None) -> None:
    """Describe and score ``refs`` on the configured runner; rows land in ``staged_dir``, and scored
    window and track rows where ``timeline`` says. ``adaptive`` (threshold resolved) describes each
    clip at an adaptive frame rate, with ``config.segment_frames`` 0."""
    runner = str(options.view_as(StandardOptions).runner)
    log.info("describing and scoring %d videos with %s on %s", len(refs), config.featurizer, runner)
    pipeline = beam.Pipeline(options=options)
    describe_and_write(pipeline, refs, config, provenance, staged_dir,
                       None, post_process=ScoreClipsFn(model, model_sha256, run_id), schema=schema,
                       flush_rows=flush_rows, flush_seconds=flush_seconds, timeline=timeline,
                       adaptive=None if adaptive is None else ClassifierJudge(model, adaptive))
    run_to_completion(pipeline)
