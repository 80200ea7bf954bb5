"""A reader polling a local table while it is published over and over: how often it finds no table.

    python benchmarks/benchmark_publish_swap.py --seconds 2

Publishes a two-file table with ``common.stores.publishing.publish`` in a loop while a separate reader
process opens ``<output>`` and reads every file of it (``tests/common/stores/test_publishing.py`` runs the same
race), once with ``renameat2(RENAME_EXCHANGE)`` and once with the
two renames it replaced (the fallback, forced). Prints and writes results/publish_swap.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.stores import directory_swap# noqa: E402
from common.stores.publishing import publish, staging_dir  # noqa: E402


READER = """
import os, sys, time
target, stop = sys.argv[1], time.monotonic() + float(sys.argv[2])
reads = missing = deleted = 0
while time.monotonic() < stop:
    try:
        folder = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        missing += 1
        continue
    try:
        runs = set()
        for name in ("part-0", "part-1", "_summary.json"):
            with open(name, opener=lambda path, flags: os.open(path, flags, dir_fd=folder)) as part:
                runs.add(part.read().strip() if name != "_summary.json" else part.read().split()[-2])
        if len(runs) != 1:
            print("mixed", runs, file=sys.stderr); sys.exit(1)
        reads += 1
    except FileNotFoundError:  # an old table, deleted after its successor was swapped in
        deleted += 1
    finally:
        os.close(folder)
print(reads, missing, deleted)
"""


def publish_while_reading(output: Path, seconds: float) -> dict[str, int]:
    """Publish a two-file table at ``output`` over and over while a reader process reads it whole."""
    published = 0

    def one_publish() -> None:
        nonlocal published
        staging = Path(staging_dir(output))
        for name in ("part-0", "part-1"):
            (staging / name).write_text(str(published))
        publish(staging, output, {"run": published})
        published += 1

    one_publish()
    process = subprocess.Popen([sys.executable, "-c", READER, str(output), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    while process.poll() is None:
        one_publish()
    out, _ = process.communicate()
    if process.returncode != 0:
        raise AssertionError(f"the reader found a table of two runs (exit {process.returncode})")
    reads, missing, deleted = map(int, out.split())
    return {"publishes": published, "whole_reads": reads, "no_table": missing,
            "old_table_deleted_under_reader": deleted}


def measure(seconds: float) -> dict[str, int]:
    return publish_while_reading(Path(tempfile.mkdtemp(prefix="emotiw-publish-")) / "table", seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    results = {"seconds": args.seconds, "exchange": measure(args.seconds)}
    directory_swap.exchange = lambda a, b: False  # type: ignore[assignment]  # as on a file system without it
    results["two_renames"] = measure(args.seconds)
    print(json.dumps(results, indent=2))
    (Path(__file__).parent / "results" / "publish_swap.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
