"""Extract clip descriptors from a video dataset into Parquet.

    python -m jobs.extract --dataset afew
    python -m jobs.extract --dataset vgaf --data-root /data/VGAF --output out/vgaf_b0 \\
        --featurizer enet_b0_8_best_vgaf --weights /models/enet_b0_8_best_vgaf.pt

Flags the job does not know go to Beam (``--runner dask``, ``--direct_num_workers 2``, ...);
a flag that is neither the job's nor Beam's is refused (exit code 2).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.errors import EmotiwError
from featurizers.decoding.decode import FrameSampling
from featurizers.embedding.registry import DEFAULT_FEATURIZER, FEATURIZERS, canonical_featurizer, resolve_weights_path
from jobs.job_setup import (
    add_detection_mode_arguments,
    add_face_selection_arguments,
    add_featurizer_runtime_arguments,
    add_timeline_arguments,
    check_output,
    configure_logging,
    detection_mode_from_args,
    detector_from_args,
    list_job_clips,
    parse_job_args,
    pipeline_options,
    report_summary,
    timeline_from_args,
)
from pipelines.extraction.datasets import SAMPLE_ROOT
from pipelines.extraction.settings import ExtractionConfig

log = logging.getLogger("jobs.extract")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.extract", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("afew", "vgaf", "folder"), required=True)
    parser.add_argument("--data-root", type=Path, help="dataset folder (default: the shipped sample of the dataset)")
    parser.add_argument("--split", default="all", choices=("train", "val", "test", "all"))
    parser.add_argument("--output", help="output folder or bucket prefix, e.g. s3://bucket/features "
                                         "(default: out/<dataset>_<featurizer>)")
    parser.add_argument("--featurizer", default=DEFAULT_FEATURIZER, metavar="NAME_OR_FOLDER",
                        help=f"a registry name ({', '.join(sorted(FEATURIZERS))}) or a folder written by "
                             "jobs.finetune")
    parser.add_argument("--weights", help="weights file, or a folder holding <featurizer>.pt (or $EMOTIW_WEIGHTS_DIR)")
    add_face_selection_arguments(parser)
    add_detection_mode_arguments(parser)
    parser.add_argument("--group", action="store_true", help="folder archives: describe every face (VGAF-style)")
    add_featurizer_runtime_arguments(parser)
    parser.add_argument("--frames-output", metavar="DIR", help="also write one row per detected face to this folder "
                                                              "or bucket prefix (each with its track_id)")
    add_timeline_arguments(parser)
    parser.add_argument("--windows-output", metavar="DIR",
                        help="also write one descriptor row per time window of each clip (--window-seconds)")
    parser.add_argument("--tracks-output", metavar="DIR",
                        help="also write one row per face track of each clip (--min-track-seconds)")
    return parser


def config_from_args(args: argparse.Namespace) -> ExtractionConfig:
    detector = detector_from_args(args, args.group)
    return ExtractionConfig(
        dataset=args.dataset,
        featurizer=canonical_featurizer(args.featurizer),
        weights=args.weights,
        detector=detector,
        detection=detection_mode_from_args(args, detector.min_face_size),
        sampling=FrameSampling(step=args.frame_step, target_fps=args.target_fps, clip_timeout_s=args.clip_timeout),
        face_batch_size=args.batch_size,
        device=args.device,
        backend=args.backend,
        group=args.group,
        segment_frames=args.segment_frames,
        timeline=timeline_from_args(args, windows=args.windows_output is not None,
                                    tracks=args.tracks_output is not None),
    )


def run(argv: list[str] | None = None) -> int:
    """Run the extraction; returns the exit code (1 when any clip failed, 2 on a usage error)."""
    args, beam_args = parse_job_args(build_parser(), argv, beam=True)
    # Imported once the command line is read: torch (weights checksum) and Beam take seconds.
    from featurizers.embedding.checkpoints import checkpoint_sha256
    from pipelines.graph.extraction_run import run_extraction

    try:
        config = config_from_args(args)
        output = args.output or str(Path("out") / f"{args.dataset}_{config.spec.short_name}")
        check_output(output, replaced_whole=True)
        for flag, folder in (("--frames-output", args.frames_output), ("--windows-output", args.windows_output),
                             ("--tracks-output", args.tracks_output)):
            if folder is not None:
                check_output(folder, flag, replaced_whole=True)
        root = args.data_root or SAMPLE_ROOT / ("afew" if args.dataset == "folder" else args.dataset)
        refs, warnings = list_job_clips(args.dataset, root, args.split, log)
        weights_sha = checkpoint_sha256(resolve_weights_path(config.spec, config.weights))
    except (EmotiwError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    provenance = config.provenance(weights_sha)
    if not config.spec.emotion_tuned:
        log.warning("featurizer %s is generic (ImageNet), not emotion-tuned: descriptors are for "
                    "trying the pipeline, not for emotion results", config.featurizer)
    options = pipeline_options(beam_args)
    summary = run_extraction(refs, config, provenance, output, options, args.frames_output, warnings,
                             windows_output=args.windows_output, tracks_output=args.tracks_output)
    return report_summary(summary, output)


if __name__ == "__main__":
    configure_logging()
    sys.exit(run())
