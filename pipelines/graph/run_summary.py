"""What a run did, as every job prints it and stores it beside its output (``_summary.json``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def status_counts(statuses: Iterable[str], names: Iterable[str]) -> dict[str, int]:
    """How many of each named status (a name never seen counts 0), in the order of ``names``."""
    counts = Counter(statuses)
    return {name: counts.get(name, 0) for name in names}


@dataclass
class RunSummary:
    """Clips and their outcomes, time, and every failure with its reason.

    ``counts`` holds the outcome counts in the order the summary line names them, e.g.
    ``{"ok": 5, "faceless": 1, "error": 0}``; ``labels`` renames them for the line (``error``
    reads "failed"). ``frames`` is set by jobs that count frames, and adds frames per second.
    """

    clips: int
    counts: dict[str, int]
    seconds: float
    runner: str | None = None
    frames: int | None = None
    warnings: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=lambda: {"error": "failed"})
    produced: tuple[str, int] | None = None
    """What the run made besides rows, named and counted (``("face images", 250)``): shown before the
    outcome counts, and stored under the name's last word (``images``)."""

    @property
    def error(self) -> int:
        return self.counts.get("error", 0)

    @property
    def frames_per_second(self) -> float:
        return (self.frames or 0) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"clips": self.clips}
        if self.produced is not None:
            data[self.produced[0].split()[-1]] = self.produced[1]
        data.update(**self.counts, seconds=round(self.seconds, 2))
        if self.frames is not None:
            data.update(frames=self.frames, frames_per_second=round(self.frames_per_second, 2))
        if self.runner is not None:
            data["runner"] = self.runner
        data.update(warnings=self.warnings, failures=self.failures)
        return data

    def line(self) -> str:
        counts = ", ".join(f"{n} {self.labels.get(name, name)}" for name, n in self.counts.items())
        head = f"{self.produced[1]} {self.produced[0]}; " if self.produced else ""
        if self.frames is None:
            return f"{self.clips} clips: {head}{counts}; {self.seconds:.1f} s"
        return (f"{self.clips} clips: {head}{counts}; {self.frames} frames in {self.seconds:.1f} s "
                f"({self.frames_per_second:.1f} frames/s)")
