"""Score every video of an archive with a trained model, night after night, into append-only Parquet.

    python -m jobs.score --model models/afew_b0 --input /archive/videos --output scores/
    python -m jobs.score --model models/afew_b0 --input s3://bucket/videos --output s3://bucket/scores

Videos are found recursively by extension, on a local disk or in a bucket (``s3://``,
``gs://``), and described with exactly the extraction settings the model was trained on
(from its ``model.json``); the classifier scores each clip on the Beam workers. A video is
known by its path relative to ``--input`` and is unchanged while its size and modification
time are: unchanged videos are skipped, new, changed and failed ones scored, a video that
failed ``--max-attempts`` times on the same file is given up (``failed_permanently``). Each
run adds its own files under ``<output>/scores/run=<UTC time>/`` and updates the latest view
``<output>/latest/`` (``pandas.read_parquet`` of it: one row per video), with the scores of each
video's time windows in ``<output>/windows/`` and of each face track in ``<output>/tracks/``.
``--adaptive 18,9,1`` describes each window from fewer frames where the classifier is already
confident (off by default: every sampled frame). Finished clips are written while the run goes
on; a run that was killed is resumed by the next one, which reuses what it finished. One run at
a time: a second one exits 3 at once.

Flags the job does not know go to Beam (``--runner dask``, ``--direct_num_workers 2``, ...).
Exit codes: 0 nothing failed, 1 this run saw a failure (the rows say why), 2 usage error,
3 another run holds the output (or took it over while this run went on: it stops before it commits).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from common.flush_policy import FLUSH_EVERY_ROWS, FLUSH_EVERY_S
from jobs.job_setup import (
    add_detection_mode_arguments,
    add_featurizer_runtime_arguments,
    add_timeline_arguments,
    configure_logging,
    parse_job_args,
)
from pipelines.scoring.run_lock import DEFAULT_STALE_MINUTES

if TYPE_CHECKING:
    from pipelines.scoring.night_plan import ScoringSettings

log = logging.getLogger("jobs.score")

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.score", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="model folder written by jobs.train")
    parser.add_argument("--input", required=True,
                        help="folder or bucket prefix of videos (searched recursively), or one video")
    parser.add_argument("--output", required=True, help="folder or bucket prefix of the scores (kept between runs)")
    parser.add_argument("--weights", help="weights file, or a folder holding <featurizer>.pt (or "
                                          "$EMOTIW_WEIGHTS_DIR); must be the file the model was trained with")
    parser.add_argument("--max-attempts", type=int, default=3,
                        help="failed attempts on the same file before it is marked failed_permanently")
    parser.add_argument("--lock-stale-minutes", type=float, default=DEFAULT_STALE_MINUTES,
                        help="a lock whose heartbeat (rewritten every minute by its run) is older than this is "
                             "taken as left by a dead run")
    parser.add_argument("--flush-clips", type=int, default=FLUSH_EVERY_ROWS,
                        help="scored clips are written to storage at least every this many clips per worker ...")
    parser.add_argument("--flush-seconds", type=float, default=FLUSH_EVERY_S,
                        help="... or every this many seconds: what a killed run can lose")
    parser.add_argument("--adaptive", metavar="STEPS",
                        help="adaptive frame rate, e.g. 18,9,1: each window (the clip with --window-seconds 0) is "
                             "described from every 18th frame, then every 9th, then every frame, until the "
                             "classifier's top-two margin reaches --adaptive-threshold; steps decrease, each "
                             "dividing the one before; clips are not split and get no track rows (default: exact)")
    parser.add_argument("--adaptive-threshold", type=float, metavar="MARGIN",
                        help="with --adaptive: the margin between the top two class scores that ends a window "
                             "(default: calibrated, 0.05 for SVM margins, 0.1 for forest probabilities)")
    add_featurizer_runtime_arguments(parser)
    add_detection_mode_arguments(parser)
    add_timeline_arguments(parser, windows_help="; each window is scored, into <output>/windows (0: no windows)")
    return parser


def scoring_settings(args: argparse.Namespace, beam_args: Sequence[str]) -> ScoringSettings:
    """The run's settings from the parsed command line."""
    from pipelines.scoring.night_plan import ScoringSettings

    return ScoringSettings(
        model=args.model, input=args.input, output=args.output, weights=args.weights,
        max_attempts=args.max_attempts, flush_clips=args.flush_clips, flush_seconds=args.flush_seconds,
        device=args.device, batch_size=args.batch_size, backend=args.backend, segment_frames=args.segment_frames,
        clip_timeout=args.clip_timeout, window_seconds=args.window_seconds, min_track_seconds=args.min_track_seconds,
        lock_stale_minutes=args.lock_stale_minutes, adaptive=args.adaptive,
        adaptive_threshold=args.adaptive_threshold, detect_every=args.detect_every,
        detect_max_side=args.detect_max_side, beam_args=tuple(beam_args))


def run(argv: Sequence[str] | None = None) -> int:
    """Score what changed in the archive; returns the process exit code."""
    args, beam_args = parse_job_args(build_parser(), argv, beam=True)
    # Imported once the command line is read. What a night without work needs is light (pandas,
    # pyarrow, the storage clients); the model, torch and Beam load in scoring_run, only for work.
    from common.stores import storage
    from common.errors import EmotiwError
    from pipelines.scoring.commit_intent import finish_unfinished_commits
    from pipelines.scoring.model_check import check_model
    from pipelines.scoring.night_plan import check_settings, commit_idle_night, empty_failures, list_archive, plan_night
    from pipelines.scoring.run_lock import LockHeld, LockLost, acquire
    from pipelines.scoring.score_store import ScoreStore, new_run_id

    settings = scoring_settings(args, beam_args)
    try:
        checked = check_model(settings, check_settings(settings))
    except (EmotiwError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    run_id = new_run_id()
    try:  # before listing: a second run refuses at once, however long a bucket takes to list
        lock = acquire(args.output, run_id, args.lock_stale_minutes * 60)
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    lock.start_heartbeat()
    try:
        finish_unfinished_commits(ScoreStore(args.output), before_commit=lock.confirm)  # killed mid-commit
        try:
            listing = list_archive(settings)
            night = plan_night(settings, listing, checked.model_sha256)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if night.has_work:
            from pipelines.scoring.scoring_run import prepare, score_archive

            setup = prepare(checked, settings)
            counts, failures = score_archive(setup, night, settings, run_id, before_commit=lock.confirm)
        else:
            counts, failures = commit_idle_night(night, settings, run_id, before_commit=lock.confirm), empty_failures()
    except LockLost as exc:  # judged dead while it ran: the other run's state wins, this run's rows stay staged
        print(f"error: {exc}; this run stopped before its commit", file=sys.stderr)
        return EXIT_LOCKED
    finally:
        lock.release()
    print(f"{len(listing)} videos: {counts.line()} -> {storage.join(args.output, 'latest')} (run {run_id})")
    for _, row in failures.iterrows():
        print(f"  {row['status']}: {row['key']}: {row['error']}", file=sys.stderr)
    return EXIT_FAILURES if counts.failed else EXIT_OK


if __name__ == "__main__":
    # force: importing Beam has already given the root logger a WARNING handler.
    configure_logging()
    sys.exit(run())
