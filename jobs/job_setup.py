"""What every job sets up the same way: logging, Beam options with runner aliases, and the
flags of the jobs that run the featurizer."""

from __future__ import annotations

import argparse
import logging

from apache_beam.options.pipeline_options import PipelineOptions

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
# The DirectRunner's own batch engine. Named directly because, left to choose, Beam's
# DirectRunner first tries the Prism runner, which it downloads (failing offline, and running
# the job in another engine where it succeeds).
LOCAL_RUNNER = "FnApiRunner"
RUNNER_ALIASES = {"dask": DASK_RUNNER, "daskrunner": DASK_RUNNER, "local": LOCAL_RUNNER}


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Options for Beam from the flags the job did not consume.

    The runner defaults to the DirectRunner's engine (:data:`LOCAL_RUNNER`), which honours
    ``--direct_num_workers`` and ``--direct_running_mode``. ``--runner dask`` is accepted for
    Beam's Dask runner, which otherwise needs its full module path.
    """
    args = list(beam_args)
    runner = None
    for i, arg in enumerate(args):
        if arg == "--runner" and i + 1 < len(args):
            runner, index, inline = args[i + 1], i + 1, False
        elif arg.startswith("--runner="):
            runner, index, inline = arg.split("=", 1)[1], i, True
    if runner is None:
        args.append(f"--runner={LOCAL_RUNNER}")
    else:
        resolved = RUNNER_ALIASES.get(runner.lower(), runner)
        args[index] = f"--runner={resolved}" if inline else resolved
    return PipelineOptions(args)


def configure_logging() -> None:
    """INFO for the project's loggers (progress lines), WARNING for the engines'.

    ``force``: importing Beam already installed a root handler, which would make a plain
    ``basicConfig`` a no-op and hide the job's progress.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("apache_beam", "distributed", "dask"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def add_featurizer_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--batch-size``, ``--device``, ``--backend`` and ``--segment-frames``, for the jobs that extract descriptors."""
    # Imported here: train and evaluate use this module too and need not load torch.
    from featurizers.backends import BACKENDS
    from pipelines.config import ExtractionConfig

    parser.add_argument("--batch-size", type=int, default=ExtractionConfig.face_batch_size,
                        help="faces per featurizer call")
    parser.add_argument("--device", default=ExtractionConfig.device, help="auto (GPU if present), cpu, cuda, cuda:N")
    parser.add_argument("--backend", default=ExtractionConfig.backend, choices=BACKENDS,
                        help="featurizer runtime: auto = OpenVINO (else ONNX Runtime) on the CPU, torch on a GPU")
    parser.add_argument("--segment-frames", type=int, default=ExtractionConfig.segment_frames,
                        help="split clips longer than this many (sampled) frames into segments that "
                             "workers describe in parallel and merge exactly (0: never split)")
