"""How much of the MTCNN cascade runs on each frame: exact (all of it, every frame) or a faster mode.

Read by the command lines and recorded in the provenance, so it imports nothing heavy. Exact is
the default everywhere; a faster mode is only ever what a user asked for.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DetectionMode:
    """``detect_every``: the full cascade runs on every N-th sampled frame, and the faces found are
    followed between them by the cascade's last stages on a crop around each (1: every frame).
    ``max_side``: P-Net's pyramid never looks at the frame larger than this longer side (None: off);
    R-Net and O-Net still crop the full-resolution frame."""

    detect_every: int = 1
    max_side: int | None = None

    @property
    def exact(self) -> bool:
        return self.detect_every == 1 and self.max_side is None

    def check(self, min_face_size: int, whose: str = "--min-face-size") -> None:
        """Raise ValueError naming the flag when a value cannot work with this minimum face size
        (``whose``: where that size comes from, for the message)."""
        if not isinstance(self.detect_every, int) or self.detect_every < 1:
            raise ValueError(f"--detect-every must be an integer >= 1 (1: detect on every frame), "
                             f"got {self.detect_every}")
        if self.max_side is not None and self.max_side < min_face_size:
            raise ValueError(f"--detect-max-side must be at least the minimum face size ({min_face_size} px, "
                             f"{whose}), got {self.max_side}")

    def to_dict(self) -> dict[str, object]:
        """The provenance record: the mode's name and its settings."""
        return {"mode": describe_mode(self), "detect_every": self.detect_every, "max_side": self.max_side}


EXACT = DetectionMode()


def describe_mode(mode: DetectionMode) -> str:
    """A short name users can compare: ``exact``, ``every-5``, ``max-side-640`` or both joined."""
    parts = []
    if mode.detect_every != 1:
        parts.append(f"every-{mode.detect_every}")
    if mode.max_side is not None:
        parts.append(f"max-side-{mode.max_side}")
    return "+".join(parts) or "exact"


def mode_from_record(record: dict[str, object] | None) -> DetectionMode:
    """The mode a provenance records; a table made before modes existed was exact."""
    if not record:
        return EXACT
    every = record.get("detect_every", 1)
    side = record.get("max_side")
    return DetectionMode(int(every) if isinstance(every, (int, float)) else 1,
                         int(side) if isinstance(side, (int, float)) else None)
