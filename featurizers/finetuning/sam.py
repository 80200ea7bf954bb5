"""Sharpness-aware minimisation (Foret et al., 2021) wrapped around any torch optimiser.

Each update takes two gradients. The first, at the current weights w, gives the direction in
which the loss climbs fastest; the weights are moved a distance ``rho`` that way, to
w + rho * g / ||g||. The second gradient is taken there, the weights are put back to w, and
the inner optimiser (Adam in the paper's recipe) steps with that second gradient. The update
thus favours weights whose whole neighbourhood has a low loss. HSEmotion's training notebook
used this scheme (its ``RobustOptimizer``) with rho 0.05.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class SharpnessAware(torch.optim.Optimizer):
    """Two-pass optimiser: call :meth:`climb` after the first backward, :meth:`step` after the second."""

    def __init__(self, params: Iterable[Any], inner: Callable[..., torch.optim.Optimizer], rho: float = 0.05,
                 **inner_options: Any) -> None:
        if rho <= 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        super().__init__(params, dict(rho=rho, **inner_options))
        # The inner optimiser shares our parameter groups, so a learning rate set on one is set on both.
        self.inner = inner(self.param_groups, **inner_options)

    @torch.no_grad()
    def climb(self) -> None:
        """Move every parameter to w + rho * g / ||g|| (g over all parameters together), remembering the offset."""
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                offset = p.grad * scale
                p.add_(offset)
                self.state[p]["offset"] = offset

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        """Put the weights back to w and let the inner optimiser step with the gradient taken at w + offset."""
        if closure is not None:
            raise ValueError("SharpnessAware takes its two gradients from the caller; no closure")
        for group in self.param_groups:
            for p in group["params"]:
                offset = self.state[p].pop("offset", None)
                if offset is not None:
                    p.sub_(offset)
        self.inner.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)


@contextmanager
def frozen_batch_norm_statistics(model: nn.Module) -> Iterator[None]:
    """Keep batch-norm running statistics unchanged (the second, perturbed forward of a SAM step)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved):
            m.momentum = momentum
