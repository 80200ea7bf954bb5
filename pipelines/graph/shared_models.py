"""Loaded models shared by the DoFns of a worker process, within a job and across the jobs it runs.

Within one job, Beam's :class:`~apache_beam.utils.shared.Shared` gives every DoFn instance that
holds the same handle one loaded object. A worker process that runs job after job (a long-lived
Dask worker scoring night after night, a notebook, the test suite) would still load the networks
again for each job, since each job brings new handles; :func:`acquire_shared` with a ``key`` keeps
the most recently used models of the process by what they are (their settings and weights file),
so a second job with the same settings reuses them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from apache_beam.utils import shared

T = TypeVar("T")

KEEP_LOADED = 2
"""Models kept per process beyond the job that loaded them: enough for a job and its successor."""

_loaded: OrderedDict[Hashable, Any] = OrderedDict()
_loading = threading.Lock()


class _SharedValue:
    """Shared.acquire needs a weak-referenceable object; a loaded model may not be one."""

    def __init__(self, value: Any) -> None:
        self.value = value


def acquire_shared(handle: shared.Shared, make: Callable[[], T], key: Hashable | None = None) -> T:
    """The object ``make`` builds, once per worker process: every DoFn instance holding ``handle`` reuses it,
    and with ``key``, so does every later job of this process asking for the same key."""
    if key is None:
        return handle.acquire(lambda: _SharedValue(make())).value
    return handle.acquire(lambda: _SharedValue(_loaded_once(key, make))).value


def _loaded_once(key: Hashable, make: Callable[[], T]) -> T:
    with _loading:  # one load at a time: two threads asking for the same model load it once
        if key in _loaded:
            _loaded.move_to_end(key)
            return _loaded[key]
        value = make()
        _loaded[key] = value
        while len(_loaded) > KEEP_LOADED:
            _loaded.popitem(last=False)
        return value
