"""Write a report page to look at: a run's counts and failures, and each video's emotion over time.

    python -m jobs.report --scores scores/ --output reports/scores
    python -m jobs.report --features out/afew_b0 --frames out/afew_frames --output reports/afew

The page is one HTML file, ``<output>/index.html``, with inline CSS and SVG: it opens from disk
in any browser, with no server and no network. From ``jobs.score``'s output it shows the last
run's counts (its manifest), the latest status of every video, the failures, and per video the
window scores over time with the face tracks below them. From ``jobs.extract``'s tables
(``--features``, ``--frames``, ``--windows``, ``--tracks``, any of them) the same timeline
draws the per-frame emotion trace of the face rows. Tables an output lacks are named on the page.

Exit codes: 0 the page was written, 2 usage error (a flag, a missing or unusable folder).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from jobs.job_setup import check_output_folder, parse_job_args

log = logging.getLogger("jobs.report")

EXIT_OK, EXIT_USAGE = 0, 2
PAGE_FILE = "index.html"
EXTRACT_FLAGS = ("features", "frames", "windows", "tracks")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.report", description=__doc__.split("\n")[0])
    source = parser.add_argument_group("what to report on (--scores, or any of the jobs.extract tables)")
    source.add_argument("--scores", metavar="DIR", help="the --output folder (or bucket prefix) of jobs.score")
    source.add_argument("--features", metavar="DIR",
                        help="jobs.extract --output: the clip table (and its _summary.json)")
    source.add_argument("--frames", metavar="DIR",
                        help="jobs.extract --frames-output: face rows, for the emotion trace and tracks")
    source.add_argument("--windows", metavar="DIR",
                        help="jobs.extract --windows-output: window rows (where faces were)")
    source.add_argument("--tracks", metavar="DIR", help="jobs.extract --tracks-output: track rows")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help=f"folder to write {PAGE_FILE} in (created if needed)")
    parser.add_argument("--videos", metavar="PATTERN",
                        help="draw only videos whose key matches this shell pattern, e.g. 'news/2024-*'")
    parser.add_argument("--max-videos", type=_positive_int, default=200, metavar="N",
                        help="draw at most this many videos, in key order (default 200; the counts cover all)")
    parser.add_argument("--title", help="the page's title (default: names the source)")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Read the outputs, write the page; returns the process exit code."""
    parser = build_parser()
    args, _ = parse_job_args(parser, argv, beam=False)
    extract = {name: getattr(args, name) for name in EXTRACT_FLAGS if getattr(args, name)}
    if args.scores and extract:
        parser.error(f"--scores reports on jobs.score; it cannot be combined with "
                     f"{', '.join('--' + n for n in extract)} (jobs.extract's tables): make two reports")
    if not args.scores and not extract:
        parser.error("give --scores (jobs.score's output) or at least one of --features, --frames, --windows, "
                     "--tracks (jobs.extract's tables)")
    try:
        check_output_folder(args.output)
    except ValueError as exc:
        parser.error(str(exc))
    # pandas and pyarrow are imported once the command line is read.
    from common.stores import storage
    from pipelines.reporting.html_report import render_report
    from pipelines.reporting.report_sources import ReportInputError, load_extract_report, load_scores_report

    try:
        if args.scores:
            data = load_scores_report(args.scores, pattern=args.videos, max_videos=args.max_videos, title=args.title)
        else:
            data = load_extract_report(**extract, pattern=args.videos, max_videos=args.max_videos, title=args.title)
    except ReportInputError as exc:
        parser.error(str(exc))
    page = storage.join(args.output, PAGE_FILE)
    storage.write_bytes(page, render_report(data).encode("utf-8"))
    drawn = f"{len(data.videos)} of {data.videos_total}" if data.videos_total > len(data.videos) else len(data.videos)
    print(f"{drawn} videos drawn, {len(data.failures)} failures listed -> {page}")
    for note in data.missing:
        print(f"  note: {note}", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run())
