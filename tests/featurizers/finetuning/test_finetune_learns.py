"""The training loop learns, in seconds: the real Lite0 ImageNet base at 32 px, the default recipe
(augmentation, frozen batch-norm statistics, warm-up), on an easy task (bright against dark faces).

The check that fine-tuning learns a facial change that the base misses, on held-out identities
of scripts/synthetic_faces.py, runs for minutes and lives in benchmarks/benchmark_finetune_recipe.py;
this is the same code path (``finetune``), made small.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from featurizers.embed import load_network, preprocess_faces
from featurizers.finetuning.image_folders import LabelledImage, class_weights, load_rgb
from featurizers.finetuning.settings import FinetuneSettings
from featurizers.finetuning.training import attach_new_head, finetune


@pytest.fixture
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _faces(root, per_class, seed):
    """Class 0 bright, class 1 dark, both noisy, 40x36 RGB PNGs."""
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(seed)
    images = []
    for label, level in enumerate((170, 85)):
        for k in range(per_class):
            path = root / f"{label}_{k}.png"
            Image.fromarray(np.clip(rng.normal(level, 45, (40, 36, 3)), 0, 255).astype(np.uint8)).save(path)
            images.append(LabelledImage(str(path), label, f"{label}_{k}"))
    return images


def test_a_short_run_fits_its_faces_switches_phases_smoothly_and_keeps_batch_norm_statistics(
        tmp_path, lite0_spec, one_torch_thread):
    spec = replace(lite0_spec, input_size=64)
    train, val = _faces(tmp_path / "train", 8, seed=0), _faces(tmp_path / "val", 3, seed=1)
    settings = FinetuneSettings(head_epochs=2, full_epochs=2, head_lr=1e-2, batch_size=4)
    assert settings.augment and settings.full_batch_norm == "frozen" and settings.warmup_epochs == 1  # defaults
    base = load_network(spec).state_dict()
    model = attach_new_head(load_network(spec), 2, settings.seed)
    states = []  # (epochs done, a copy of the weights): save_state is handed the live tensors
    result = finetune(model, spec, train, val, class_weights([i.label for i in train], 2), settings,
                      torch.device("cpu"), save_state=lambda state: states.append(
                          (state.epochs_done, {k: v.clone() for k, v in state.model.items()})))

    history = result.history
    assert [r.phase for r in history] == ["head", "head", "full", "full"]
    assert np.isfinite([r.val_loss for r in history]).all()
    losses = [r.train_loss for r in history]
    assert losses[-1] < 0.7 * losses[0], losses
    # No setback at the switch to the full phase (with per-batch statistics and no warm-up, this
    # run's training loss jumps from 0.16 to 0.59 and validation falls from 1.0 to 0.83).
    assert losses[2] <= losses[1] and history[2].val_accuracy >= history[1].val_accuracy, history
    assert history[-1].val_accuracy == 1.0
    assert [done for done, _ in states] == [1, 2, 3, 4]
    last = states[-1][1]
    assert not torch.equal(last["conv_stem.weight"], base["conv_stem.weight"])  # the full phase trains the network
    assert not torch.equal(last["bn1.weight"], base["bn1.weight"])  # and batch norm's scales
    for name, tensor in base.items():
        if name.endswith(("running_mean", "running_var")):
            assert torch.equal(last[name], tensor), name  # but never its statistics
    faces = torch.from_numpy(preprocess_faces([load_rgb(i.path) for i in train], spec))
    with torch.inference_mode():
        predicted = result.model(faces).argmax(1).numpy()
    assert (predicted == [i.label for i in train]).all()
