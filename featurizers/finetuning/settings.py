"""The fine-tuning recipe, apart from the training loop (featurizers/finetuning/training.py) so that
``jobs.finetune --help`` shows its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FinetuneSettings:
    """The training recipe; defaults are the author's (AffectNet notebook), batch size ours."""

    head_epochs: int = 3
    head_lr: float = 1e-3
    full_epochs: int = 6
    full_lr: float = 1e-4
    batch_size: int = 32
    rho: float = 0.05
    label_smoothing: float = 0.0
    augment: bool = False
    """Horizontal flip, a crop of 85-100 % of the side and +-10 % brightness/contrast; off as in the paper."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head_epochs < 0 or self.full_epochs < 0 or self.head_epochs + self.full_epochs == 0:
            raise ValueError("need at least one epoch (--head-epochs, --full-epochs)")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
