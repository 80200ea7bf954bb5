"""A reader polling a local table while it is published over and over: how often it finds no table.

    python benchmarks/benchmark_publish_swap.py --seconds 2

Publishes a two-file table with ``common.publishing.publish`` in a loop while a separate reader
process opens ``<output>`` and reads every file of it (the reader of
``tests/common/test_publishing.py``), once with ``renameat2(RENAME_EXCHANGE)`` and once with the
two renames it replaced (the fallback, forced). Prints and writes results/publish_swap.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import directory_swap  # noqa: E402
from common.publishing import publish, staging_dir  # noqa: E402


def _reader_source() -> str:
    spec = importlib.util.spec_from_file_location("publishing_test", ROOT / "tests" / "common" / "test_publishing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.READER


def measure(seconds: float, reader: str) -> dict[str, int]:
    output = Path(tempfile.mkdtemp(prefix="emotiw-publish-")) / "table"
    published = 0

    def one_publish() -> None:
        nonlocal published
        staging = Path(staging_dir(output))
        for name in ("part-0", "part-1"):
            (staging / name).write_text(str(published))
        publish(staging, output, {"run": published})
        published += 1

    one_publish()
    process = subprocess.Popen([sys.executable, "-c", reader, str(output), str(seconds)], stdout=subprocess.PIPE,
                               text=True)
    while process.poll() is None:
        one_publish()
    reads, missing, deleted = map(int, process.communicate()[0].split())
    return {"publishes": published, "whole_reads": reads, "no_table": missing,
            "old_table_deleted_under_reader": deleted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    reader = _reader_source()
    results = {"seconds": args.seconds, "exchange": measure(args.seconds, reader)}
    directory_swap.exchange = lambda a, b: False  # type: ignore[assignment]  # as on a file system without it
    results["two_renames"] = measure(args.seconds, reader)
    print(json.dumps(results, indent=2))
    (Path(__file__).parent / "results" / "publish_swap.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
