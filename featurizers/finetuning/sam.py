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
    def climb(self) -> bool:
        """Move every parameter to w + rho * g / ||g|| (g over all parameters together), remembering the offset.

        The direction does not depend on a loss scale (mixed precision), so the gradients may
        still be scaled. Gradients that overflowed (not finite) give no direction: nothing
        moves, and False says so.
        """
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return False
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm):
            return False
        for group in self.param_groups:
            scale = group["rho"] / (norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                offset = p.grad * scale
                p.add_(offset)
                self.state[p]["offset"] = offset
        return True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the weights back to w (keeping the gradients taken at w + offset)."""
        for group in self.param_groups:
            for p in group["params"]:
                offset = self.state[p].pop("offset", None)
                if offset is not None:
                    p.sub_(offset)

    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        """Back to w, then the inner optimiser steps with the gradient taken at w + offset.

        With a loss scaler, call :meth:`restore` and then ``scaler.step(optimiser.inner)``
        instead: the scaler may skip the inner step, but the weights must come back either way.
        """
        if closure is not None:
            raise ValueError("SharpnessAware takes its two gradients from the caller; no closure")
        self.restore()
        self.inner.step()

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The inner optimiser's state (Adam's moments); between updates SAM itself holds none."""
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.inner.load_state_dict(state_dict["inner"])
        # Loading gives the inner optimiser new group dicts; share them again, so that a learning
        # rate set through this optimiser still reaches the inner one.
        self.param_groups = self.inner.param_groups

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
