"""Small typed records that cross module boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    """A clip's row of the descriptor table, and its per-face rows when they were asked for."""

    row: dict[str, Any]
    face_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    """Time the worker spent on the clip, for progress reporting."""
