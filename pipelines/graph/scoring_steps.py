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
import pandas as pd
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared

from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from pipelines.extraction.clip_records import ClipRef, ClipResult
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.extraction_graph import describe_and_write
from pipelines.graph.runner import run_to_completion
from pipelines.graph.shared_models import acquire_shared

log = logging.getLogger(__name__)


class ScoreClipsFn(beam.DoFn):
    """Descriptor rows to scores rows with a trained model, loaded once per worker process."""

    def __init__(self, model_dir: str, model_sha256: str, run_id: str) -> None:
        self._model_dir = model_dir
        self._model_sha256 = model_sha256
        self._run_id = run_id
        self._shared = shared.Shared()
        self._model: Any = None

    def setup(self) -> None:
        from classifiers.model_io import load_model

        self._model = acquire_shared(self._shared, lambda: load_model(Path(self._model_dir)))

    def process(self, result: ClipResult) -> Iterator[ClipResult]:
        from classifiers.scoring import score_row

        row = score_row(result.row, self._model.pipeline, self._model.provenance.classes,
                        model_sha256=self._model_sha256, run_id=self._run_id,
                        scored_at=pd.Timestamp.now(tz="UTC"))
        yield ClipResult(row=row, seconds=result.seconds)


def run_scoring_pipeline(refs: list[ClipRef], config: ExtractionConfig, provenance: dict[str, Any],
                         model_dir: str, model_sha256: str, run_id: str, staged_dir: str, schema: pa.Schema,
                         options: PipelineOptions, flush_rows: int = FLUSH_EVERY_ROWS,
                         flush_seconds: float = FLUSH_EVERY_S) -> None:
    """Describe and score ``refs`` on the configured runner; rows land in ``staged_dir``."""
    runner = str(options.view_as(StandardOptions).runner)
    log.info("describing and scoring %d videos with %s on %s", len(refs), config.featurizer, runner)
    pipeline = beam.Pipeline(options=options)
    describe_and_write(pipeline, refs, config, provenance, staged_dir,
                       None, post_process=ScoreClipsFn(model_dir, model_sha256, run_id), schema=schema,
                       flush_rows=flush_rows, flush_seconds=flush_seconds)
    run_to_completion(pipeline)
