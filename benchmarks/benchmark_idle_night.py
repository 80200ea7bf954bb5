"""A night with nothing new: how long the whole ``jobs.score`` process takes, start to exit.

    python benchmarks/benchmark_idle_night.py --where local --videos 3 --repeat 5
    python benchmarks/benchmark_idle_night.py --where s3 --videos 3 --repeat 5
    python benchmarks/benchmark_idle_night.py --where gs --videos 3 --repeat 5

A model is trained on two shipped AFEW samples, an archive of ``--videos`` copies of them is
scored once (the first night), then ``jobs.score`` is started ``--repeat`` times as a fresh
process on the unchanged archive and timed from start to exit. ``s3`` keeps archive and scores
in a bucket of moto's server, ``gs`` in one of fake-gcs-server, both started here on 127.0.0.1
(tests/stores.py). The target is under 3 s on a local archive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import stores  # noqa: E402
from benchmark_scoring_state import HAPPY, NEUTRAL, train_model  # noqa: E402


def archive_url(where: str, local: Path, videos: int) -> str:
    """Put ``videos`` sample copies where the archive lives; returns its URL."""
    local.mkdir(parents=True)
    for i in range(videos):
        shutil.copy((HAPPY, NEUTRAL)[i % 2], local / f"{i:03d}.avi")
    if where == "local":
        return str(local)
    import fsspec

    bucket = stores.new_s3_bucket() if where == "s3" else stores.new_gcs_bucket()
    fs = fsspec.filesystem(where)
    for path in sorted(local.iterdir()):
        fs.put_file(str(path), f"{bucket}/videos/{path.name}")
    return f"{bucket}/videos"


def timed_process(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "jobs.score", *argv], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"jobs.score exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, done.stdout.strip().splitlines()[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--where", choices=["local", "s3", "gs"], default="local")
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.update(stores.GCS_CLIENT_ENV)
    server = {"local": None, "s3": stores.S3Server, "gs": stores.GcsServer}[args.where]
    server = server() if server else None
    os.environ.update(server.env if server else {})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model = train_model(work)
            archive = archive_url(args.where, work / "archive", args.videos)
            output = str(work / "scores") if args.where == "local" else archive.rsplit("/", 1)[0] + "/scores"
            job = ["--model", str(model), "--input", archive, "--output", output]
            first, line = timed_process(job)
            print(f"first night ({args.videos} videos scored): {first:.1f} s: {line}")
            times = []
            for _ in range(args.repeat):
                seconds, line = timed_process(job)
                times.append(seconds)
            print(f"nothing new, {args.where}, {args.videos} videos, {args.repeat} runs: median "
                  f"{statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s: {line}")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
