"""Where the featurizer network runs: torch eager, or an ONNX export on a CPU runtime.

On 2 CPU cores, per face in batches of 8-16 (tf_efficientnet_b0 / Lite0): torch eager about
29 / 26 ms, ONNX Runtime 11.5 / 6.8 ms, OpenVINO 8.5 / 5.4 ms, all equal to float tolerance
(~1e-5). ``auto`` takes OpenVINO on the CPU, ONNX Runtime where OpenVINO cannot be imported,
and torch on a GPU. Each returns the global-pool features and the head's logits for a batch.
The CPU runtimes run the network exported once, in memory, when a worker loads its models.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx", "openvino"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "openvino")


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


def export_onnx(model: nn.Module, input_size: int) -> bytes:
    """The featurizer as an ONNX graph in memory (TorchScript exporter, opset 17), batch size left free."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        net = _FeaturesAndLogits(model).cpu().eval()
        torch.onnx.export(
            net, (torch.zeros(1, 3, input_size, input_size),), buffer,  # type: ignore[arg-type]
            dynamo=False, opset_version=17, input_names=["faces"], output_names=["features", "logits"],
            dynamic_axes={"faces": {0: "n"}, "features": {0: "n"}, "logits": {0: "n"}},
        )
    return buffer.getvalue()


class OnnxNetwork:
    """The exported network run by ONNX Runtime."""

    def __init__(self, onnx_model: bytes) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = self._session.run(None, {"faces": np.ascontiguousarray(batch, np.float32)})
        return pooled, logits


class OpenVinoNetwork:
    """The exported network compiled by OpenVINO for the CPU, in float32 only (equal to torch
    to float tolerance; the tests compare them)."""

    def __init__(self, onnx_model: bytes) -> None:
        import openvino

        core = openvino.Core()
        self._compiled = core.compile_model(core.read_model(onnx_model), "CPU", {
            "PERFORMANCE_HINT": "LATENCY",  # one request using every thread; THROUGHPUT was 2.5x slower here
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": "f32",  # some CPUs would otherwise run bf16
        })
        self._requests = threading.local()  # an infer request must not be shared between threads

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        results = request.infer({"faces": np.ascontiguousarray(batch, np.float32)})
        return (np.array(results[self._compiled.output("features")]),
                np.array(results[self._compiled.output("logits")]))


def make_network(model: nn.Module, device: torch.device, input_size: int, backend: Backend = "auto") -> FaceNetwork:
    """The network on the requested backend; ``auto`` is OpenVINO, else ONNX Runtime, on the CPU.

    With ``auto``, a runtime that fails to import or to compile the network is skipped with a
    warning (down to torch) rather than failing the job; a backend asked for by name must work.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "torch" or (backend == "auto" and device.type != "cpu"):
        return TorchNetwork(model, device)
    if device.type != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU only; got device {device}")
    runtimes: dict[str, Callable[[bytes], FaceNetwork]] = {"openvino": OpenVinoNetwork, "onnx": OnnxNetwork}
    candidates = list(runtimes) if backend == "auto" else [backend]
    try:
        onnx_model = export_onnx(model, input_size)
    except Exception as exc:
        if backend != "auto":
            raise
        log.warning("ONNX export failed (%s); running the featurizer with torch instead", exc)
        return TorchNetwork(model, device)
    for name in candidates:
        try:
            return runtimes[name](onnx_model)
        except Exception as exc:
            if backend != "auto":
                raise
            log.warning("%s could not run the featurizer (%s); trying the next runtime", name, exc)
    return TorchNetwork(model, device)
