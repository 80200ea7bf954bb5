"""Scoring an archive: load the model, list the archive, plan from the state, describe and score
what needs it on the Beam runner, fold the rows into the state. ``jobs.score`` is its command line.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from classifiers.descriptors import check_same_identity, warn_if_runtimes_differ
from classifiers.model_io import MODEL_FILE, TrainedModel, load_model
from classifiers.scoring import scores_metadata, scores_schema, scores_table
from classifiers.timeline_scoring import track_scores_schema, window_scores_schema
from common import storage
from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from common.output_paths import check_output_folder
from common.schema import PROVENANCE_KEY
from featurizers.embedding.checkpoints import checkpoint_sha256
from featurizers.embedding.registry import resolve_weights_path
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.datasets import VIDEO_EXTENSIONS
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.timeline import DEFAULT_MIN_TRACK_SECONDS, DEFAULT_WINDOW_SECONDS, timeline_from_flags
from pipelines.graph.lost_clips import NO_RESULT_ERROR, clips_without_rows
from pipelines.graph.runner import pipeline_options
from pipelines.graph.scoring_steps import ScoredTimelineRows, run_scoring_pipeline
from pipelines.graph.timeline_rows import TimelineOutputs
from pipelines.scoring.archive_state import (
    ERROR,
    FAILED_STATUSES,
    RunCounts,
    count_run,
    plan_run,
    settle_rows,
)
from pipelines.scoring.run_lock import DEFAULT_STALE_MINUTES
from pipelines.scoring.score_store import ScoreStore
from pipelines.scoring.settings_from_model import extraction_config_for_model
from pipelines.scoring.timeline_store import TRACKS, WINDOWS, commit_timeline, staged_dir

log = logging.getLogger("jobs.score")


@dataclass(frozen=True)
class ScoringSettings:
    """What a night's run is asked to do: ``jobs.score``'s flags, or a caller's own choice."""

    model: Path
    input: str
    output: str
    weights: str | None = None
    max_attempts: int = 3
    flush_clips: int = FLUSH_EVERY_ROWS
    flush_seconds: float = FLUSH_EVERY_S
    device: str = "auto"
    batch_size: int = ExtractionConfig.face_batch_size
    backend: str = "auto"
    segment_frames: int = ExtractionConfig.segment_frames
    clip_timeout: float | None = None
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    """Length of the scored time windows (0: none)."""
    min_track_seconds: float = DEFAULT_MIN_TRACK_SECONDS
    lock_stale_minutes: float = DEFAULT_STALE_MINUTES
    """A lock whose heartbeat is older than this was left by a dead run."""
    beam_args: Sequence[str] = field(default_factory=tuple)
    """Flags for Beam (``--runner dask``, ...), as the job received them."""


@dataclass(frozen=True)
class ScoringSetup:
    """Everything checked before any video is touched."""

    model: TrainedModel
    model_sha256: str
    config: ExtractionConfig
    provenance: dict[str, Any]


def prepare(args: ScoringSettings) -> ScoringSetup:
    """Load the model and rebuild its extraction settings; raises on usage errors."""
    check_output_folder(args.output)
    for flag, value in (("--max-attempts", args.max_attempts), ("--flush-clips", args.flush_clips),
                        ("--flush-seconds", args.flush_seconds), ("--lock-stale-minutes", args.lock_stale_minutes)):
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{flag} must be a positive number, got {value}")
    timeline = timeline_from_flags(args.window_seconds, args.min_track_seconds, windows=True, tracks=True,
                                   windows_can_be_off=True)
    model = load_model(args.model)
    config = extraction_config_for_model(model.provenance, weights=args.weights, device=args.device,
                                         face_batch_size=args.batch_size, backend=args.backend,
                                         segment_frames=args.segment_frames, clip_timeout_s=args.clip_timeout)
    config = replace(config, timeline=timeline)
    provenance = config.provenance(checkpoint_sha256(resolve_weights_path(config.spec, config.weights)))
    check_same_identity(model.provenance.identity(), provenance,
                        expected_what=f"model {args.model}", found_what="the featurizer available for scoring",
                        hint="pass --weights with the file the model was trained with, or retrain the model")
    warn_if_runtimes_differ(model.provenance.descriptor_provenance, provenance, trained_what=f"model {args.model}",
                            found_what="this scoring run")
    return ScoringSetup(model, checkpoint_sha256(Path(args.model) / MODEL_FILE), config, provenance)


def list_archive(args: ScoringSettings) -> pd.DataFrame:
    """The archive now: key (path relative to --input), url, size_bytes, mtime_ns; raises on usage errors."""
    started = time.perf_counter()
    files = storage.list_files(args.input, VIDEO_EXTENSIONS)
    if not files:
        raise ValueError(f"no videos under {args.input} (extensions .avi, .mp4, .mkv, ...); "
                         f"{args.output} left unchanged")
    log.info("listed %d videos under %s in %.1f s", len(files), args.input, time.perf_counter() - started)
    return pd.DataFrame({"key": [f.key for f in files], "url": [f.url for f in files],
                         "size_bytes": [f.size_bytes for f in files], "mtime_ns": [f.mtime_ns for f in files]})


def score_archive(setup: ScoringSetup, listing: pd.DataFrame, args: ScoringSettings, run_id: str,
                  before_commit: Callable[[], None] = lambda: None) -> tuple[RunCounts, pd.DataFrame]:
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
    metadata = scores_metadata(setup.provenance, model_info(setup, args))
    schema = scores_schema(score_classes(setup.model), metadata)
    timeline_schemas = {WINDOWS: window_scores_schema(score_classes(setup.model), timeline_metadata(metadata, setup)),
                        TRACKS: track_scores_schema(score_classes(setup.model), timeline_metadata(metadata, setup))}
    fresh = plan.to_score.iloc[0:0]
    if len(plan.to_score):
        store.start_run(run_id, plan.to_score)
        refs = [ClipRef(key, url, "folder") for key, url in zip(plan.to_score["key"], plan.to_score["url"])]
        model_dir = str(Path(args.model).absolute())
        windows_on = setup.config.timeline.windows_on
        timeline = TimelineOutputs(
            staged_dir(store, run_id, WINDOWS) if windows_on else None, staged_dir(store, run_id, TRACKS),
            ScoredTimelineRows(setup.config, model_dir, setup.model_sha256, run_id, timeline_schemas[WINDOWS],
                               timeline_schemas[TRACKS]))
        run_scoring_pipeline(refs, setup.config, setup.provenance, model_dir,
                             setup.model_sha256, run_id, store.staged_dir(run_id), schema,
                             pipeline_options(list(args.beam_args)), args.flush_clips, args.flush_seconds, timeline)
        rows = store.read_rows(store.staged_dir(run_id))
        lost = clips_without_rows(list(plan.to_score["key"]), rows["key"], "videos")
        if lost:
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
    for table, table_schema in timeline_schemas.items():  # before the manifest: a killed commit is redone
        manifest[f"{table.name}_rows"] = commit_timeline(store, table, run_id, settled, plan.removed,
                                                         lambda frame, s=table_schema: scores_table(frame, s))
    store.commit(run_id, settled, plan.removed, lambda frame: scores_table(frame, schema), manifest)
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
            # SVM margins or forest probabilities, the same choice as classifiers.evaluation.class_scores
            "score_kind": "decision_function" if hasattr(setup.model.pipeline, "decision_function")
            else "probability"}


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
