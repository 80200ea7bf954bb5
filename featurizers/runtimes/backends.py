"""Where the featurizer network runs: torch eager, or an ONNX export on a CPU runtime.

On 2 CPU cores, per face in batches of 8-16 (tf_efficientnet_b0 / Lite0): torch eager about
29 / 26 ms, ONNX Runtime 11.5 / 6.8 ms, OpenVINO 8.5 / 5.4 ms, all equal to float tolerance
(~1e-5). ``auto`` takes OpenVINO on the CPU, ONNX Runtime where OpenVINO cannot be imported,
and torch on a GPU (``backend_choice.resolve_backend``, the rule the job's provenance records).
Each returns the global-pool features and the head's logits for a batch.

The CPU runtimes run the network exported to ONNX. The export (seconds) and OpenVINO's
compilation are done once per network and machine: the ONNX file is kept under the user's cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``emotiw-video/networks/<key>/``), keyed by
the network's structure, weights, input size and the torch, timm and export settings, and
OpenVINO keeps its compiled model beside it (its ``CACHE_DIR``, in a folder per compile
settings and OpenVINO version; OpenVINO's own key adds the CPU). A second run, and every worker
after the first, reads both. Where the cache folder cannot be written the network is exported in memory, as
before, with a warning. The detector's networks use the same runtimes and cache
(featurizers/detection/mtcnn_networks.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import uuid
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from featurizers.runtimes.backend_choice import BACKENDS, Backend, resolve_backend  # noqa: F401 - BACKENDS, Backend for callers

log = logging.getLogger(__name__)

ONNX_EXPORT_SETTINGS = "torchscript-exporter opset 17, inputs faces, outputs features logits, batch free"
CACHE_APP_NAME = "emotiw-video"
ONNX_FILE = "featurizer.onnx"
OPENVINO_CACHE_FOLDER = "openvino"


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
    """The featurizer as an ONNX graph in memory (:data:`ONNX_EXPORT_SETTINGS`)."""
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


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/emotiw-video``, or ``~/.cache/emotiw-video``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / CACHE_APP_NAME


def network_key(model: nn.Module, input_size: int) -> str:
    """SHA-256 of what decides the exported graph: the module tree as printed (layers, pooling,
    activations), every parameter and buffer, the input size, torch's and timm's versions and
    the export settings. Equal keys give the same ONNX file."""
    return module_key(model, (ONNX_EXPORT_SETTINGS, str(input_size), torch.__version__, distribution_version("timm")))


def module_key(model: nn.Module, settings: tuple[str, ...]) -> str:
    """SHA-256 of ``settings`` (export settings, versions), the module tree as printed and every
    parameter and buffer: the cache key of a module's export."""
    digest = hashlib.sha256()
    for part in (*settings, repr(model)):
        digest.update(part.encode())
        digest.update(b"\0")
    for name, tensor in model.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def distribution_version(distribution: str) -> str:
    """An installed distribution's version, or ``absent``."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "absent"


def cached_onnx(model: nn.Module, input_size: int, root: Path | None = None) -> Path | None:
    """The network's ONNX file in the cache (exported there on first use), or None where the cache
    folder cannot be written (the caller then exports in memory)."""
    return cached_export(network_key(model, input_size), ONNX_FILE, lambda: export_onnx(model, input_size), root)


def cached_export(key: str, file_name: str, export: Callable[[], bytes], root: Path | None = None) -> Path | None:
    """``networks/<key>/<file_name>`` in the cache, written by ``export`` on first use; None where
    the cache folder cannot be written."""
    folder = (root or cache_root()) / "networks" / key[:32]
    path = folder / file_name
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / f".{file_name}.{uuid.uuid4().hex[:8]}"
        partial.write_bytes(export())
        os.replace(partial, path)  # workers starting together each write a whole file; the last rename wins
    except OSError as exc:
        log.warning("cannot cache the exported network under %s (%s); exporting it in memory", folder, exc)
        return None
    return path


class OnnxModel:
    """An exported graph with one input run by ONNX Runtime on the CPU, from a file or from bytes."""

    def __init__(self, onnx_model: bytes | Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
        self._session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs, in its order, for one float32 input."""
        return self._session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})


class OnnxNetwork(OnnxModel):
    """The exported featurizer run by ONNX Runtime."""

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = self.run(batch)
        return pooled, logits


# What OpenVINO compiles every network with, the featurizer and the detector's (besides the thread count).
OPENVINO_COMPILE_SETTINGS: dict[str, str | bool] = {
    "PERFORMANCE_HINT": "LATENCY",  # one request using every thread; THROUGHPUT was 2.5x slower here
    "INFERENCE_PRECISION_HINT": "f32",  # some CPUs would otherwise run bf16
    # OpenVINO pins the calling thread to a core for each inference by default: every worker
    # process on a machine took core 0, and two single-thread workers ran at the speed of one.
    "ENABLE_CPU_PINNING": False,
}


def openvino_cache_dir(network_folder: Path, openvino_version: str) -> Path:
    """OpenVINO's ``CACHE_DIR`` for a cached network: a folder per compile settings and OpenVINO
    version. OpenVINO keys its compiled models itself too, but its key was seen to ignore a
    changed precision hint (2026.4, on a CPU without bf16), so the settings go into the path."""
    settings = json.dumps({**OPENVINO_COMPILE_SETTINGS, "openvino": openvino_version}, sort_keys=True)
    return network_folder / OPENVINO_CACHE_FOLDER / hashlib.sha256(settings.encode()).hexdigest()[:16]


class OpenVinoModel:
    """An exported graph with one input compiled by OpenVINO for the CPU, in float32 only (equal to
    torch to float tolerance; the tests compare them).

    Given the ONNX file in the cache, OpenVINO keeps the compiled model beside it (its
    ``CACHE_DIR``, :func:`openvino_cache_dir`) and later loads it from there instead of
    compiling (``loaded_from_cache``).
    """

    def __init__(self, onnx_model: bytes | Path) -> None:
        import openvino

        core = openvino.Core()
        # The thread count is a run-time setting: OpenVINO applies it to a model loaded from its
        # cache, so it stays out of the cache key (one compiled model serves any worker size).
        settings: dict[str, Any] = {**OPENVINO_COMPILE_SETTINGS, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        if isinstance(onnx_model, Path):
            self._compiled = core.compile_model(str(onnx_model), "CPU", {
                **settings, "CACHE_DIR": str(openvino_cache_dir(onnx_model.parent, openvino.__version__))})
        else:
            self._compiled = core.compile_model(core.read_model(onnx_model), "CPU", settings)
        self.loaded_from_cache = bool(self._compiled.get_property("LOADED_FROM_CACHE"))
        self._requests = threading.local()  # an infer request must not be shared between threads

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The graph's outputs, in its order, for one float32 input (copies: the request reuses its buffers)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        results = request.infer([np.ascontiguousarray(batch, np.float32)])
        return [np.array(results[output]) for output in self._compiled.outputs]


class OpenVinoNetwork(OpenVinoModel):
    """The exported featurizer compiled by OpenVINO."""

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pooled, logits = self.run(batch)
        return pooled, logits


def make_network(model: nn.Module, device: torch.device, input_size: int, backend: Backend = "auto") -> FaceNetwork:
    """The network on the requested backend; ``auto`` resolved by :func:`resolve_backend`.

    The resolved backend must work: a runtime that imports but cannot compile the network is an
    error, not a silent switch to another runtime, so that the provenance names what ran.
    """
    backend = resolve_backend(backend, device.type)  # type: ignore[assignment]
    if backend == "torch":
        return TorchNetwork(model, device)
    if device.type != "cpu":
        raise ValueError(f"the {backend} backend runs on the CPU only; got device {device}")
    runtimes: dict[str, Callable[[bytes | Path], FaceNetwork]] = {"openvino": OpenVinoNetwork, "onnx": OnnxNetwork}
    return runtimes[backend](cached_onnx(model, input_size) or export_onnx(model, input_size))
