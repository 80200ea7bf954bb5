"""The extraction configuration's provenance: the backend that runs and the library versions."""

import sys
from importlib.metadata import version

from featurizers.runtimes.backend_choice import resolve_backend
from pipelines.extraction.settings import ExtractionConfig


def test_provenance_records_the_resolved_backend_and_its_runtimes_version(monkeypatch):
    config = ExtractionConfig(dataset="afew", featurizer="effnet_lite0_imagenet", device="cpu")
    provenance = config.provenance("ab" * 32)
    assert provenance["featurizer_backend"] == resolve_backend("auto", "cpu") == "openvino"
    assert provenance["detector_backend"] == "openvino"
    assert provenance["libraries"]["openvino"] == version("openvino") and "onnxruntime" not in provenance["libraries"]
    assert provenance["libraries"]["pillow"] == version("pillow")
    assert provenance["libraries"]["pyav"] == version("av") and "decord" not in provenance["libraries"]

    monkeypatch.setitem(sys.modules, "openvino", None)  # OpenVINO cannot be imported: the workers run ONNX Runtime
    provenance = config.provenance("ab" * 32)
    assert provenance["featurizer_backend"] == provenance["detector_backend"] == "onnx"
    assert provenance["libraries"]["onnxruntime"] == version("onnxruntime") and "openvino" not in provenance["libraries"]


def test_a_named_backend_is_recorded_as_named():
    for backend in ("torch", "onnx", "openvino"):
        config = ExtractionConfig(dataset="vgaf", featurizer="effnet_lite0_imagenet", device="cpu", backend=backend)
        provenance = config.provenance("ab" * 32)
        assert provenance["featurizer_backend"] == provenance["detector_backend"] == backend
    gpu = ExtractionConfig(dataset="vgaf", featurizer="effnet_lite0_imagenet", device="cuda:1")
    assert gpu.resolved_backend() == "torch"  # auto off the CPU, decided without touching a GPU
