"""Pieces of the training loop: the SAM update under a loss scaler, the precision chosen for a
device, the warm-up and the batch norm kept frozen in the full phase."""

import pytest
import torch
from torch import nn

from featurizers.finetuning.sam import SharpnessAware
from featurizers.finetuning.training import choose_precision, keep_batch_norm_statistics, sam_update, warmup_factor


def _quadratic_step(scaler):
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    optimiser = SharpnessAware([w], torch.optim.SGD, rho=0.5, lr=0.1)

    def loss_at(perturbed):
        loss = (w ** 2).sum()
        return loss, loss.reshape(1)

    loss, _ = sam_update(optimiser, scaler, loss_at)
    return w.detach(), float(loss)


def test_sam_update_under_a_loss_scaler_takes_the_unscaled_step():
    plain, loss = _quadratic_step(torch.amp.GradScaler("cpu", enabled=False))
    assert loss == 25.0
    assert plain.tolist() == pytest.approx([3.0 - 0.66, 4.0 - 0.88])  # as test_sam's hand-computed step
    scaled, _ = _quadratic_step(torch.amp.GradScaler("cpu", init_scale=1024.0))
    assert scaled.tolist() == pytest.approx(plain.tolist(), rel=1e-6)


def test_sam_update_skips_an_overflowed_step_and_leaves_the_weights_where_they_were():
    scaler = torch.amp.GradScaler("cpu", init_scale=1e38)  # the scaled loss overflows to inf
    w, _ = _quadratic_step(scaler)
    assert w.tolist() == [3.0, 4.0]
    assert scaler.get_scale() < 1e38  # the scaler backs off for the next step


def test_precision_follows_the_device():
    assert choose_precision("auto", torch.device("cpu")).autocast_dtype is None
    gpu = choose_precision("auto", torch.device("cuda"))
    assert gpu.autocast_dtype == torch.float16 and gpu.loss_scaling
    assert not choose_precision("bfloat16", torch.device("cpu")).loss_scaling
    with pytest.raises(ValueError, match="--precision float16"):
        choose_precision("float16", torch.device("cpu"))


def test_bfloat16_autocast_runs_on_the_cpu():
    precision = choose_precision("bfloat16", torch.device("cpu"))
    with precision.autocast(torch.device("cpu")):
        out = nn.Linear(4, 2)(torch.ones(3, 4))
    assert out.dtype == torch.bfloat16


def test_warmup_rises_linearly_then_stays_at_one():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_kept_batch_norm_statistics_do_not_move_and_the_scales_still_learn():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    keep_batch_norm_statistics(net)
    before = net[1].running_mean.clone()
    out = net(torch.randn(8, 3, 5, 5) + 3)
    out.sum().backward()
    assert net[0].training and not net[1].training
    assert torch.equal(net[1].running_mean, before)
    assert net[1].weight.grad is not None and net[1].weight.grad.abs().sum() > 0
