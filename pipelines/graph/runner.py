"""Running a graph: Beam options with the runner aliases the jobs accept, and a run that cleans up after itself.

Beam is imported inside the functions, so that a job's ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
# The DirectRunner's own batch engine. Named directly because, left to choose, Beam's
# DirectRunner first tries the Prism runner, which it downloads (failing offline, and running
# the job in another engine where it succeeds).
LOCAL_RUNNER = "FnApiRunner"
RUNNER_ALIASES = {"dask": DASK_RUNNER, "daskrunner": DASK_RUNNER, "local": LOCAL_RUNNER}

if TYPE_CHECKING:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions


def run_to_completion(pipeline: beam.Pipeline) -> None:
    """Run the pipeline and wait for it; then close the Dask runner's client, which Beam leaves
    open (and with it the local cluster it started when no address was given), so that its
    workers do not outlive the job."""
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()


def with_runner_resolved(beam_args: Sequence[str]) -> tuple[list[str], str | None]:
    """The flags with a ``--runner`` alias replaced by the runner's name, and that name (None if absent)."""
    args = list(beam_args)
    runner = None
    for i, arg in enumerate(args):
        if arg == "--runner" and i + 1 < len(args):
            runner = args[i + 1] = RUNNER_ALIASES.get(args[i + 1].lower(), args[i + 1])
        elif arg.startswith("--runner="):
            name = arg.split("=", 1)[1]
            runner = RUNNER_ALIASES.get(name.lower(), name)
            args[i] = f"--runner={runner}"
    return args, runner


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Options for Beam from the flags the job did not consume.

    The runner defaults to the DirectRunner's engine (:data:`LOCAL_RUNNER`), which honours
    ``--direct_num_workers`` and ``--direct_running_mode``. ``--runner dask`` is accepted for
    Beam's Dask runner, which otherwise needs its full module path.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    args, runner = with_runner_resolved(beam_args)
    if runner is None:
        args.append(f"--runner={LOCAL_RUNNER}")
    return PipelineOptions(args)
