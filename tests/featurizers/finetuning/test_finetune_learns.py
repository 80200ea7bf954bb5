"""The training loop learns, in seconds: the real Lite0 ImageNet base at 64 px, the default
batch-norm handling, on an easy task (where a bright patch sits: top or bottom of a noisy face).

The check that fine-tuning learns a facial change that the base misses, on held-out identities
of scripts/synthetic_faces.py, runs for minutes and lives in benchmarks/benchmark_finetune_recipe.py;
this is the same code path (``finetune``), made small. Augmentation is off here, so that a few
steps suffice; tests/jobs/test_finetune_resume.py trains with it.
"""

from dataclasses import replace

import numpy as np
import torch

from featurizers.embedding.embed import load_network, preprocess_faces
from featurizers.finetuning.image_folders import LabelledImage, class_weights, load_rgb
from featurizers.finetuning.settings import FinetuneSettings
from featurizers.finetuning.training import attach_new_head, finetune


def _faces(root, per_class, seed):
    """Class 0 with a bright patch in the upper part, class 1 in the lower part, on noise; 40x36 RGB PNGs."""
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(seed)
    images = []
    for label, rows in enumerate((slice(4, 16), slice(24, 36))):
        for k in range(per_class):
            face = rng.normal(110, 40, (40, 36, 3))
            face[rows, 8:28] += 90
            path = root / f"{label}_{k}.png"
            Image.fromarray(np.clip(face, 0, 255).astype(np.uint8)).save(path)
            images.append(LabelledImage(str(path), label, f"{label}_{k}"))
    return images


def test_a_short_run_fits_its_faces_and_switches_phases_without_a_setback(
        tmp_path, lite0_spec, one_torch_thread):
    spec = replace(lite0_spec, input_size=64)
    train, val = _faces(tmp_path / "train", 16, seed=0), _faces(tmp_path / "val", 4, seed=1)
    settings = FinetuneSettings(head_epochs=2, full_epochs=2, head_lr=1e-2, batch_size=16, augment=False)
    assert settings.batch_norm == "batch" and settings.warmup_epochs == 0  # the defaults
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
    # No setback at the switch to the full phase. (Measured: 0.825, 0.307, 0.168, 0.104; with the
    # paper's batch norm, the base's statistics in the head phase, 2.77, 2.69, 0.74, 0.54.)
    assert losses[2] <= losses[1] and history[2].val_accuracy >= history[1].val_accuracy, history
    assert history[-1].val_accuracy == 1.0
    assert [done for done, _ in states] == [1, 2, 3, 4]
    head_phase, last = states[1][1], states[-1][1]
    assert not torch.equal(last["conv_stem.weight"], base["conv_stem.weight"])  # the full phase trains the network
    assert not torch.equal(last["bn1.weight"], base["bn1.weight"])  # and batch norm's scales
    assert not torch.equal(head_phase["bn1.running_mean"], base["bn1.running_mean"])  # measured on the faces,
    assert torch.equal(head_phase["bn1.running_mean"], states[0][1]["bn1.running_mean"])  # then kept in the head phase
    faces = torch.from_numpy(preprocess_faces([load_rgb(i.path) for i in train], spec))
    with torch.inference_mode():
        predicted = result.model(faces).argmax(1).numpy()
    assert (predicted == [i.label for i in train]).all()
