"""Loading HSEmotion-style checkpoints pickled under timm 0.9, under the project's timm 1.x.

The fixtures come from ``scripts/make_checkpoint_fixtures.py`` run under timm 0.9: tiny networks
with the real B0/B2 layout, each beside the input, features and logits timm 0.9 computed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import CheckpointFormatError, UnsafeCheckpointError, WeightsNotFoundError
from featurizers.embedding.checkpoints import checkpoint_sha256, load_hsemotion_model

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "checkpoints"
B0_AVG_8 = FIXTURES / "tiny_b0_avg_8.pt"
B2_MAX_7 = FIXTURES / "tiny_b2_max_7.pt"


def expected_outputs(checkpoint: Path) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The stored input and the features and logits timm 0.9 computed from it."""
    stored = np.load(checkpoint.with_suffix(".npz"))
    x = torch.from_numpy(stored["x_codes"].astype(np.float32) * stored["x_step"])
    return x, stored["features"], stored["logits"]


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    return features.numpy(), logits.numpy()


@pytest.mark.parametrize(
    ("checkpoint", "feature_dim", "classes", "pool_type"),
    [(B0_AVG_8, 52, 8, "avg"), (B2_MAX_7, 56, 7, "max")],
    ids=["b0-avg-8", "b2-max-7"],
)
def test_reproduces_timm09_features_and_logits(
    checkpoint: Path, feature_dim: int, classes: int, pool_type: str
) -> None:
    model = load_hsemotion_model(checkpoint)
    x, features, logits = expected_outputs(checkpoint)

    got_features, got_logits = features_and_logits(model, x)

    assert not model.training
    assert model.global_pool.pool_type == pool_type
    assert got_features.shape == (2, feature_dim) and got_logits.shape == (2, classes)
    np.testing.assert_allclose(got_features, features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_logits, logits, rtol=1e-4, atol=1e-5)


def test_max_pooling_is_kept_not_replaced_by_average() -> None:
    model = load_hsemotion_model(B2_MAX_7)
    x, features, _ = expected_outputs(B2_MAX_7)
    with torch.no_grad():
        feature_map = model.forward_features(x)

    assert feature_map.shape[-2:].numel() > 1, "fixture input too small to tell max from average pooling"
    np.testing.assert_allclose(feature_map.amax(dim=(2, 3)).numpy(), features, rtol=1e-4, atol=1e-5)
    assert not np.allclose(feature_map.mean(dim=(2, 3)).numpy(), features, atol=1e-3)


def test_sequential_head_becomes_its_linear() -> None:
    model = load_hsemotion_model(B2_MAX_7)

    classifier = model.get_classifier()
    assert type(classifier) is nn.Linear
    assert (classifier.in_features, classifier.out_features) == (56, 7)
    assert model.num_classes == 7


def test_plain_unpickling_under_timm1_breaks_forward() -> None:
    """The problem the loader solves: a naive load (safe here, it is our own fixture) cannot run."""
    model = torch.load(B0_AVG_8, weights_only=False)
    x, _, _ = expected_outputs(B0_AVG_8)

    with pytest.raises(AttributeError, match="conv_s2d"):
        model(x)


def test_malicious_fixture_is_refused_without_running_it(capfd: pytest.CaptureFixture[str]) -> None:
    checkpoint = FIXTURES / "malicious_print.pt"

    with pytest.raises(UnsafeCheckpointError, match="builtins.print") as refused:
        load_hsemotion_model(checkpoint)

    assert str(checkpoint) in str(refused.value)
    assert "unpickled" not in capfd.readouterr().out


class _Payload:
    """Unpickles into ``call(*args)``; each payload below would create a marker file if ever run."""

    def __init__(self, call: object, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


PAYLOADS = {
    # name in the pickle (os.system is pickled under its real module, posix on Linux): payload
    f"{os.system.__module__}.system": lambda marker: _Payload(os.system, f"touch {marker}"),
    "subprocess.Popen": lambda marker: _Payload(subprocess.Popen, ["touch", str(marker)]),
    "builtins.eval": lambda marker: _Payload(eval, f"open({str(marker)!r}, 'w').close()"),
}


@pytest.mark.parametrize("pickled_name", list(PAYLOADS))
def test_callables_hidden_in_a_real_checkpoint_are_refused(tmp_path: Path, pickled_name: str) -> None:
    marker = tmp_path / "payload_ran"
    model = load_hsemotion_model(B0_AVG_8)
    model.blocks[0][0].note = PAYLOADS[pickled_name](marker)  # a plain attribute deep in a genuine network
    tampered = tmp_path / "tampered.pt"
    torch.save(model, tampered)

    with pytest.raises(UnsafeCheckpointError, match=pickled_name) as refused:
        load_hsemotion_model(tampered)

    assert str(tampered) in str(refused.value)
    assert not marker.exists()


def test_missing_file_raises_weights_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "enet_b0_8_best_afew.pt"

    with pytest.raises(WeightsNotFoundError, match="enet_b0_8_best_afew.pt"):
        load_hsemotion_model(missing)
    with pytest.raises(FileNotFoundError):
        load_hsemotion_model(missing)


def test_state_dict_is_refused_with_what_was_found(tmp_path: Path) -> None:
    state_dict_file = tmp_path / "weights_only.pt"
    torch.save(load_hsemotion_model(B0_AVG_8).state_dict(), state_dict_file)

    with pytest.raises(CheckpointFormatError, match="state dict.*expected a whole timm EfficientNet"):
        load_hsemotion_model(state_dict_file)


def test_other_network_is_refused_with_what_was_found(tmp_path: Path) -> None:
    other = tmp_path / "linear.pt"
    torch.save(nn.Linear(4, 2), other)

    with pytest.raises(CheckpointFormatError, match="torch.nn.modules.linear.Linear"):
        load_hsemotion_model(other)


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "enet_b2_7.pt"
    junk.write_bytes(b"<html>404: Not Found</html>")

    with pytest.raises(CheckpointFormatError, match="not a readable torch checkpoint"):
        load_hsemotion_model(junk)


def _add_unknown_layer(model: nn.Module) -> None:
    model.blocks[0][0].act1 = nn.SiLU()  # timm 0.4-style separate activation after bn1


def _drop_attribute(model: nn.Module) -> None:
    del model.blocks[1][0].has_skip


@pytest.mark.parametrize(
    ("alter", "reported"),
    [
        (_add_unknown_layer, r"blocks\.0\.0 \(DepthwiseSeparableConv\) has unknown layers \['act1'\]"),
        (_drop_attribute, r"blocks\.1\.0 \(InvertedResidual\) lacks \['has_skip'\]"),
    ],
    ids=["extra-layer", "missing-attribute"],
)
def test_layouts_the_loader_cannot_upgrade_are_refused(
    tmp_path: Path, alter: Callable[[nn.Module], None], reported: str
) -> None:
    """A network unlike timm 0.9's must fail loudly at load, not run with different features."""
    model = load_hsemotion_model(B0_AVG_8)
    alter(model)
    odd = tmp_path / "odd_layout.pt"
    torch.save(model, odd)

    with pytest.raises(CheckpointFormatError, match=reported):
        load_hsemotion_model(odd)


def test_checkpoint_sha256_matches_hashlib() -> None:
    assert checkpoint_sha256(B0_AVG_8) == hashlib.sha256(B0_AVG_8.read_bytes()).hexdigest()
