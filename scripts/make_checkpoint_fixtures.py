"""Write tiny HSEmotion-like checkpoints, pickled under timm 0.9, for the checkpoint-loader tests.

The published HSEmotion files are whole models pickled with ``torch.save(model)`` under
timm 0.9.x. Under timm 1.x they unpickle into modules that lack attributes the newer
``forward`` needs, so ``featurizers.embedding.checkpoints`` must upgrade them. The tests need files
that have exactly that problem, so this script has to run under timm 0.9, not the project's
timm 1.x. The networks keep the real B0/B2 layout (TF "same" padding, TF batch-norm eps,
squeeze-excite blocks, depthwise-separable first stage) with a few channels and blocks, so
the fixtures stay small.

For each network it writes ``<name>.pt`` (the pickled model) and ``<name>.npz`` holding a
fixed random input (``x_codes * x_step``), the global-pool output (``features``) and the head output
(``logits``) computed under timm 0.9. It also writes ``malicious_print.pt``, whose
unpickling would call ``builtins.print``: harmless, but a loader that is safe must refuse it.

Run it (from the repository root) in a separate environment with timm 0.9::

    python3.11 -m venv /tmp/timm09
    /tmp/timm09/bin/pip install --no-deps "timm==0.9.16"
    # reuse the project's torch/torchvision (a torchvision built for another torch breaks timm's import)
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/timm09/lib/python3.11/site-packages/zz_project.pth
    /tmp/timm09/bin/python scripts/make_checkpoint_fixtures.py [--out tests/fixtures/checkpoints]

``--full-size DIR`` instead writes full-size ``tf_efficientnet_b0``/``tf_efficientnet_b2``
checkpoints (about 16 MB and 31 MB, random weights) with their expected outputs to DIR, to check
the loader on networks the size of the published ones; do not commit those.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

INPUT_STEP = 1.0 / 8
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "checkpoints"


@dataclass(frozen=True)
class FixtureNet:
    """How one fixture network is built: a scaled-down (or full) TF EfficientNet plus its head."""

    name: str
    variant: str
    """The timm 0.9 entry whose recipe (padding, eps, head width) the network follows."""
    channel_multiplier: float
    depth_multiplier: float
    channel_divisor: int
    """timm rounds widths to multiples of this (8 in the real networks; 4 keeps fixtures small)."""
    num_classes: int
    global_pool: str
    sequential_head: bool
    drop_rate: float
    input_hw: tuple[int, int]
    seed: int


TINY_NETS = (
    # B0-like: average pooling and a plain 8-way Linear head, like enet_b0_8_best_afew.
    FixtureNet("tiny_b0_avg_8", "tf_efficientnet_b0", 0.04, 0.25, 4, 8, "avg", False, 0.2, (65, 45), 0),
    # B2-like: max pooling and a Sequential(Linear) 7-way head, the variants HSEmotion's B2 files use.
    FixtureNet("tiny_b2_max_7", "tf_efficientnet_b2", 0.045, 0.3, 4, 7, "max", True, 0.3, (65, 41), 1),
)
FULL_NETS = (
    FixtureNet("full_b0_avg_8", "tf_efficientnet_b0", 1.0, 1.0, 8, 8, "avg", False, 0.2, (224, 224), 2),
    FixtureNet("full_b2_max_7", "tf_efficientnet_b2", 1.1, 1.2, 8, 7, "max", True, 0.3, (260, 260), 3),
)


def _check_timm_version() -> None:
    # The fixtures are only meaningful if pickled by the timm that wrote the published files.
    if not timm.__version__.startswith("0.9."):
        raise SystemExit(f"run this under timm 0.9.x (found timm {timm.__version__}); see the docstring")


def build_net(spec: FixtureNet) -> nn.Module:
    """Build a TF-style EfficientNet the way ``tf_efficientnet_b0``/``b2`` do, scaled by ``spec``."""
    from timm.layers import BatchNormAct2d
    from timm.models._efficientnet_builder import BN_EPS_TF_DEFAULT
    from timm.models.efficientnet import _gen_efficientnet

    torch.manual_seed(spec.seed)
    model = _gen_efficientnet(
        spec.variant,
        channel_multiplier=spec.channel_multiplier,
        depth_multiplier=spec.depth_multiplier,
        channel_divisor=spec.channel_divisor,
        pretrained=False,
        bn_eps=BN_EPS_TF_DEFAULT,
        pad_type="same",
        num_classes=spec.num_classes,
        global_pool=spec.global_pool,
        drop_rate=spec.drop_rate,
    )
    # Fresh batch norms are the identity; random statistics make the check see eps and order.
    generator = torch.Generator().manual_seed(spec.seed + 100)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, BatchNormAct2d)):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
            module.weight.data.copy_(1.0 + 0.1 * torch.randn(n, generator=generator))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=generator))
    if spec.sequential_head:
        model.classifier = nn.Sequential(model.classifier)
    return model.eval()


def write_net(spec: FixtureNet, out_dir: Path) -> None:
    """Pickle the whole model as the HSEmotion author did and store its timm 0.9 outputs."""
    model = build_net(spec)
    # Inputs on a coarse grid (steps of 1/8 in [-2, 2]), so the npz stores them exactly and small,
    # as int8 codes. Images larger than the network's stride of 32 leave a feature map wider than
    # 1x1, so average and max pooling differ and the pooling type is really tested.
    generator = torch.Generator().manual_seed(spec.seed + 200)
    codes = torch.randint(-16, 17, (2, 3, *spec.input_hw), generator=generator)
    x = codes.float() * INPUT_STEP
    with torch.no_grad():
        features = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    torch.save(model, out_dir / f"{spec.name}.pt")
    np.savez_compressed(
        out_dir / f"{spec.name}.npz",
        x_codes=codes.numpy().astype(np.int8),
        x_step=np.float32(INPUT_STEP),
        features=features.numpy(),
        logits=logits.numpy(),
        timm_version=np.array(timm.__version__),
        torch_version=np.array(torch.__version__),
    )
    logging.info("%s: features %s, logits %s", spec.name, tuple(features.shape), tuple(logits.shape))


class _PrintOnUnpickle:
    """Unpickles into a call of ``builtins.print``: a stand-in for a payload like ``os.system``."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return print, ("malicious_print.pt was unpickled: the loader ran code from the pickle",)


def write_malicious(out_dir: Path) -> None:
    """A checkpoint-looking dict whose pickle carries a callable outside any tensor allow-list."""
    checkpoint = {"state_dict": {"w": torch.zeros(2)}, "payload": _PrintOnUnpickle()}
    torch.save(checkpoint, out_dir / "malicious_print.pt")


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the tiny fixtures")
    parser.add_argument(
        "--full-size", type=Path, default=None, help="write full-size B0/B2 checkpoints here instead (do not commit)"
    )
    args = parser.parse_args(argv)
    _check_timm_version()
    out_dir: Path = args.full_size or args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    for spec in FULL_NETS if args.full_size else TINY_NETS:
        write_net(spec, out_dir)
    if not args.full_size:
        write_malicious(out_dir)
    logging.info("wrote fixtures to %s", out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run()
