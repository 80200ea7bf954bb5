"""Sharpness-aware minimisation: the climb, the return, and the step of the inner optimiser."""

import pytest
import torch
from torch import nn

from featurizers.finetuning.sam import SharpnessAware, frozen_batch_norm_statistics


def test_climb_moves_rho_along_the_normalised_gradient_and_step_comes_back_before_stepping():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    optimiser = SharpnessAware([w], torch.optim.SGD, rho=0.5, lr=0.1)
    (w ** 2).sum().backward()  # gradient (6, 8), norm 10
    optimiser.climb()
    assert w.detach().tolist() == pytest.approx([3.3, 4.4])  # w + 0.5 * (0.6, 0.8)
    optimiser.zero_grad()
    (w ** 2).sum().backward()  # gradient at the climbed point: (6.6, 8.8)
    optimiser.step()
    assert w.detach().tolist() == pytest.approx([3.0 - 0.66, 4.0 - 0.88])  # from w, with the second gradient


def test_sam_over_adam_minimises_a_quadratic():
    w = nn.Parameter(torch.tensor([2.0, -3.0]))
    optimiser = SharpnessAware([w], torch.optim.Adam, rho=0.05, lr=0.1)
    for _ in range(200):
        (w ** 2).sum().backward()
        optimiser.climb()
        optimiser.zero_grad()
        (w ** 2).sum().backward()
        optimiser.step()
        optimiser.zero_grad()
    assert w.abs().max() < 0.1


def test_batch_norm_statistics_stay_put_in_the_perturbed_pass():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    before = net[1].running_mean.clone()
    with frozen_batch_norm_statistics(net):
        net(torch.randn(8, 3) + 5)
    assert torch.equal(net[1].running_mean, before) and net[1].momentum == 0.1


def test_overflowed_gradients_give_no_climb():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    optimiser = SharpnessAware([w], torch.optim.SGD, rho=0.5, lr=0.1)
    w.grad = torch.tensor([float("inf"), 1.0])
    assert optimiser.climb() is False
    assert w.detach().tolist() == [1.0, 2.0]
    optimiser.restore()  # nothing to undo
    assert w.detach().tolist() == [1.0, 2.0]


def test_a_loaded_state_keeps_adam_moments_and_the_learning_rate_reaches_adam():
    w = nn.Parameter(torch.tensor([2.0, -3.0]))
    optimiser = SharpnessAware([w], torch.optim.Adam, rho=0.05, lr=0.1)
    for _ in range(3):
        (w ** 2).sum().backward()
        optimiser.climb()
        optimiser.zero_grad()
        (w ** 2).sum().backward()
        optimiser.step()
        optimiser.zero_grad()
    saved = optimiser.state_dict()
    other = SharpnessAware([w], torch.optim.Adam, rho=0.05, lr=0.1)
    other.load_state_dict(saved)
    assert torch.equal(other.inner.state[w]["exp_avg"], optimiser.inner.state[w]["exp_avg"])
    for group in other.param_groups:
        group["lr"] = 0.0  # set through SAM, as the warm-up does
    before = w.detach().clone()
    (w ** 2).sum().backward()
    other.climb()
    other.zero_grad()
    (w ** 2).sum().backward()
    other.step()
    assert torch.equal(w.detach(), before)  # Adam stepped with lr 0
