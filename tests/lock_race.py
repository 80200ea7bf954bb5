"""Many real processes racing for one stale run lock, round after round; how many hold it each round.

Used by tests/pipelines/test_run_lock.py and benchmarks/benchmark_lock_race.py. Each round the
parent leaves a stale ``_lock.json`` (alternately: a run on this host whose process is gone, and
a run on another host whose heartbeat stopped an hour ago), then releases every worker at the
same instant (a barrier, then a sleep to one shared start time) to call
``pipelines.scoring.run_lock.acquire``. A worker holds the lock when ``acquire`` returns; holders
release once every worker has tried. ``think_s`` pauses each worker between reading the lock
and acting on it (inside the staleness judgement), as a slow disk or a busy host would: with
two CPU cores the processes seldom overlap otherwise.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from typing import Any

START_DELAY_S = 0.02


def leave_stale_lock(output: str, round_no: int, dead_pid: int) -> None:
    """Write the lock of a run that will never release it (the parent plays that run)."""
    from common.stores import storage
    from common.stores.versioned_file import versioned_file
    from pipelines.scoring import run_lock

    now = time.time()
    if round_no % 2:
        owner = {"run_id": f"crashed-before-round{round_no}", "host": socket.gethostname(), "pid": dead_pid,
                 "pid_space": run_lock.pid_space(), "heartbeat_unix": now, "beat": 0}
    else:
        owner = {"run_id": f"silent-before-round{round_no}", "host": "another-host", "pid": 1,
                 "pid_space": "another-host", "heartbeat_unix": now - 3600, "beat": 0}
    file = versioned_file(storage.join(output, run_lock.LOCK_FILE))
    data = json.dumps(owner).encode()
    current = file.read()
    if current is None:
        file.create(data)
    else:
        file.replace(current, data)


def _worker(index: int, output: str, rounds: int, think_s: float, env: dict[str, str], sync: dict[str, Any],
            results: Any, quiet: bool) -> None:
    os.environ.update(env)  # the store's endpoint: the fork server may have started before it was set
    if quiet:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the process: each round's take-over warning
    from pipelines.scoring import run_lock

    if think_s:
        judge = run_lock.stale_reason

        def slow_judge(*args: Any, **kwargs: Any) -> Any:
            time.sleep(think_s)
            return judge(*args, **kwargs)

        run_lock.stale_reason = slow_judge
    for round_no in range(rounds):
        sync["start"].wait()
        time.sleep(max(0.0, sync["start_at"].value - time.time()))  # every worker wakes on the same tick
        lock, error = None, None
        try:
            lock = run_lock.acquire(output, f"round{round_no}-worker{index}")
        except run_lock.LockHeld:
            pass
        except Exception as exc:  # noqa: BLE001 - a store error is reported, not counted as a refusal
            error = f"{type(exc).__name__}: {exc}"
        results.put((index, lock is not None, error))
        sync["tried"].wait()
        if lock is not None:
            lock.release()
        sync["released"].wait()


def race(output: str, processes: int, rounds: int, *, think_s: float = 0.0, env: dict[str, str] | None = None,
         quiet: bool = True) -> list[int]:
    """The number of holders in each of ``rounds`` races of ``processes`` workers for ``output``'s lock.

    Raises RuntimeError when a worker met an error other than finding the lock held.
    """
    context = multiprocessing.get_context("forkserver")
    # Imported once in the fork server, not in every worker. Not this project's own modules: the
    # fork server does not take this process's sys.path, and could find another checkout's.
    context.set_forkserver_preload(["pandas", "fsspec", "s3fs", "gcsfs"])
    sync = {name: context.Barrier(processes + 1) for name in ("start", "tried", "released")}
    sync["start_at"] = context.Value("d", 0.0)
    results = context.Queue()
    workers = [context.Process(target=_worker, daemon=True,
                               args=(i, output, rounds, think_s, dict(env or {}), sync, results, quiet))
               for i in range(processes)]
    for worker in workers:
        worker.start()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holders, errors = [], []
    try:
        for round_no in range(rounds):
            leave_stale_lock(output, round_no, dead.pid)
            sync["start_at"].value = time.time() + START_DELAY_S
            sync["start"].wait(timeout=60)
            outcomes = [results.get(timeout=60) for _ in range(processes)]
            sync["tried"].wait(timeout=60)
            sync["released"].wait(timeout=60)
            holders.append(sum(held for _, held, _ in outcomes))
            errors += [f"round {round_no}, worker {i}: {error}" for i, _, error in outcomes if error]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
    if errors:
        raise RuntimeError("; ".join(errors[:5]))
    return holders
