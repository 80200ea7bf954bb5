"""Test-only fail points: named places where a test can make the process die as ``kill -9`` would.

``EMOTIW_FAIL_POINT=name`` makes the process SIGKILL itself the first time it reaches
:func:`fail_point` ``(name)``; ``name@N`` the N-th time. Unset (always, outside tests) a fail
point costs one dictionary lookup. It lets a test kill a job at an exact step of a commit, which
no timing from outside can hit reliably.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

ENV = "EMOTIW_FAIL_POINT"
_reached: Counter[str] = Counter()


def fail_point(name: str) -> None:
    """SIGKILL this process here when ``$EMOTIW_FAIL_POINT`` names this point (and this is its N-th pass)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        print(f"fail point {wanted}: killing process {os.getpid()}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
