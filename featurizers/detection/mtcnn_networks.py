"""Where MTCNN's three networks run: torch, or their ONNX export on OpenVINO or ONNX Runtime.

The backends and the ``auto`` rule are the featurizer's (``backend_choice.resolve_backend``:
OpenVINO on the CPU, else ONNX Runtime, and torch on a GPU), and so is the on-disk cache: each
network is exported once per machine to ``networks/<key>/mtcnn_<stage>.onnx`` under the cache
root, keyed by its structure, weights and the torch, facenet-pytorch and export settings, and
OpenVINO keeps its compiled model beside it (``backends.openvino_cache_dir``).

Every network takes float32 crops in NHWC order, as the area resize writes them (the export
folds the transpose into the graph), and gives torch tensors on the cascade's device, so the
cascade's arithmetic is the same whichever runtime ran. P-Net is exported with free batch,
height and width (one graph for every pyramid level), R-Net and O-Net with a free batch.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from featurizers.runtimes.backend_choice import Backend, resolve_backend
from featurizers.runtimes.backends import OnnxModel, OpenVinoModel, cached_export, distribution_version, module_key

MTCNN_EXPORT_SETTINGS = "torchscript-exporter opset 17, NHWC float32 input, batch free (P-Net: height, width free)"

StageNetwork = Callable[[np.ndarray], tuple[torch.Tensor, ...]]
"""One cascade stage: (N, H, W, 3) float32 crops to the network's outputs as torch tensors."""

ALL_AT_ONCE = 1 << 30
CPU_MICRO_BATCH: dict[str, dict[str, int]] = {
    "torch": {"rnet": 64, "onet": 16},
    "onnx": {"rnet": 64, "onet": 16},
    "openvino": {"rnet": 128, "onet": 32},
}
"""Crops per network call on the CPU. Measured on 2 cores, torch runs R-Net about 2x faster in
batches of 64 than in one batch of 1000 (its activations then stay in cache). OpenVINO ran whole
batches no faster than batches of 128 and 32, but held 600 MiB more for the 4,600 R-Net crops of
32 frames of a 1280x720 group video. GPUs take all at once; P-Net always takes a whole pyramid
level."""


@dataclass(frozen=True)
class StageShape:
    """How a stage is exported: its example input side, its outputs and whether H and W are free."""

    side: int
    outputs: tuple[str, ...]
    free_size: bool = False


STAGES: dict[str, StageShape] = {
    "pnet": StageShape(12, ("offsets", "probs"), free_size=True),
    "rnet": StageShape(24, ("offsets", "probs")),
    "onet": StageShape(48, ("offsets", "points", "probs")),
}


@dataclass(frozen=True)
class CascadeNetworks:
    """P-Net, R-Net and O-Net on one backend, and the backend's name (what the provenance records)."""

    pnet: StageNetwork
    rnet: StageNetwork
    onet: StageNetwork
    backend: str


class _FromNHWC(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(x.permute(0, 3, 1, 2))


def _micro_batched(run: Callable[[np.ndarray], tuple[torch.Tensor, ...]], batch: np.ndarray,
                   size: int) -> tuple[torch.Tensor, ...]:
    if len(batch) <= size:
        return run(batch)
    outputs = [run(batch[i:i + size]) for i in range(0, len(batch), size)]
    return tuple(torch.cat(parts) for parts in zip(*outputs))


class TorchStage:
    """A facenet-pytorch network in channels-last memory (the NHWC crops are then read in place)."""

    def __init__(self, net: nn.Module, device: torch.device, micro_batch: int) -> None:
        self.net = net.to(device=device, memory_format=torch.channels_last).eval()
        self.device = device
        self.micro_batch = micro_batch

    def _run(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)))

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        return _micro_batched(self._run, batch, self.micro_batch)


class RuntimeStage:
    """An exported network on a CPU runtime (OpenVINO or ONNX Runtime)."""

    def __init__(self, model: OnnxModel | OpenVinoModel, micro_batch: int) -> None:
        self.model = model
        self.micro_batch = micro_batch

    def _run(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(output) for output in self.model.run(batch))

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        return _micro_batched(self._run, batch, self.micro_batch)


def export_stage(net: nn.Module, stage: str) -> bytes:
    """One MTCNN network as an ONNX graph in memory (:data:`MTCNN_EXPORT_SETTINGS`)."""
    shape = STAGES[stage]
    free = {0: "n", 1: "height", 2: "width"} if shape.free_size else {0: "n"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        wrapped = _FromNHWC(net).cpu().eval()
        torch.onnx.export(
            wrapped, (torch.zeros(1, shape.side, shape.side, 3),), buffer,  # type: ignore[arg-type]
            dynamo=False, opset_version=17, input_names=["crops"], output_names=list(shape.outputs),
            dynamic_axes={"crops": free, **{name: {0: "n"} for name in shape.outputs}},
        )
    return buffer.getvalue()


def stage_key(net: nn.Module, stage: str) -> str:
    """The cache key of a network's export: its structure and weights, the stage, the torch and
    facenet-pytorch versions and the export settings."""
    return module_key(net, (MTCNN_EXPORT_SETTINGS, stage, torch.__version__, distribution_version("facenet-pytorch")))


def _runtime_model(net: nn.Module, stage: str, backend: str) -> OnnxModel | OpenVinoModel:
    runtime = OpenVinoModel if backend == "openvino" else OnnxModel
    path: Path | None = cached_export(stage_key(net, stage), f"mtcnn_{stage}.onnx", lambda: export_stage(net, stage))
    return runtime(path or export_stage(net, stage))


def make_cascade_networks(pnet: nn.Module, rnet: nn.Module, onet: nn.Module, device: torch.device,
                          backend: Backend | str = "auto") -> CascadeNetworks:
    """The three networks on the requested backend; ``auto`` resolved as for the featurizer.

    A CPU runtime that cannot load the networks is an error, not a silent switch to torch, so
    that the provenance names what ran.
    """
    resolved = resolve_backend(backend, device.type)
    nets = {"pnet": pnet, "rnet": rnet, "onet": onet}
    on_cpu = device.type == "cpu"
    batches = CPU_MICRO_BATCH[resolved] if on_cpu else {}
    if resolved == "torch":
        stages = {name: TorchStage(net, device, batches.get(name, ALL_AT_ONCE)) for name, net in nets.items()}
    elif not on_cpu:
        raise ValueError(f"the {resolved} backend runs on the CPU only; got device {device}")
    else:
        stages = {name: RuntimeStage(_runtime_model(net, name, resolved), batches.get(name, ALL_AT_ONCE))
                  for name, net in nets.items()}
    return CascadeNetworks(stages["pnet"], stages["rnet"], stages["onet"], resolved)
