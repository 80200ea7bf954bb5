"""One run at a time on an output: a lock with a heartbeat, taken and kept only by conditional writes.

The lock is ``<output>/_lock.json``: who holds it (run id, host, pid), since when, and a
heartbeat the holder rewrites every minute. Every write of it is conditional on the version
last read (:mod:`common.stores.versioned_file`: ``If-Match`` on S3, ``ifGenerationMatch`` on GCS,
claim-and-rename on a local disk), so of many runs that find the same stale lock at the same
instant exactly one takes it, and a holder whose lock was taken over learns it at its next
heartbeat instead of overwriting the new holder.

A lock is free when it is absent or released, and stale when its heartbeat is older than the
stale time (10 minutes by default; judged on any host, so clocks must roughly agree) or when its
process is gone: the pid is only looked up when the holder ran in the same pid namespace of the
same boot of this machine, where a pid means this process (not another container's). Released
locks stay as a file saying who released them and when.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from common.stores import storage
from common.stores.versioned_file import Version, VersionConflict, VersionedFile, versioned_file

log = logging.getLogger(__name__)

LOCK_FILE = "_lock.json"
DEFAULT_STALE_MINUTES = 10.0
HEARTBEAT_EVERY_S = 60.0
"""The holder's heartbeat period (a quarter of the stale time when that is under 4 minutes)."""
PENDING_WAIT_S = 0.5
"""How long to wait for another run's half-done write of a local lock (it takes microseconds)."""
MAX_TRIES = 200
"""Reads of the lock one acquire makes at most (each retry follows another run's write or a pending one)."""


class LockHeld(RuntimeError):
    """Another run holds the output; the message says which and since when."""


class LockLost(RuntimeError):
    """Another run took this run's lock over (it judged this run dead); this run must not commit."""


def pid_space() -> str:
    """Where a pid names one process: this boot of this machine and this pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:  # no /proc: the host name is the best there is
        return socket.gethostname()


def _heartbeat_every(stale_s: float) -> float:
    return min(HEARTBEAT_EVERY_S, stale_s / 4)


def _now_text(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def stale_reason(owner: dict[str, Any], *, now: float, stale_s: float, space: str,
                 pending: bool = False) -> str | None:
    """Why a lock may be taken (released, stale, its process gone), or None while its holder may be running.

    ``pending``: the record is being written by another run (a local claim not yet renamed); even
    a release is only final once written, so only a dead or silent writer lets it be taken.
    """
    if owner.get("released") is True and not pending:
        return "it was released"
    beat = owner.get("heartbeat_unix", owner.get("started_unix"))  # started_unix: a lock of an older version
    if not isinstance(beat, (int, float)):
        return "the lock file is unreadable"
    pid = owner.get("pid")
    if owner.get("pid_space") == space and isinstance(pid, int) and not _process_alive(pid):
        return f"its process {pid} on {owner.get('host')} is gone"
    every = owner.get("heartbeat_every_s")
    if isinstance(every, (int, float)):  # never judged between two beats of a holder that beats less often
        stale_s = max(stale_s, 3 * every)
    if now - beat > stale_s:
        return f"its last heartbeat was {(now - beat) / 60:.1f} min ago (stale after {stale_s / 60:g} min)"
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _parse(data: bytes) -> dict[str, Any]:
    try:
        owner = json.loads(data)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any], now: float) -> str:
    beat = owner.get("heartbeat_unix")
    ago = f", last heartbeat {now - beat:.0f} s ago" if isinstance(beat, (int, float)) else ""
    return (f"run {owner.get('run_id')} (pid {owner.get('pid')} on {owner.get('host')}, "
            f"since {owner.get('started')}{ago})")


class RunLock:
    """The lock this run holds: its heartbeat, the check before a commit, the release."""

    def __init__(self, file: VersionedFile, record: dict[str, Any], version: Version, stale_s: float) -> None:
        self.url = file.url
        self.run_id: str = record["run_id"]
        self.stale_s = stale_s
        self._file = file
        self._record = record
        self._version = version
        self._mutex = threading.Lock()  # the heartbeat thread and the run's own calls write in turn
        self._lost: str | None = None
        self._released = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def heartbeat_every_s(self) -> float:
        return _heartbeat_every(self.stale_s)

    def refresh(self) -> None:
        """Write a new heartbeat, on condition that the lock is still the one this run wrote.

        Raises LockLost when another run has taken the lock over; OSError when the store
        cannot be reached (the lock may still be ours: try again later).
        """
        with self._mutex:
            if self._lost is not None:
                raise LockLost(self._lost)
            now = time.time()
            record = {**self._record, "heartbeat": _now_text(now), "heartbeat_unix": now,
                      "beat": self._record["beat"] + 1}
            self._version = self._write(record)
            self._record = record

    def confirm(self) -> None:
        """Raise LockLost unless this run still holds the lock; called just before a commit.

        It is a heartbeat written now, so the commit that follows has a whole stale time
        before any other run may judge this one dead.
        """
        self.refresh()

    def start_heartbeat(self) -> None:
        """Refresh the heartbeat in a daemon thread until release."""
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_every_s):
            try:
                self.refresh()
            except LockLost as exc:
                log.error("%s; this run will stop before it commits", exc)
                return
            except OSError as exc:
                log.warning("could not refresh the heartbeat of %s (%s); trying again in %.0f s", self.url, exc,
                            self.heartbeat_every_s)

    def release(self) -> None:
        """Mark the lock released, if it is still ours; never raises (the run's outcome is already decided)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            if self._released:
                return
            self._released = True
            if self._lost is not None:
                log.warning("%s; it is left to that run", self._lost)
                return
            now = time.time()
            try:
                self._write({**self._record, "released": True, "released_at": _now_text(now),
                             "heartbeat_unix": now, "beat": self._record["beat"] + 1})
            except LockLost as exc:
                log.warning("%s; it is left to that run", exc)
            except OSError as exc:
                log.warning("could not release %s (%s); other runs will take it once it is stale", self.url, exc)

    def _write(self, record: dict[str, Any]) -> Version:
        data = json.dumps(record, indent=2).encode()
        try:
            return self._file.replace(self._version, data)
        except VersionConflict:
            current = self._file.read()
            if current is not None and current.data == data:  # a retried request that had landed
                return current
            now = time.time()
            self._lost = (f"the lock {self.url} of run {self.run_id} was taken over by "
                          f"{_describe(_parse(current.data), now) if current else 'a run that then removed it'}")
            raise LockLost(self._lost) from None


def acquire(output: str, run_id: str, stale_s: float = DEFAULT_STALE_MINUTES * 60) -> RunLock:
    """Take the output's lock or raise LockHeld at once (no waiting: a scheduler retries tomorrow).

    The lock is taken when it is absent, released or stale, by a conditional write: of runs
    racing for it, the one whose write holds goes on and the others find it held.
    """
    file = versioned_file(storage.join(output, LOCK_FILE))
    now = time.time()
    record = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "pid_space": pid_space(),
              "started": _now_text(now), "started_unix": now, "heartbeat": _now_text(now),
              "heartbeat_unix": now, "beat": 0, "heartbeat_every_s": _heartbeat_every(stale_s)}
    data = json.dumps(record, indent=2).encode()
    waited_since = None
    for _ in range(MAX_TRIES):
        current = file.read()
        if current is not None and current.data == data:  # our own write, answered as a conflict and retried
            return RunLock(file, record, current, stale_s)
        if current is not None and current.pending:
            waited_since = waited_since or time.monotonic()
            if time.monotonic() - waited_since < PENDING_WAIT_S:
                time.sleep(0.02)  # another run is between its claim and its rename: microseconds
                continue
        reason = None
        if current is not None:
            held = _parse(current.data)
            reason = stale_reason(held, now=time.time(), stale_s=stale_s, space=record["pid_space"],
                                  pending=current.pending)
            if reason is None:
                raise LockHeld(f"another {_describe(held, time.time())} holds {file.url}; "
                               "this run exits without doing anything")
        try:
            version = file.create(data) if current is None else file.replace(current, data)
        except VersionConflict:
            continue  # another run wrote first: look again (it is most likely held now)
        if current is not None and reason != "it was released":
            log.warning("took over the lock %s of run %s: %s", file.url, held.get("run_id"), reason)
        return RunLock(file, record, version, stale_s)
    raise LockHeld(f"{file.url} kept changing while this run tried to take it; this run exits without doing anything")
