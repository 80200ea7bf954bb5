"""Run a command and report the peak resident memory of its whole process tree.

    python benchmarks/peak_rss.py --report /tmp/peak.json -- python -m jobs.extract --dataset afew

GNU time reports the largest single process; a job here is a process tree (the decoder runs in
a child, Beam may start workers), so this samples the sum over the tree every 0.2 s and rewrites
``--report`` every 10 s (a run stopped early still leaves its peak so far).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def tree_rss_mib(root) -> float:
    import psutil

    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            pass
    return total / 2**20


def main(argv: list[str] | None = None) -> int:
    import psutil

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.perf_counter()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak, last_report = 0.0, 0.0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss_mib(root))
        except psutil.Error:
            pass
        if time.perf_counter() - last_report > 10:
            last_report = time.perf_counter()
            args.report.write_text(json.dumps({"command": command, "running": True, "peak_tree_rss_mib": round(peak, 1),
                                               "seconds": round(last_report - started, 1)}))
        time.sleep(0.2)
    report = {"command": command, "running": False, "exit_code": child.returncode,
              "peak_tree_rss_mib": round(peak, 1), "seconds": round(time.perf_counter() - started, 1)}
    args.report.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
