"""One run at a time on an output: a lock file created only if absent, taken over when stale.

The lock is ``<output>/_lock.json`` holding who took it (host, pid, run id, UTC time). It is
created with an exclusive create: ``O_EXCL``-style on a local disk, a conditional PUT
(``If-None-Match: *``) on S3, so two runs racing for it cannot both win. A lock is stale when
its process is gone (same host only: a pid means nothing elsewhere) or when it is older than
the timeout; a stale lock is removed with a warning and taken. Two runs that find the same
stale lock at the same instant may, in a window of milliseconds, both remove it; the
exclusive create still lets only one of them in.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from common import storage

log = logging.getLogger(__name__)

LOCK_FILE = "_lock.json"
DEFAULT_LOCK_TIMEOUT_S = 24 * 3600.0
"""A lock older than this is taken as left by a run that died on another machine."""


class LockHeld(RuntimeError):
    """Another run holds the output; the message says which and since when."""


@dataclass(frozen=True)
class RunLock:
    url: str
    owner: dict[str, Any]

    def release(self) -> None:
        """Remove the lock if it is still ours (a run that overran the timeout may have lost it)."""
        try:
            current = json.loads(storage.read_bytes(self.url))
        except (OSError, ValueError):
            return
        if current.get("run_id") == self.owner["run_id"]:
            storage.remove(self.url)
        else:
            log.warning("the lock %s was taken over by run %s while this run was going", self.url,
                        current.get("run_id"))


def stale_reason(owner: dict[str, Any], *, now: float, timeout_s: float, host: str) -> str | None:
    """Why a lock's owner is taken as dead, or None while it may still be running."""
    started = owner.get("started_unix")
    if not isinstance(started, (int, float)):
        return "the lock file is unreadable"
    if now - started > timeout_s:
        return f"it is {(now - started) / 3600:.1f} h old (timeout {timeout_s / 3600:.1f} h)"
    pid = owner.get("pid")
    if owner.get("host") == host and isinstance(pid, int) and not _process_alive(pid):
        return f"its process {pid} on {host} is gone"
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def acquire(output: str, run_id: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> RunLock:
    """Take the output's lock or raise LockHeld at once (no waiting: a scheduler retries tomorrow)."""
    url = storage.join(output, LOCK_FILE)
    host = socket.gethostname()
    owner = {"run_id": run_id, "host": host, "pid": os.getpid(), "started_unix": time.time(),
             "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    data = json.dumps(owner, indent=2).encode()
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            storage.write_bytes(url, data, exclusive=True)
            return RunLock(url, owner)
        except FileExistsError:
            pass
        try:
            held = json.loads(storage.read_bytes(url))
        except FileNotFoundError:
            continue  # released between our create and our read
        except (OSError, ValueError):
            held = {}
        reason = stale_reason(held, now=time.time(), timeout_s=timeout_s, host=host)
        if reason is None:
            raise LockHeld(f"another run ({held.get('run_id')}, pid {held.get('pid')} on {held.get('host')}, "
                           f"since {held.get('started')}) holds {url}; this run exits without doing anything")
        log.warning("taking over the lock %s of run %s: %s", url, held.get("run_id"), reason)
        storage.remove(url)
    raise LockHeld(f"another run took {url} while this one was taking over a stale lock")
