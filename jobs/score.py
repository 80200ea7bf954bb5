"""Score every video of a folder with a trained model, incrementally, into one Parquet table.

    python -m jobs.score --model models/afew_b0 --input /archive/videos --output scores/

Videos are found recursively by extension and described with exactly the extraction settings
the model was trained on (featurizer, aggregation, detector, frame sampling, from its
``model.json``). ``<output>/scores.parquet`` gets one row per video now in the folder: its
absolute path (as listed, symlinks not resolved), size, modification time, status, predicted
label and per-class scores (null for faceless and failed videos). Made for a nightly schedule:
a video whose path, size and modification time match a row scored by the same model is not
described again; new, changed and previously failed videos are; rows of videos no longer
present are dropped. The table is replaced in one rename, so a reader never sees it
half-written.

Flags the job does not know go to Beam (``--runner dask``, ``--direct_num_workers 2``, ...).
Exit codes: 0 all scored, 1 some videos failed (their rows say why), 2 usage errors.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from classifiers.descriptors import check_same_identity, load_descriptors, warn_if_runtimes_differ
from classifiers.model_io import MODEL_FILE, TrainedModel, load_model
from classifiers.scoring import (SCORES_FILE, ArchiveVideo, ScoringPlan, extraction_config_for_model,
                                 merge_scores, plan_scoring, predict_clips, read_scores, scored_rows,
                                 scores_metadata, scores_schema, stat_videos, write_scores)
from featurizers.checkpoints import checkpoint_sha256
from featurizers.errors import EmotiwError
from featurizers.registry import resolve_weights_path
from jobs.job_setup import (add_featurizer_runtime_arguments, check_output_folder, configure_logging,
                            parse_job_args, pipeline_options)
from pipelines.config import ExtractionConfig
from pipelines.datasets import list_folder
from pipelines.extraction_run import run_extraction
from pipelines.records import ClipRef

log = logging.getLogger("jobs.score")

CLIP_COLUMNS = ["clip_id", "status", "error", "has_face", "n_frames", "n_face_frames", "n_faces"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.score", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="model folder written by jobs.train")
    parser.add_argument("--input", required=True, type=Path,
                        help="folder of videos (searched recursively), or one video")
    parser.add_argument("--output", required=True, type=Path, help=f"folder for {SCORES_FILE} (kept between runs)")
    parser.add_argument("--weights", help="weights file, or a folder holding <featurizer>.pt (or "
                                          "$EMOTIW_WEIGHTS_DIR); must be the file the model was trained with")
    add_featurizer_runtime_arguments(parser)
    return parser


@dataclass(frozen=True)
class ScoringSetup:
    """Everything checked before any video is touched."""

    model: TrainedModel
    model_sha256: str
    config: ExtractionConfig
    provenance: dict[str, Any]
    videos: list[ArchiveVideo]


def prepare(args: argparse.Namespace) -> ScoringSetup:
    """Load the model, rebuild its extraction settings and list the archive; raises on usage errors."""
    check_output_folder(args.output)
    model = load_model(args.model)
    config = extraction_config_for_model(model.provenance, weights=args.weights, device=args.device,
                                         face_batch_size=args.batch_size, backend=args.backend,
                                         segment_frames=args.segment_frames)
    provenance = config.provenance(checkpoint_sha256(resolve_weights_path(config.spec, config.weights)))
    check_same_identity(model.provenance.identity(), provenance,
                        expected_what=f"model {args.model}", found_what="the featurizer available for scoring",
                        hint="pass --weights with the file the model was trained with, or retrain the model")
    warn_if_runtimes_differ(model.provenance.descriptor_provenance, provenance, trained_what=f"model {args.model}",
                            found_what="this scoring run")
    root = args.input.absolute()  # absolute paths key the table, whatever directory cron starts in
    refs = list_folder(root)
    if not refs:
        raise ValueError(f"no videos under {root} (extensions .avi, .mp4, .mkv, ...); "
                         f"{args.output / SCORES_FILE} left unchanged")
    args.output.mkdir(parents=True, exist_ok=True)
    return ScoringSetup(model, checkpoint_sha256(Path(args.model) / MODEL_FILE), config, provenance,
                        stat_videos([(r.path, r.clip_id) for r in refs]))


def describe_and_predict(setup: ScoringSetup, videos: list[ArchiveVideo], output: Path,
                         beam_args: list[str]) -> pd.DataFrame:
    """Extract descriptors of ``videos`` into a scratch folder inside ``output`` and score them."""
    scratch = Path(tempfile.mkdtemp(prefix=".scoring-", dir=output))
    try:
        table = scratch / "descriptors"
        refs = [ClipRef(v.clip_id, v.path, "folder") for v in videos]
        run_extraction(refs, setup.config, setup.provenance, table, pipeline_options(beam_args))
        descriptors = load_descriptors(table)
        clips = pd.read_parquet(table, columns=CLIP_COLUMNS).set_index("clip_id").loc[descriptors.clip_ids]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    prov = setup.model.provenance
    usable = (descriptors.status == "ok") & descriptors.has_face
    labels, scores = predict_clips(setup.model.pipeline, prov.classes, descriptors.X, usable)
    return scored_rows(videos, clips.reset_index(), labels, scores, model_sha256=setup.model_sha256,
                       featurizer=prov.featurizer, scored_at=pd.Timestamp.now(tz="UTC"))


def run(argv: Sequence[str] | None = None) -> int:
    """Score the folder and replace the scores table; returns the process exit code."""
    args, beam_args = parse_job_args(build_parser(), argv, beam=True)
    try:
        setup = prepare(args)
    except (EmotiwError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scores_file = args.output / SCORES_FILE
    previous = read_scores(scores_file)
    if previous.problem:
        log.warning("%s; scoring every video again", previous.problem)
    plan = plan_scoring(setup.videos, previous.table, setup.model_sha256)
    log_plan(plan)
    prov = setup.model.provenance
    score_classes = [prov.classes[int(i)] for i in setup.model.pipeline.classes_]
    fresh = pd.DataFrame()
    if plan.to_score:
        fresh = describe_and_predict(setup, plan.to_score, args.output, beam_args)
    model_info = {"model": str(args.model), "model_sha256": setup.model_sha256, "classifier": prov.classifier,
                  "classes": prov.classes, "score_classes": score_classes, "dataset": prov.dataset,
                  # SVM margins or forest probabilities, the same choice as classifiers.evaluation.class_scores
                  "score_kind": "decision_function" if hasattr(setup.model.pipeline, "decision_function")
                  else "probability"}
    schema = scores_schema(score_classes, scores_metadata(setup.provenance, model_info))
    write_scores(merge_scores(plan.kept, fresh, schema), scores_file)
    failed = fresh[fresh["status"] == "error"] if len(fresh) else fresh
    print(f"{len(setup.videos)} videos: {len(plan.kept)} already scored (skipped), {len(fresh)} scored now, "
          f"{len(failed)} failed; {plan.dropped} rows of removed videos dropped -> {scores_file}")
    for _, row in failed.iterrows():
        print(f"  failed: {row['path']}: {row['error']}", file=sys.stderr)
    return 1 if len(failed) else 0


def log_plan(plan: ScoringPlan) -> None:
    """Say why videos are scored again, so a nightly log explains an unexpectedly long run."""
    counts = plan.reason_counts()
    if counts:
        log.info("to score: %s", ", ".join(f"{n} {why}" for why, n in sorted(counts.items())))
    if plan.dropped:
        log.info("%d videos scored before are no longer in the folder; their rows are dropped", plan.dropped)


if __name__ == "__main__":
    # force: importing Beam has already given the root logger a WARNING handler.
    configure_logging()
    sys.exit(run())
