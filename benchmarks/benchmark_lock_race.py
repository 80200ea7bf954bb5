"""Many runs racing for one stale lock: how many of them hold it, round after round.

    python benchmarks/benchmark_lock_race.py --where local --processes 4 --rounds 150
    python benchmarks/benchmark_lock_race.py --where s3 --processes 8 --rounds 150 --think-ms 1
    python benchmarks/benchmark_lock_race.py --where gs --processes 8 --rounds 150 --think-ms 1

Each round leaves a stale ``_lock.json`` (a run on this host whose process is gone, or one on
another host whose heartbeat stopped), then releases ``--processes`` worker processes at one
instant to call ``pipelines.scoring.run_lock.acquire`` on the same output (tests/lock_race.py). Every
round must have exactly one holder. ``--think-ms`` pauses each worker between reading the
lock and acting on it, as a slow disk or a busy host would; on a machine with few cores the
processes otherwise seldom overlap. ``s3`` runs against moto's server, ``gs`` against
fake-gcs-server, both started here on 127.0.0.1 (tests/stores.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import stores
from lock_race import race


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--where", choices=["local", "s3", "gs"], default="local")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="pause between reading the stale lock and acting on it (widens the race window)")
    parser.add_argument("--save", type=Path, help="add this run's figures to a JSON file (a list of runs)")
    args = parser.parse_args(argv)
    os.environ.update(stores.GCS_CLIENT_ENV)
    server = {"local": None, "s3": stores.S3Server, "gs": stores.GcsServer}[args.where]
    server = server() if server else None
    env = server.env if server else {}
    os.environ.update(env)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.where == "local":
                output = str(Path(tmp, "scores"))
            else:
                output = (stores.new_s3_bucket() if args.where == "s3" else stores.new_gcs_bucket()) + "/scores"
            started = time.perf_counter()
            holders = race(output, args.processes, args.rounds, think_s=args.think_ms / 1000, env=env)
            took = time.perf_counter() - started
    finally:
        if server:
            server.stop()
    counts = collections.Counter(holders)
    print(f"{args.where}: {args.rounds} rounds of {args.processes} processes for one stale lock "
          f"(pause {args.think_ms:g} ms between reading and acting), {took:.1f} s")
    for n in sorted(counts):
        print(f"  {counts[n]:4d} rounds with {n} holder{'s' if n != 1 else ''}")
    print(f"  rounds with 2 or more holders: {sum(c for n, c in counts.items() if n >= 2)}")
    if args.save:
        runs = json.loads(args.save.read_text()) if args.save.exists() else []
        runs.append({"where": args.where, "processes": args.processes, "rounds": args.rounds,
                     "think_ms": args.think_ms, "seconds": round(took, 1), "cpus": os.cpu_count(),
                     "rounds_by_holders": {str(n): counts[n] for n in sorted(counts)}})
        args.save.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
