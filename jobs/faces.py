"""Export the faces of a labelled dataset's clips as an image folder, for fine-tuning a featurizer.

    python -m jobs.faces --dataset afew --data-root /data/AFEW --split train --output faces/afew_train
    python -m jobs.finetune --images faces/afew_train --base effnet_lite0_imagenet --output models/ft_afew

The faces are those ``jobs.extract`` would describe with the same flags (decoding, frame
sampling, detector settings, face choice, crop or alignment). Each is written losslessly to
``<output>/<Class>/<clip_id>_<frame_index>[_<face_index>].png`` (the face index when every face
is kept, as for VGAF), and ``<output>/manifest.parquet`` has a row per image (clip_id, split,
label, frame_index, face_index, box, path) and one per clip that gave none. Use
``--frame-step`` or ``--target-fps`` to skip near-identical neighbouring frames.

Flags the job does not know go to Beam. Exit codes: 0 every clip done, 1 some clip failed
(its manifest row says why), 2 the job could not start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

from common.errors import EmotiwError
from featurizers.decoding.decode import FrameSampling
from featurizers.embedding.registry import DEFAULT_FEATURIZER
from jobs.job_setup import (
    add_detection_mode_arguments,
    add_face_selection_arguments,
    check_output,
    configure_logging,
    detection_mode_from_args,
    detector_from_args,
    list_job_clips,
    parse_job_args,
    pipeline_options,
    report_summary,
)
from pipelines.extraction.datasets import SAMPLE_ROOT
from pipelines.extraction.settings import ExtractionConfig

log = logging.getLogger("jobs.faces")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.faces", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("afew", "vgaf"), required=True)
    parser.add_argument("--data-root", type=Path, help="dataset folder (default: the shipped sample of the dataset)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test", "all"),
                        help="default train (unlabelled clips, e.g. AFEW's test split, are listed and skipped)")
    parser.add_argument("--output", required=True, help="image folder (or bucket prefix, s3://... gs://...) to write")
    add_face_selection_arguments(parser)
    add_detection_mode_arguments(parser)
    parser.add_argument("--device", default=ExtractionConfig.device, help="auto (GPU if present), cpu, cuda, cuda:N")
    return parser


def config_from_args(args: argparse.Namespace) -> ExtractionConfig:
    """The extraction settings whose faces are exported (the featurizer is not used)."""
    detector = detector_from_args(args)
    return ExtractionConfig(dataset=args.dataset, featurizer=DEFAULT_FEATURIZER, detector=detector,
                            detection=detection_mode_from_args(args, detector.min_face_size),
                            sampling=FrameSampling(step=args.frame_step, target_fps=args.target_fps),
                            device=args.device)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the export; returns the exit code (1 when any clip failed, 2 on a usage error)."""
    args, beam_args = parse_job_args(build_parser(), argv, beam=True)
    from pipelines.graph.face_export import run_face_export  # Beam, torch and the detector: not for --help

    try:
        check_output(args.output, replaced_whole=True)
        config = config_from_args(args)
        root = args.data_root or SAMPLE_ROOT / args.dataset
        refs, _ = list_job_clips(args.dataset, root, args.split, log)
    except (EmotiwError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = run_face_export(refs, config, args.output, pipeline_options(beam_args))
    return report_summary(summary, args.output)


if __name__ == "__main__":
    configure_logging()
    sys.exit(run())
