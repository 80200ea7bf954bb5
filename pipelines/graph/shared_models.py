"""One loaded model per worker process, whatever number of DoFn instances hold it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from apache_beam.utils import shared

T = TypeVar("T")


class _SharedValue:
    """Shared.acquire needs a weak-referenceable object; a loaded model may not be one."""

    def __init__(self, value: Any) -> None:
        self.value = value


def acquire_shared(handle: shared.Shared, make: Callable[[], T]) -> T:
    """The object ``make`` builds, once per worker process: every DoFn instance holding ``handle`` reuses it."""
    return handle.acquire(lambda: _SharedValue(make())).value
