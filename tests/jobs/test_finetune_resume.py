"""jobs.finetune survives a kill: a child process killed by a real SIGKILL after an epoch's
checkpoint, then resumed with --resume, ends with exactly the weights of a run never interrupted.

Why exactly: the resumed run restores every tensor (weights, best weights, Adam's moments), the
state of every random generator and the history, and runs the same operations on the same
machine with the same single torch thread (OMP_NUM_THREADS=1 in the child, set_num_threads(1)
here), so each floating-point result is the same bit for bit. A looser tolerance would hide a
state that is not restored (Adam's moments reset, say, changes weights by far more than 1e-6).
The published weights are those of the best validation epoch, which may come before the kill;
so the test also compares every epoch's training and validation loss, which after the kill
depend on everything the checkpoint restores.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from videos import REPO_ROOT

from featurizers.embedding.finetuned import FinetunedDescription, save_featurizer_folder
from featurizers.finetuning.training_state import CHECKPOINT_FILE, load_training_state
from jobs import finetune

EPOCHS = ("--head-epochs", "1", "--full-epochs", "2")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A random Lite0 at 32 px as the base (a fine-tuned folder), and 20 noisy faces of two classes."""
    root = tmp_path_factory.mktemp("resume")
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=2)
    description = FinetunedDescription("tf_efficientnet_lite0", "avg", 32, (0.5,) * 3, (0.25,) * 3, 1280,
                                       ("a", "b"), "effnet_lite0_imagenet", "0" * 64, "", {})
    base = save_featurizer_folder(root / "base", model, description)
    rng = np.random.default_rng(0)
    for label, level in (("Happy", 170), ("Sad", 80)):
        (root / "images" / label).mkdir(parents=True)
        for k in range(10):
            face = np.clip(rng.normal(level, 50, (40, 36, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(face).save(root / "images" / label / f"clip{label}{k % 5}_{k}.png")
    return root, base


def _argv(root, base, output):
    return ["--images", str(root / "images"), "--base", str(base), *EPOCHS, "--batch-size", "8",
            "--val-fraction", "0.25", "--head-lr", "1e-2", "--full-lr", "1e-3", "--mixup", "0.4",
            "--warmup-epochs", "1", "--device", "cpu", "--output", str(output)]


def _tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "weights.safetensors"))


def _start_and_kill_after_first_checkpoint(argv, staging):
    """Start ``python -m jobs.finetune`` and SIGKILL it once its first checkpoint is in place (in a
    thread, so the reference run trains meanwhile); returns the thread and where its result lands."""
    child = subprocess.Popen([sys.executable, "-m", "jobs.finetune", *argv], cwd=REPO_ROOT,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    outcome = {}

    def watch():
        deadline = time.monotonic() + 120
        while not (staging / CHECKPOINT_FILE).exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        outcome["code"], outcome["stderr"] = child.returncode, child.stderr.read().decode()[-2000:]
        child.stderr.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    return watcher, outcome


def test_a_run_killed_after_an_epoch_and_resumed_ends_with_the_uninterrupted_weights(folders, tmp_path,
                                                                                     one_torch_thread, capsys):
    root, base = folders
    output = tmp_path / "killed"
    staging = finetune.staging_folder(output)
    watcher, killed = _start_and_kill_after_first_checkpoint(_argv(root, base, output), staging)
    whole = tmp_path / "whole"
    assert finetune.run([*_argv(root, base, whole), "--resume"]) == 0  # no checkpoint: from the first epoch
    watcher.join()
    assert killed["code"] == -signal.SIGKILL, killed["stderr"]
    state, _ = load_training_state(staging)
    assert 1 <= state.epochs_done < 3 and not output.exists()  # killed mid-run, nothing published
    assert json.loads((staging / "history.json").read_text())["finished"] is False

    capsys.readouterr()
    assert finetune.run(_argv(root, base, output)) == 2  # a checkpoint is never dropped silently
    assert "--resume" in capsys.readouterr().err
    assert finetune.run([*_argv(root, base, output), "--full-lr", "2e-3", "--resume"]) == 2
    assert "--full-lr" in capsys.readouterr().err  # another recipe cannot continue this one

    assert finetune.run([*_argv(root, base, output), "--resume"]) == 0
    expected, resumed = _tensors(whole), _tensors(output)
    assert sorted(expected) == sorted(resumed)
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    history, expected_history = (json.loads((f / "history.json").read_text()) for f in (output, whole))
    assert history["resumed_after_epoch"] == state.epochs_done and expected_history["resumed_after_epoch"] == 0
    for a, b in zip(history["epochs"], expected_history["epochs"], strict=True):
        assert (a["train_loss"], a["val_loss"], a["learning_rate"]) == (b["train_loss"], b["val_loss"],
                                                                        b["learning_rate"])
    assert history["settings"]["mixup"] == 0.4 and history["settings"]["augmentation"]["max_rotation"] == 10.0
    assert not staging.exists() and not (output / CHECKPOINT_FILE).exists()


@pytest.mark.parametrize("flag, value", [("--mixup", "-1"), ("--cutmix", "nan"), ("--warmup-epochs", "-0.5"),
                                         ("--full-lr", "0"), ("--batch-size", "0"), ("--rho", "-1"),
                                         ("--device", "gpu"), ("--precision", "half"),
                                         ("--batch-norm", "moving")])
def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(folders, tmp_path, flag, value, capsys):
    root, base = folders
    try:
        code = finetune.run([*_argv(root, base, tmp_path / "out"), flag, value])
    except SystemExit as exc:  # argparse's own refusal (choices)
        code = exc.code
    assert code == 2 and flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not finetune.staging_folder(tmp_path / "out").exists()
