"""What every job sets up the same way: logging, and Beam options with runner aliases."""

from __future__ import annotations

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
