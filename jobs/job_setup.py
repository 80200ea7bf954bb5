"""Beam pipeline options shared by the jobs: runner aliases and the offline-safe default."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNER_ALIASES = {"dask": DASK_RUNNER, "daskrunner": DASK_RUNNER, "direct": "DirectRunner"}


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Options for Beam from the flags the job did not consume.

    The runner defaults to the DirectRunner by name: left unnamed, Beam first tries the Prism
    runner, whose download fails offline. ``--runner dask`` is accepted for Beam's Dask
    runner, which otherwise needs its full module path.
    """
    args = list(beam_args)
    runner = None
    for i, arg in enumerate(args):
        if arg == "--runner" and i + 1 < len(args):
            runner, index, inline = args[i + 1], i + 1, False
        elif arg.startswith("--runner="):
            runner, index, inline = arg.split("=", 1)[1], i, True
    if runner is None:
        args.append("--runner=DirectRunner")
    else:
        resolved = RUNNER_ALIASES.get(runner.lower(), runner)
        args[index] = f"--runner={resolved}" if inline else resolved
    return PipelineOptions(args)
