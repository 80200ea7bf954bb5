"""Clips a runner returned no row for: found, logged and recorded as error rows, never silently lost."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

NO_RESULT_ERROR = "no result came back from the runner"
"""The ``error`` of a clip's row when the runner gave nothing back for it."""


def clips_without_rows(expected: Sequence[str], returned: Iterable[str], what: str = "clips") -> list[str]:
    """The expected ids with no row among ``returned``, in the order expected; logged as an error."""
    done = set(returned)
    lost = [clip_id for clip_id in expected if clip_id not in done]
    if lost:
        log.error("%d %s came back without a row; recorded as errors", len(lost), what)
    return lost
