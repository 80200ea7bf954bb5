"""Where the featurizer network runs: torch eager, or ONNX Runtime on the CPU.

On the CPU, ONNX Runtime runs the EfficientNets about 4x faster than torch eager at equal
outputs (float tolerance, ~1e-5), so ``auto`` picks it there; on a GPU torch is used.
Both return the global-pool features and the head's logits for a batch.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx"]


class FaceNetwork(Protocol):
    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, D) and head logits (N, C) of a preprocessed batch (N, 3, S, S)."""


class _FeaturesAndLogits(nn.Module):
    """One forward giving both outputs, so ONNX export keeps the head beside the features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a timm EfficientNet: forward_features, forward_head, get_classifier

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return pooled, self.model.get_classifier()(pooled)


class TorchNetwork:
    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device = device
        self._net = _FeaturesAndLogits(model).to(device).eval()

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = self._net(torch.from_numpy(batch).to(self.device))
        return pooled.float().cpu().numpy(), logits.float().cpu().numpy()


class OnnxNetwork:
    """The same network exported once (in memory) and run by ONNX Runtime."""

    def __init__(self, model: nn.Module, input_size: int) -> None:
        import onnxruntime

        net = _FeaturesAndLogits(model).cpu().eval()
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(
                net, (torch.zeros(1, 3, input_size, input_size),), buffer,  # type: ignore[arg-type]
                dynamo=False, opset_version=17,
                input_names=["faces"], output_names=["features", "logits"],
                dynamic_axes={"faces": {0: "n"}, "features": {0: "n"}, "logits": {0: "n"}},
            )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = self._session.run(None, {"faces": np.ascontiguousarray(batch, np.float32)})
        return pooled, logits


def make_network(model: nn.Module, device: torch.device, input_size: int, backend: Backend = "auto") -> FaceNetwork:
    """The network on the requested backend; ``auto`` is ONNX Runtime on the CPU, torch on a GPU.

    With ``auto``, a failed export falls back to torch with a warning rather than failing the job.
    """
    if backend == "torch" or (backend == "auto" and device.type != "cpu"):
        return TorchNetwork(model, device)
    if device.type != "cpu":
        raise ValueError(f"the onnx backend runs on the CPU only; got device {device}")
    try:
        return OnnxNetwork(model, input_size)
    except Exception as exc:
        if backend == "onnx":
            raise
        log.warning("ONNX export failed (%s); running the featurizer with torch instead", exc)
        return TorchNetwork(model, device)
