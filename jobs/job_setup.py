"""What every job sets up the same way: its command line (the job's flags, Beam's, and nothing
else), the check of its output folder, logging, Beam options with runner aliases, and the flags of
the jobs that run the featurizer.

Beam is imported only once a job runs, so that ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import DatasetLayoutError
from common.stores.output_paths import check_output, check_output_folder  # noqa: F401 - for the jobs
from pipelines.graph.runner import DASK_RUNNER, LOCAL_RUNNER, pipeline_options, with_runner_resolved  # noqa: F401

if TYPE_CHECKING:
    from featurizers.detection.detect import DetectorConfig
    from featurizers.detection.detection_mode import DetectionMode
    from pipelines.extraction.clip_records import ClipRef
    from pipelines.extraction.timeline import TimelineSettings


def parse_job_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, *,
                   beam: bool) -> tuple[argparse.Namespace, list[str]]:
    """The job's flags and, for a job that runs a Beam pipeline, the flags left for Beam.

    A flag that is neither the job's nor a Beam pipeline option is a usage error (exit code 2,
    naming it), as is any unknown flag for a job without Beam: Beam would drop it with a log
    warning and the job would run with its defaults (``--frame-stpe 5``).
    """
    parser.allow_abbrev = False  # "--segment-frame 500" is a typo, not --segment-frames
    if not beam:
        return parser.parse_args(argv), []
    args, rest = parser.parse_known_args(argv)
    if not rest:  # nothing for Beam: no need to import it (half a second) to check
        return args, rest
    try:
        unknown = unknown_beam_flags(rest)
    except ValueError as exc:
        parser.error(str(exc))
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (neither a flag of this job nor a "
                     f"Beam pipeline option{_runner_hint(unknown, rest)})")
    return args, rest


def unknown_beam_flags(beam_args: Sequence[str]) -> list[str]:
    """The arguments that no registered Beam options class accepts (flags and stray values).

    The options of the chosen runner's module count too (the Dask runner declares
    ``--dask_client_address`` in its own module, loaded here when ``--runner dask`` is given).
    Raises ValueError for a flag of Beam's given a bad value, or a runner that cannot be loaded.
    """
    # _BeamArgumentParser: Beam's options classes declare their flags on it (value providers);
    # Beam builds the same parser, from the same classes, when it reads the options.
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    args, runner = with_runner_resolved(beam_args)
    if runner and "." in runner:
        module = runner.rsplit(".", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--runner {runner}: cannot load {module} ({exc})") from exc
    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False, conflict_handler="resolve",
                                 exit_on_error=False)
    for options_class in _subclasses(PipelineOptions):
        options_class._add_argparse_args(parser)  # noqa: SLF001 - how Beam itself collects its flags
    try:
        _, unknown = parser.parse_known_args(args)
    except argparse.ArgumentError as exc:
        raise ValueError(str(exc)) from exc
    return unknown


def _subclasses(cls: type) -> list[type]:
    found, stack = [], list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        found.append(sub)
        stack.extend(sub.__subclasses__())
    return found


def _runner_hint(unknown: list[str], beam_args: Sequence[str]) -> str:
    if any(flag.startswith("--dask_") for flag in unknown) and with_runner_resolved(beam_args)[1] != DASK_RUNNER:
        return "; Dask's flags need --runner dask"
    return ""


def configure_logging() -> None:
    """INFO for the project's loggers (progress lines), WARNING for the engines'.

    ``force``: importing Beam already installed a root handler, which would make a plain
    ``basicConfig`` a no-op and hide the job's progress.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger().addFilter(_drop_unactionable)
    for noisy in ("apache_beam", "distributed", "dask"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


UNACTIONABLE_WARNINGS = ("apitools not found, and bigquery client libraries are not available",)
"""Root-logger warnings a user cannot act on: Beam's import says its BigQuery client is missing,
which no job of ours uses."""


def _drop_unactionable(record: logging.LogRecord) -> bool:
    return not any(record.getMessage().startswith(text) for text in UNACTIONABLE_WARNINGS)


def add_face_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--frame-step`` | ``--target-fps``, ``--face-choice`` and ``--min-face-size``: which frames
    and faces a job takes, the same flags in every job that reads faces (``jobs.faces`` exports
    the faces ``jobs.extract`` describes with the same flags)."""
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--frame-step", type=int, default=1, help="use every N-th frame (default 1: all)")
    sampling.add_argument("--target-fps", type=float, help="use about this many frames per second")
    parser.add_argument("--face-choice", choices=("confidence", "largest"), default="confidence",
                        help="one-face-per-frame datasets: most confident box (reference code) or largest")
    parser.add_argument("--min-face-size", type=int, help="MTCNN minimum face size (default 32 AFEW, 64 VGAF)")


def detector_from_args(args: argparse.Namespace, group: bool = False) -> DetectorConfig:
    """The dataset's detector settings with the face selection flags applied."""
    from pipelines.extraction.settings import ExtractionConfig

    detector = replace(ExtractionConfig.default_detector(args.dataset, group), face_choice=args.face_choice)
    if args.min_face_size is not None:
        detector = replace(detector, min_face_size=args.min_face_size)
    return detector


def add_detection_mode_arguments(parser: argparse.ArgumentParser) -> None:
    """``--detect-every`` and ``--detect-max-side``: faster, not exact, face detection (asked for only)."""
    parser.add_argument("--detect-every", type=int, default=1, metavar="N",
                        help="run the full face detector on every N-th sampled frame and follow the faces "
                             "between with its last stages (default 1: exact, every frame)")
    parser.add_argument("--detect-max-side", type=int, metavar="PX",
                        help="look for face candidates on the frame scaled to this longer side (then checked "
                             "on the full-resolution frame); for 1080p and 4K footage (default: off, exact)")


def detection_mode_from_args(args: argparse.Namespace, min_face_size: int) -> DetectionMode:
    """The detection mode of the parsed flags; ValueError naming the flag when a value is bad."""
    from featurizers.detection.detection_mode import DetectionMode

    mode = DetectionMode(args.detect_every, args.detect_max_side)
    mode.check(min_face_size)
    return mode


def add_featurizer_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--device``, ``--backend``, ``--clip-timeout`` and ``--segment-frames``: the
    run-time settings of the jobs that extract descriptors, none of which changes a descriptor."""
    # Imported here: train and evaluate use this module too and need not read these settings.
    from featurizers.runtimes.backend_choice import BACKENDS
    from pipelines.extraction.settings import ExtractionConfig

    parser.add_argument("--batch-size", type=int, default=ExtractionConfig.face_batch_size,
                        help="faces per featurizer call")
    parser.add_argument("--device", default=ExtractionConfig.device, help="auto (GPU if present), cpu, cuda, cuda:N")
    parser.add_argument("--backend", default=ExtractionConfig.backend, choices=BACKENDS,
                        help="runtime of the featurizer and the face detector's networks: "
                             "auto = OpenVINO (else ONNX Runtime) on the CPU, torch on a GPU")
    parser.add_argument("--clip-timeout", type=float,
                        help="seconds a clip may wait on its decoder before it fails "
                             "(default 60 + 0.1 per MB + 0.05 per frame)")
    parser.add_argument("--segment-frames", type=int, default=ExtractionConfig.segment_frames,
                        help="split clips longer than this many (sampled) frames into segments that "
                             "workers describe in parallel and merge exactly (0: never split)")


def add_timeline_arguments(parser: argparse.ArgumentParser, windows_help: str = "") -> None:
    """``--window-seconds`` and ``--min-track-seconds``: the time windows and face tracks of a clip."""
    from pipelines.extraction.timeline import DEFAULT_MIN_TRACK_SECONDS, DEFAULT_WINDOW_SECONDS

    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS, metavar="S",
                        help=f"length of the time windows: window k holds the frames of [k*S, (k+1)*S) "
                             f"(default {DEFAULT_WINDOW_SECONDS:g}){windows_help}")
    parser.add_argument("--min-track-seconds", type=float, default=DEFAULT_MIN_TRACK_SECONDS, metavar="S",
                        help="face tracks shorter than this (first to last face) get no track row; their face "
                             f"rows keep their track_id (default {DEFAULT_MIN_TRACK_SECONDS:g})")


def timeline_from_args(args: argparse.Namespace, *, windows: bool, tracks: bool,
                       windows_can_be_off: bool = False) -> TimelineSettings:
    """The timeline settings of the parsed flags; ValueError naming the flag when a value is bad."""
    from pipelines.extraction.timeline import timeline_from_flags

    return timeline_from_flags(args.window_seconds, args.min_track_seconds, windows=windows, tracks=tracks,
                               windows_can_be_off=windows_can_be_off)


def report_summary(summary: Any, output: str | os.PathLike[str]) -> int:
    """Print a run's summary line and each failed clip; the exit code: 1 when any clip failed, else 0."""
    print(f"{summary.line()} -> {output}")
    for clip_id, error in sorted(summary.failures.items()):
        print(f"  failed: {clip_id}: {error}", file=sys.stderr)
    return 1 if summary.error else 0


def list_job_clips(dataset: str, root: Path, split: str, log: logging.Logger) -> tuple[list[ClipRef], list[str]]:
    """The clips a job runs on, with the listing's warnings (logged here too).

    Raises :class:`DatasetLayoutError` when nothing is found: a job with no clips is a usage error.
    """
    from pipelines.extraction.datasets import list_clips

    refs, warnings = list_clips(dataset, root, split)
    for warning in warnings:
        log.warning("%s", warning)
    if not refs:
        raise DatasetLayoutError(f"no clips found under {root}")
    return refs, warnings
