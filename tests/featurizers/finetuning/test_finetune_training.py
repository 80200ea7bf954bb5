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


def _folder(root, n=10):
    import numpy as np
    from PIL import Image

    from featurizers.finetuning.image_folders import LabelledImage

    rng = np.random.default_rng(0)
    images = []
    for k in range(n):
        path = root / f"{k}.png"
        Image.fromarray(rng.integers(0, 255, (20, 18, 3), dtype=np.uint8)).save(path)
        images.append(LabelledImage(str(path), k % 2, str(k)))
    (root / "3.png").write_bytes(b"")  # fails when loaded: skipped and recorded
    return images


def test_batches_are_the_same_whatever_the_threads_and_leave_the_generator_in_the_same_state(tmp_path, lite0_spec):
    from dataclasses import replace

    import numpy as np

    from featurizers.finetuning.settings import FinetuneSettings
    from featurizers.finetuning.training import FaceBatches

    images, spec = _folder(tmp_path), replace(lite0_spec, input_size=16)
    settings = FinetuneSettings(batch_size=3, mixup=0.4)
    runs = []
    for threads in (1, 4):
        unreadable, rng = {}, np.random.default_rng(5)
        batches = list(FaceBatches(spec, settings, unreadable, threads=threads, ahead=3)(images, rng))
        runs.append((batches, rng.random(), unreadable))
    (one, after_one, skipped_one), (four, after_four, skipped_four) = runs
    assert after_one == after_four and list(skipped_one) == list(skipped_four) == [images[3].path]
    assert sum(len(b.labels) for b in one) == 9
    for a, b in zip(one, four, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert any(b.mix is not None for b in one)


def test_validation_and_measurement_batches_are_not_varied(tmp_path, lite0_spec):
    from dataclasses import replace

    import numpy as np

    from featurizers.embedding.embed import preprocess_faces
    from featurizers.finetuning.image_folders import load_rgb
    from featurizers.finetuning.settings import FinetuneSettings
    from featurizers.finetuning.training import FaceBatches

    images, spec = _folder(tmp_path, 4), replace(lite0_spec, input_size=16)
    images = [i for i in images if not i.path.endswith("3.png")]
    batches = FaceBatches(spec, FinetuneSettings(batch_size=2, mixup=1.0), {})
    plain = torch.from_numpy(preprocess_faces([load_rgb(i.path) for i in images], spec))
    in_order = torch.cat([b.images for b in batches(images, None)])
    assert torch.equal(in_order, plain)
    shuffled = list(batches(images, np.random.default_rng(0), vary=False))
    assert all(b.mix is None for b in shuffled)
    assert sorted(map(tuple, torch.cat([b.images for b in shuffled]).flatten(1).tolist())) == \
        sorted(map(tuple, plain.flatten(1).tolist()))


def test_measured_statistics_are_the_average_of_the_batches_and_nothing_else_moves():
    from featurizers.finetuning.training import Batch, choose_precision, measure_batch_norm_statistics

    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.zero_()
    weights = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "tracked" not in k}
    batches = [Batch(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.zeros(2)),
               Batch(torch.tensor([[4.0, 5.0], [6.0, 7.0]]), torch.zeros(2))]
    seen = measure_batch_norm_statistics(net, iter(batches), torch.device("cpu"), choose_precision("float32",
                                                                                                 torch.device("cpu")))
    assert seen == 4 and not net.training and net[1].momentum == 0.1
    assert net[1].running_mean.tolist() == pytest.approx([3.0, 4.0])  # mean of the batch means (1, 2) and (5, 6)
    assert net[1].running_var.tolist() == pytest.approx([2.0, 2.0])  # each batch's unbiased variance: 2
    for name, tensor in weights.items():
        assert torch.equal(net.state_dict()[name], tensor), name
