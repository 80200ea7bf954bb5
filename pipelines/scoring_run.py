"""Scoring an archive: load the model, list the archive, plan from the state, describe and score
what needs it on the Beam runner, fold the rows into the state. ``jobs.score`` is its command line.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from classifiers.descriptors import check_same_identity, warn_if_runtimes_differ
from classifiers.model_io import MODEL_FILE, TrainedModel, load_model
from classifiers.scoring import scores_metadata, scores_schema, scores_table
from featurizers.checkpoints import checkpoint_sha256
from featurizers.registry import resolve_weights_path
from jobs.job_setup import check_output_folder, pipeline_options
from pipelines import storage
from pipelines.archive_state import ERROR, FAILED_STATUSES, RunCounts, count_run, missing_keys, plan_run, settle_rows
from pipelines.config import ExtractionConfig
from pipelines.datasets import VIDEO_EXTENSIONS
from pipelines.model_settings import extraction_config_for_model
from pipelines.records import ClipRef
from pipelines.score_store import ScoreStore
from pipelines.scoring_steps import run_scoring_pipeline

log = logging.getLogger("jobs.score")


@dataclass(frozen=True)
class ScoringSetup:
    """Everything checked before any video is touched."""

    model: TrainedModel
    model_sha256: str
    config: ExtractionConfig
    provenance: dict[str, Any]


def prepare(args: argparse.Namespace) -> ScoringSetup:
    """Load the model and rebuild its extraction settings; raises on usage errors."""
    check_output_folder(args.output)
    for flag, value in (("--max-attempts", args.max_attempts), ("--flush-clips", args.flush_clips),
                        ("--flush-seconds", args.flush_seconds), ("--lock-stale-minutes", args.lock_stale_minutes)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{flag} must be a positive number, got {value}")
    model = load_model(args.model)
    config = extraction_config_for_model(model.provenance, weights=args.weights, device=args.device,
                                         face_batch_size=args.batch_size, backend=args.backend,
                                         segment_frames=args.segment_frames, clip_timeout_s=args.clip_timeout)
    provenance = config.provenance(checkpoint_sha256(resolve_weights_path(config.spec, config.weights)))
    check_same_identity(model.provenance.identity(), provenance,
                        expected_what=f"model {args.model}", found_what="the featurizer available for scoring",
                        hint="pass --weights with the file the model was trained with, or retrain the model")
    warn_if_runtimes_differ(model.provenance.descriptor_provenance, provenance, trained_what=f"model {args.model}",
                            found_what="this scoring run")
    return ScoringSetup(model, checkpoint_sha256(Path(args.model) / MODEL_FILE), config, provenance)


def list_archive(args: argparse.Namespace) -> pd.DataFrame:
    """The archive now: key (path relative to --input), url, size_bytes, mtime_ns; raises on usage errors."""
    started = time.perf_counter()
    files = storage.list_files(args.input, VIDEO_EXTENSIONS)
    if not files:
        raise ValueError(f"no videos under {args.input} (extensions .avi, .mp4, .mkv, ...); "
                         f"{args.output} left unchanged")
    log.info("listed %d videos under %s in %.1f s", len(files), args.input, time.perf_counter() - started)
    return pd.DataFrame({"key": [f.key for f in files], "url": [f.url for f in files],
                         "size_bytes": [f.size_bytes for f in files], "mtime_ns": [f.mtime_ns for f in files]})


def score_archive(setup: ScoringSetup, listing: pd.DataFrame, args: argparse.Namespace, run_id: str,
                  beam_args: list[str], before_commit: Callable[[], None] = lambda: None,
                  ) -> tuple[RunCounts, pd.DataFrame]:
    """Plan from the small index, describe and score what needs it, fold the rows into the state.

    ``before_commit`` raises to stop the run before it writes the shared state (the run lock's check).
    """
    store = ScoreStore(args.output)
    if storage.exists(storage.join(args.output, "scores.parquet")):
        log.warning("%s is the single table of an older version; it is not read (every video is scored "
                    "again into latest/) and can be deleted", storage.join(args.output, "scores.parquet"))
    started = time.perf_counter()
    index = store.read_index()
    unfinished = store.unfinished_runs()
    staged = store.read_staged(unfinished, args.max_attempts)
    plan = plan_run(listing, index, staged, setup.model_sha256, args.max_attempts)
    log.info("planned from an index of %d videos in %.1f s", len(index), time.perf_counter() - started)
    if unfinished:
        log.info("run(s) %s did not finish; reused %d clips they had finished", ", ".join(unfinished),
                 len(plan.reused))
    counts_by_reason = plan.reason_counts()
    if counts_by_reason:
        log.info("to score: %s", ", ".join(f"{n} {why}" for why, n in counts_by_reason.items()))
    if plan.removed:
        log.info("%d videos scored before are no longer listed; dropped from the latest view", len(plan.removed))
    schema = scores_schema(score_classes(setup.model), scores_metadata(setup.provenance, model_info(setup, args)))
    fresh = plan.to_score.iloc[0:0]
    if len(plan.to_score):
        store.start_run(run_id, plan.to_score)
        refs = [ClipRef(key, url, "folder") for key, url in zip(plan.to_score["key"], plan.to_score["url"])]
        run_scoring_pipeline(refs, setup.config, setup.provenance, str(Path(args.model).absolute()),
                             setup.model_sha256, run_id, store.staged_dir(run_id), schema,
                             pipeline_options(beam_args), args.flush_clips, args.flush_seconds)
        rows = store.read_rows(store.staged_dir(run_id))
        lost = missing_keys(plan.to_score, rows)
        if lost:
            log.error("%d videos came back without a row; recorded as errors", len(lost))
            rows = pd.concat([rows, lost_rows(plan.to_score, lost, setup, run_id)], ignore_index=True)
        fresh = settle_rows(rows, plan.to_score, args.max_attempts)
    settled = pd.concat([f for f in (plan.reused, fresh) if len(f)], ignore_index=True) \
        if len(plan.reused) or len(fresh) else fresh
    counts = count_run(plan, settled)
    manifest = {"input": str(args.input), "model": str(args.model), "model_sha256": setup.model_sha256,
                "max_attempts": args.max_attempts, "adopted_runs": unfinished, "counts": asdict(counts),
                "listed": len(listing)}
    before_commit()
    started = time.perf_counter()
    store.commit(run_id, settled, plan.removed, lambda frame: scores_table(frame, schema), manifest)
    log.info("wrote run %s (%d rows, %d removed) and its latest files in %.1f s", run_id, len(settled),
             len(plan.removed), time.perf_counter() - started)
    failures = settled[settled["status"].isin(list(FAILED_STATUSES))] if len(settled) else settled
    return counts, failures


def score_classes(model: TrainedModel) -> list[str]:
    return [model.provenance.classes[int(i)] for i in model.pipeline.classes_]


def model_info(setup: ScoringSetup, args: argparse.Namespace) -> dict[str, Any]:
    prov = setup.model.provenance
    return {"model": str(args.model), "model_sha256": setup.model_sha256, "classifier": prov.classifier,
            "classes": prov.classes, "score_classes": score_classes(setup.model), "dataset": prov.dataset,
            # SVM margins or forest probabilities, the same choice as classifiers.evaluation.class_scores
            "score_kind": "decision_function" if hasattr(setup.model.pipeline, "decision_function")
            else "probability"}


def lost_rows(planned: pd.DataFrame, keys: list[str], setup: ScoringSetup, run_id: str) -> pd.DataFrame:
    """Error rows for videos the runner returned nothing for: recorded, never silently lost."""
    urls = planned.set_index("key")["url"]
    now = pd.Timestamp.now(tz="UTC").floor("us")
    return pd.DataFrame([{"key": k, "path": urls[k], "clip_id": k, "status": ERROR, "has_face": False,
                          "error": "no result came back from the runner", "n_frames": 0, "n_face_frames": 0,
                          "n_faces": 0, "scored_at": now, "model_sha256": setup.model_sha256,
                          "featurizer": setup.config.featurizer, "run_id": run_id} for k in keys])
