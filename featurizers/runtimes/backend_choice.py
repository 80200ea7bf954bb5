"""Which runtime runs the featurizer: the backend names and the one rule that resolves ``auto``.

Apart from backends.py (which needs torch) so that the command lines can list the choices, and
the job can record in its provenance the runtime the workers run, without loading a network.
The workers resolve ``auto`` with the same function (``backends.make_network``), so the two agree
wherever the job runs on machines alike (one machine, or a cluster of one image); on a cluster of
mixed machines, name ``--device`` and ``--backend``.
"""

from __future__ import annotations

import importlib
from typing import Literal

Backend = Literal["auto", "torch", "onnx", "openvino"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx", "openvino")
# The Python module each CPU runtime is imported as, in the order ``auto`` tries them.
CPU_RUNTIME_MODULES: dict[str, str] = {"openvino": "openvino", "onnx": "onnxruntime"}


def resolve_backend(requested: str, device_type: str) -> str:
    """The backend that runs: a named one as is; ``auto`` is torch off the CPU, else the first
    CPU runtime that imports (OpenVINO, then ONNX Runtime), else torch."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; expected one of {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    if device_type != "cpu":
        return "torch"
    for backend, module in CPU_RUNTIME_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return backend
    return "torch"


def device_type(requested: str) -> str:
    """``cpu`` or ``cuda`` for a ``--device`` value; ``auto`` asks torch whether it sees a GPU."""
    if requested == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested.split(":", 1)[0]
