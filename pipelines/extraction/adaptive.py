"""Adaptive frame rate for scoring: describe each window from few frames, more only where the classifier hesitates.

A schedule such as ``(18, 9, 1)`` is a list of frame steps, counted in the frames the model's own
sampling keeps (step 1 = every frame exact scoring describes). Every window (the whole clip
when windows are off) is first described from the frames on the coarsest grid: the frames whose
sampled position ``index // base_step`` is a multiple of 18. If the classifier's margin between its
top two classes reaches the threshold, the window is done; otherwise it is densified to the next
grid, adding only the frames the coarser grid did not hold (each step divides the one before, so
the grids nest and no frame is described twice), and so on to the last step, where it is done
whatever the margin. A window without a face has no prediction, so no margin: it is densified.

Grids are anchored at frame 0 of the clip, like the model's sampling, so a window's frames do not
depend on how the clip is cut. Pure and Beam-free; the describer that decodes and embeds the frames
each pass asks for is :mod:`pipelines.extraction.adaptive_describer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_SCHEDULE = (18, 9, 1)
DEFAULT_THRESHOLDS = {"decision_function": 0.05, "probability": 0.1}
"""The margin (top class score minus the second's) at which a window is done, per kind of class
score: LinearSVC and SVC margins (``decision_function``), forest probabilities. Calibrated by
``benchmarks/benchmark_adaptive.py`` (results in ``benchmarks/results/adaptive.json``): of a grid of
thresholds, the one with the fewest frames that kept at least 97 % of exact scoring's window labels
on the 720x576 AFEW-like benchmark clips, with models trained on the six sample clips. Margins
scale with the model: recalibrate for your own with ``benchmark_adaptive.py --model``."""

SCHEDULE_FLAG = "--adaptive"
THRESHOLD_FLAG = "--adaptive-threshold"


@dataclass(frozen=True)
class AdaptiveSettings:
    """A schedule of frame steps (coarsest first, each dividing the one before) and the margin threshold.

    ``threshold`` None means the calibrated default for the model's kind of score (:meth:`resolved`).
    """

    steps: tuple[int, ...] = DEFAULT_SCHEDULE
    threshold: float | None = None

    def __post_init__(self) -> None:
        check_schedule(self.steps)
        if self.threshold is not None:
            check_threshold(self.threshold)

    def resolved(self, score_kind: str) -> AdaptiveSettings:
        """These settings with the threshold set: the given one, else the default for ``score_kind``."""
        if self.threshold is not None:
            return self
        if score_kind not in DEFAULT_THRESHOLDS:
            raise ValueError(f"no default {THRESHOLD_FLAG} for class scores of kind {score_kind!r}; pass one")
        return AdaptiveSettings(self.steps, DEFAULT_THRESHOLDS[score_kind])

    def to_dict(self) -> dict[str, Any]:
        """What provenance records: the schedule and the threshold."""
        return {"schedule": list(self.steps), "threshold": self.threshold}


def check_schedule(steps: tuple[int, ...]) -> tuple[int, ...]:
    """A well-formed schedule: positive integers, strictly decreasing, each dividing the one before.

    The last step need not be 1: ``12,6,3`` never describes more than every third frame. Raises
    ValueError naming ``--adaptive``.
    """
    if not steps:
        raise ValueError(f"{SCHEDULE_FLAG} needs at least one frame step, e.g. 18,9,1")
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"{SCHEDULE_FLAG} steps must be positive integers, got {list(steps)}")
    for coarse, fine in zip(steps, steps[1:]):
        if fine >= coarse or coarse % fine:
            raise ValueError(f"{SCHEDULE_FLAG} steps must decrease, each dividing the one before (so the "
                             f"frames of a step hold those of the steps before), got {list(steps)}")
    return tuple(int(s) for s in steps)


def check_threshold(threshold: float) -> float:
    """A margin threshold: a finite number >= 0; raises ValueError naming ``--adaptive-threshold``."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"{THRESHOLD_FLAG} must be a finite margin >= 0, got {threshold!r}")
    return float(threshold)


def parse_schedule(text: str) -> tuple[int, ...]:
    """``"18,9,1"`` as ``(18, 9, 1)``; raises ValueError naming ``--adaptive``."""
    try:
        steps = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"{SCHEDULE_FLAG} must be comma-separated frame steps such as 18,9,1, got {text!r}") from None
    return check_schedule(steps)


def adaptive_from_flags(schedule: str | None, threshold: float | None) -> AdaptiveSettings | None:
    """The settings of ``--adaptive`` and ``--adaptive-threshold`` (None: exact scoring); ValueError naming the flag."""
    if schedule is None:
        if threshold is not None:
            raise ValueError(f"{THRESHOLD_FLAG} applies to adaptive scoring only: add {SCHEDULE_FLAG} 18,9,1")
        return None
    return AdaptiveSettings(parse_schedule(schedule), None if threshold is None else check_threshold(threshold))


def next_level(steps: tuple[int, ...], level: int, margin: float | None, threshold: float) -> int | None:
    """The decision for one window described at ``steps[level]``: None when it is done, else the next level.

    Done when the classifier's top-two margin (None: no face, so no prediction) reaches
    ``threshold``, or at the last step whatever the margin.
    """
    if level >= len(steps) - 1:
        return None
    if margin is not None and margin >= threshold:
        return None
    return level + 1


def on_grid(sampled: np.ndarray, base_step: int, step: int) -> np.ndarray:
    """Which sampled frames (native indices, multiples of ``base_step``) lie on the grid of ``step``."""
    return (np.asarray(sampled, np.int64) // base_step) % step == 0


class AdaptivePlan:
    """Which frames each pass describes, and which windows are done, for one clip.

    All windows still open are at the same level: every pass densifies them together, so a clip
    is decoded at most once per step of the schedule.
    """

    def __init__(self, steps: tuple[int, ...], sampled: np.ndarray, base_step: int, units: np.ndarray) -> None:
        self.steps = check_schedule(steps)
        self.sampled = np.asarray(sampled, np.int64)
        self.base_step = int(base_step)
        self.units = np.asarray(units, np.int64)
        if self.units.shape != self.sampled.shape:
            raise ValueError("one unit (window) per sampled frame")
        self.level = 0
        self.open = set(int(u) for u in np.unique(self.units))
        self.final_step: dict[int, int] = {}
        """The step each finished window ended at."""

    @property
    def finished(self) -> bool:
        return not self.open

    def wanted(self) -> np.ndarray:
        """Native indices this pass describes: the open windows' frames on this level's grid, less the
        frames earlier levels described (the coarser grid holds them)."""
        if self.finished:
            return np.zeros(0, np.int64)
        mask = np.isin(self.units, list(self.open)) & on_grid(self.sampled, self.base_step, self.steps[self.level])
        if self.level > 0:
            mask &= ~on_grid(self.sampled, self.base_step, self.steps[self.level - 1])
        return self.sampled[mask]

    def settle(self, margins: dict[int, float | None], threshold: float) -> None:
        """Decide each open window from its margin after this pass (missing or None: no face); next level."""
        step = self.steps[self.level]
        for unit in sorted(self.open):
            if next_level(self.steps, self.level, margins.get(unit), threshold) is None:
                self.final_step[unit] = step
                self.open.discard(unit)
        self.level += 1

    def available(self) -> dict[int, int]:
        """Each window's frames at the model's sampling: what exact scoring describes."""
        units, counts = np.unique(self.units, return_counts=True)
        return {int(u): int(c) for u, c in zip(units, counts)}
