"""Scoring a night's work: load the model, describe and score what the plan
(:mod:`pipelines.scoring.night_plan`) asks for on the Beam runner, fold the rows into the state.
``jobs.score`` is its command line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from classifiers.descriptors import warn_if_runtimes_differ
from classifiers.model_io import MODEL_FILE, TrainedModel, load_pipeline
from classifiers.scoring import scores_metadata, scores_schema, scores_table
from classifiers.timeline_scoring import track_scores_schema, window_scores_schema
from common.tables.schema import PROVENANCE_KEY
from pipelines.extraction.adaptive import AdaptiveSettings, adaptive_from_flags
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.lost_clips import NO_RESULT_ERROR, clips_without_rows
from pipelines.graph.runner import pipeline_options
from pipelines.graph.scoring_steps import ScoredTimelineRows, SharedModel, run_scoring_pipeline
from pipelines.graph.timeline_rows import TimelineOutputs
from pipelines.scoring.archive_state import ERROR, FAILED_STATUSES, RunCounts, count_run, settle_rows
from pipelines.scoring.commit_intent import CommitIntent, commit_run
from pipelines.scoring.model_check import CheckedModel
from pipelines.scoring.night_plan import NightPlan, ScoringSettings
from pipelines.scoring.timeline_store import TRACKS, WINDOWS, collect_timeline_rows, staged_dir

log = logging.getLogger("jobs.score")


@dataclass(frozen=True)
class ScoringSetup:
    """Everything checked before any video is touched."""

    model: TrainedModel
    model_sha256: str
    config: ExtractionConfig
    provenance: dict[str, Any]
    adaptive: AdaptiveSettings | None = None
    """Adaptive frame rate, its threshold resolved for the model's kind of scores (None: exact)."""


def prepare(checked: CheckedModel, args: ScoringSettings) -> ScoringSetup:
    """Load the fitted model and resolve the runtime the workers will use.

    Run only when there is work: it loads scikit-learn, and resolving the device imports torch.
    """
    model = TrainedModel(load_pipeline(Path(args.model) / MODEL_FILE), checked.provenance, Path(args.model))
    provenance = checked.config.provenance(checked.weights_sha256)
    warn_if_runtimes_differ(model.provenance.descriptor_provenance, provenance, trained_what=f"model {args.model}",
                            found_what="this scoring run")
    adaptive = adaptive_from_flags(args.adaptive, args.adaptive_threshold)
    if adaptive is not None:
        adaptive = adaptive.resolved(score_kind(model))
        provenance = {**provenance, "adaptive": adaptive.to_dict()}  # absent: exact scoring
        log.info("adaptive frame rate: steps %s, margin threshold %g (%s)", list(adaptive.steps),
                 adaptive.threshold, score_kind(model))
    return ScoringSetup(model, checked.model_sha256, checked.config, provenance, adaptive)


def score_archive(setup: ScoringSetup, night: NightPlan, args: ScoringSettings, run_id: str,
                  before_commit: Callable[[], None] = lambda: None) -> tuple[RunCounts, pd.DataFrame]:
    """Describe and score what the night's plan needs, fold the rows into the state.

    ``before_commit`` raises to stop the run before it writes the shared state (the run lock's check).
    """
    store, plan = night.store, night.plan
    metadata = scores_metadata(setup.provenance, model_info(setup, args))
    schema = scores_schema(score_classes(setup.model), metadata)
    timeline_schemas = {WINDOWS: window_scores_schema(score_classes(setup.model), timeline_metadata(metadata, setup)),
                        TRACKS: track_scores_schema(score_classes(setup.model), timeline_metadata(metadata, setup))}
    fresh = plan.to_score.iloc[0:0]
    if len(plan.to_score):
        store.start_run(run_id, plan.to_score)
        refs = [ClipRef(key, url, "folder") for key, url in zip(plan.to_score["key"], plan.to_score["url"])]
        model = SharedModel(str(Path(args.model).absolute()))  # one loaded copy per worker for every step
        windows_on = setup.config.timeline.windows_on
        timeline = TimelineOutputs(
            staged_dir(store, run_id, WINDOWS) if windows_on else None, staged_dir(store, run_id, TRACKS),
            ScoredTimelineRows(setup.config, model, setup.model_sha256, run_id, timeline_schemas[WINDOWS],
                               timeline_schemas[TRACKS]))
        run_scoring_pipeline(refs, setup.config, setup.provenance, model,
                             setup.model_sha256, run_id, store.staged_dir(run_id), schema,
                             pipeline_options(list(args.beam_args)), args.flush_clips, args.flush_seconds, timeline,
                             setup.adaptive)
        rows = store.read_rows(store.staged_dir(run_id))
        lost = clips_without_rows(list(plan.to_score["key"]), rows["key"], "videos")
        if lost:
            rows = pd.concat([rows, lost_rows(plan.to_score, lost, setup, run_id)], ignore_index=True)
        fresh = settle_rows(rows, plan.to_score, args.max_attempts)
    settled = pd.concat([f for f in (plan.reused, fresh) if len(f)], ignore_index=True) \
        if len(plan.reused) or len(fresh) else fresh
    counts = count_run(plan, settled)
    manifest = night.manifest(args, counts)
    before_commit()
    started = time.perf_counter()
    timeline = {table.name: scores_table(collect_timeline_rows(store, table, settled), table_schema)
                for table, table_schema in timeline_schemas.items()}
    commit_run(store, CommitIntent(run_id, scores_table(settled, schema), list(plan.removed), manifest, timeline))
    log.info("wrote run %s (%d rows, %d removed) and its latest files in %.1f s", run_id, len(settled),
             len(plan.removed), time.perf_counter() - started)
    failures = settled[settled["status"].isin(list(FAILED_STATUSES))] if len(settled) else settled
    return counts, failures


def score_classes(model: TrainedModel) -> list[str]:
    return [model.provenance.classes[int(i)] for i in model.pipeline.classes_]


def model_info(setup: ScoringSetup, args: ScoringSettings) -> dict[str, Any]:
    prov = setup.model.provenance
    return {"model": str(args.model), "model_sha256": setup.model_sha256, "classifier": prov.classifier,
            "classes": prov.classes, "score_classes": score_classes(setup.model), "dataset": prov.dataset,
            "score_kind": score_kind(setup.model)}


def score_kind(model: TrainedModel) -> str:
    """SVM margins or forest probabilities, the same choice as classifiers.evaluation.class_scores."""
    return "decision_function" if hasattr(model.pipeline, "decision_function") else "probability"


def timeline_metadata(metadata: dict[bytes, bytes], setup: ScoringSetup) -> dict[bytes, bytes]:
    """The scores' metadata, the extraction provenance with the timeline's settings added (window length, tracker)."""
    timeline = setup.config.timeline
    provenance = {**setup.provenance, "windows": timeline.windows_dict(), "tracks": timeline.tracks_dict()}
    return {**metadata, PROVENANCE_KEY: json.dumps(provenance, sort_keys=True).encode()}


def lost_rows(planned: pd.DataFrame, keys: list[str], setup: ScoringSetup, run_id: str) -> pd.DataFrame:
    """Error rows for videos the runner returned nothing for: recorded, never silently lost."""
    urls = planned.set_index("key")["url"]
    now = pd.Timestamp.now(tz="UTC").floor("us")
    return pd.DataFrame([{"key": k, "path": urls[k], "clip_id": k, "status": ERROR, "has_face": False,
                          "error": NO_RESULT_ERROR, "n_frames": 0, "n_face_frames": 0,
                          "n_faces": 0, "scored_at": now, "model_sha256": setup.model_sha256,
                          "featurizer": setup.config.featurizer, "run_id": run_id} for k in keys])
