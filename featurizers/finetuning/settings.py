"""The fine-tuning recipe, apart from the training loop (featurizers/finetuning/training.py) so that
``jobs.finetune --help`` shows its defaults without importing torch.

Every check names the command-line flag that sets the value, so the job can report a bad value
(exit code 2) before it loads a network or an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BatchNormMode = Literal["batch", "paper", "frozen"]
BATCH_NORM_MODES: tuple[BatchNormMode, ...] = ("batch", "paper", "frozen")
"""``--batch-norm``, the statistics batch norm normalises with in each phase.

``batch``: each batch's own statistics in both phases, so the features the head learns on in
the head phase are those the full phase goes on training; the running statistics (used for
validation and at inference) are first measured on the training faces (one pass without
gradients, as AdaBN does), stay fixed in the head phase and follow the batches in the full
phase. ``paper``: the base's running statistics (ImageNet's, say) in the head phase, each
batch's own in the full phase, as in the paper and the author's notebook; the features change
at the switch, and the first full epoch undoes part of the head phase. ``frozen``: the base's
running statistics throughout, never updated (only batch norm's scales and offsets learn);
measured to diverge on the synthetic task (benchmarks/benchmark_finetune_recipe.py).
"""
PRECISIONS = ("auto", "float32", "float16", "bfloat16")
"""``--precision``: auto is float16 mixed precision on a GPU, float32 on the CPU."""


@dataclass(frozen=True)
class FaceAugmentation:
    """How much a training face may change (drawn anew for every face in every epoch).

    Small enough that the expression stays what its label says: a face detector's crop already
    varies this much from frame to frame. Inference never uses any of it.
    """

    flip: bool = True
    """Mirror left-right with probability 0.5 (expressions are symmetric classes)."""
    max_scale: float = 0.1
    """Zoom by a factor in [1 - max_scale, 1 + max_scale]."""
    max_shift: float = 0.06
    """Shift by up to this fraction of the width and height."""
    max_rotation: float = 10.0
    """Rotate by up to this many degrees either way."""
    max_brightness: float = 0.2
    """Scale the mean intensity by a factor in [1 - max_brightness, 1 + max_brightness]."""
    max_contrast: float = 0.2
    """Scale deviations from the mean by a factor in [1 - max_contrast, 1 + max_contrast]."""

    def __post_init__(self) -> None:
        for name in ("max_scale", "max_shift", "max_brightness", "max_contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"augmentation {name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.max_rotation <= 45:
            raise ValueError(f"augmentation max_rotation must be in [0, 45] degrees, got {self.max_rotation}")


@dataclass(frozen=True)
class FinetuneSettings:
    """The training recipe. Epochs, learning rates and rho are the author's (AffectNet notebook);
    batch size, augmentation, batch norm's statistics and the warm-up of the full phase are ours,
    chosen from the measurements in ``benchmarks/benchmark_finetune_recipe.py``."""

    head_epochs: int = 3
    head_lr: float = 1e-3
    full_epochs: int = 6
    full_lr: float = 1e-4
    batch_size: int = 32
    rho: float = 0.05
    label_smoothing: float = 0.0
    augment: bool = True
    augmentation: FaceAugmentation = field(default_factory=FaceAugmentation)
    mixup: float = 0.0
    """Beta(alpha, alpha) of mixup (blend two faces and their labels); 0 = off."""
    cutmix: float = 0.0
    """Beta(alpha, alpha) of cutmix (paste a box of another face); 0 = off. With both on, each
    batch takes one of the two at random."""
    batch_norm: BatchNormMode = "batch"
    """Which statistics batch norm uses in each phase: see :data:`BATCH_NORM_MODES`."""
    warmup_epochs: float = 0.0
    """The full phase's learning rate rises linearly from 0 over this many epochs (off: measured to
    bring nothing once batch norm no longer changes at the switch)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head_epochs < 0 or self.full_epochs < 0 or self.head_epochs + self.full_epochs == 0:
            raise ValueError("--head-epochs and --full-epochs must be >= 0 and not both 0")
        for flag, value in (("--head-lr", self.head_lr), ("--full-lr", self.full_lr), ("--rho", self.rho)):
            if not value > 0:
                raise ValueError(f"{flag} must be > 0, got {value}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        for flag, value in (("--mixup", self.mixup), ("--cutmix", self.cutmix)):
            if not 0 <= value <= 10:
                raise ValueError(f"{flag} (a Beta distribution's alpha) must be in [0, 10], 0 for off; got {value}")
        if self.batch_norm not in BATCH_NORM_MODES:
            raise ValueError(f"--batch-norm must be one of {BATCH_NORM_MODES}, got {self.batch_norm!r}")
        if self.warmup_epochs < 0 or (self.full_epochs and self.warmup_epochs > self.full_epochs):
            raise ValueError(f"--warmup-epochs must be between 0 and --full-epochs ({self.full_epochs}), "
                             f"got {self.warmup_epochs}")

    @property
    def total_epochs(self) -> int:
        return self.head_epochs + self.full_epochs

    def phase_of(self, epoch: int) -> str:
        """``head`` or ``full`` for an epoch counted over both phases from 1."""
        if not 1 <= epoch <= self.total_epochs:
            raise ValueError(f"epoch {epoch} outside 1..{self.total_epochs}")
        return "head" if epoch <= self.head_epochs else "full"


SETTING_FLAGS = {
    "head_epochs": "--head-epochs", "head_lr": "--head-lr", "full_epochs": "--full-epochs", "full_lr": "--full-lr",
    "batch_size": "--batch-size", "rho": "--rho", "label_smoothing": "--label-smoothing", "augment": "--augment",
    "augmentation": "--augment", "mixup": "--mixup", "cutmix": "--cutmix", "batch_norm": "--batch-norm",
    "warmup_epochs": "--warmup-epochs", "seed": "--seed",
}
"""The flag that sets each field, to name it in messages (e.g. a resumed run's changed flags)."""
