"""Small typed records that cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClipRef:
    """One input clip as listed by the job; ``problem`` is set when it is known bad before decoding."""

    clip_id: str
    path: str
    dataset: str
    split: str | None = None
    label: str | None = None
    label_index: int | None = None
    problem: str | None = None


@dataclass
class ClipResult:
    """A clip's row of the descriptor table (per-face rows are written as the clip streams, not carried)."""

    row: dict[str, Any]
    seconds: float = 0.0
    """Time the worker spent on the clip, for progress reporting."""
