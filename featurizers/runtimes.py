"""CPU inference runtimes for exported networks: ONNX export in memory, OpenVINO compilation.

A network is exported once, in memory, when a worker loads its models; nothing is written to
disk or fetched. OpenVINO compiles in float32 only, so its outputs equal torch's to float
tolerance (tests/featurizers/test_embed.py compares them). The MTCNN networks stay in torch:
through OpenVINO they measured slower inside the pipeline.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def onnx_graph(module: nn.Module, example: torch.Tensor, input_name: str, output_names: Sequence[str],
               dynamic_axes: dict[str, dict[int, str]]) -> bytes:
    """The module as an ONNX graph in memory (TorchScript exporter, opset 17)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            module.cpu().eval(), (example,), buffer,  # type: ignore[arg-type]
            dynamo=False, opset_version=17,
            input_names=[input_name], output_names=list(output_names), dynamic_axes=dynamic_axes,
        )
    return buffer.getvalue()


class OpenVinoModel:
    """An ONNX graph compiled by OpenVINO for the CPU; call it on one array, get its outputs in order."""

    def __init__(self, onnx_model: bytes) -> None:
        import openvino

        core = openvino.Core()
        self._compiled = core.compile_model(core.read_model(onnx_model), "CPU", {
            "PERFORMANCE_HINT": "LATENCY",  # one request using every thread; THROUGHPUT was 2.5x slower here
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "INFERENCE_PRECISION_HINT": "f32",  # some CPUs would otherwise run bf16
        })
        self._outputs = list(self._compiled.outputs)
        self._requests = threading.local()  # an infer request must not be shared between threads

    def __call__(self, inputs: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        results = request.infer([np.ascontiguousarray(inputs, np.float32)])
        return [np.array(results[output]) for output in self._outputs]
