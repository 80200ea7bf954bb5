"""The extraction job's configuration: one frozen object that every worker receives."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from featurizers.backend_choice import CPU_RUNTIME_MODULES, Backend, device_type, resolve_backend
from featurizers.decode import FrameSampling
from featurizers.detect import AFEW_DETECTOR, VGAF_DETECTOR, DetectorConfig
from featurizers.registry import FeaturizerSpec, get_featurizer_spec
from pipelines.schema import DatasetKind, DescriptorLayout, aggregation_for, class_names

PROJECT_NAME = "emotiw-video"

FLUSH_EVERY_ROWS = 50
FLUSH_EVERY_S = 60.0
"""Finished clip rows reach storage at least this often (per worker), so a killed run loses little."""

PLANNING_BYTES_PER_FRAME = 500
"""A low guess of a video's bytes per frame, from which the driver estimates how many segments a
local clip will hold before any header is read (pipelines/segments.py, ``planning_shard_count``).
Low on purpose: an over-estimate costs a header read that finds no segment; an under-estimate
leaves segments of a long clip together. Our synthetic clips take 450-1,800 bytes a frame, real
H.264 at 640x360 2,000-5,000."""
MAX_PLANNING_SHARDS = 64
"""At most this many planning elements for one clip."""
DASK_MAX_DEFAULT_PARTITIONS = 256
"""Beam's Dask runner packs 128 elements into each partition of its first ``Create`` and never
repartitions; unless ``--dask_npartitions`` or ``--dask_partition_size`` is given, the jobs ask
for one partition per element up to this many, so that a few clips still spread over workers."""

# The libraries whose version can move descriptors (decoding, detection, resizing, alignment, the
# network and its runtime), by distribution name; the first installed name of each entry counts.
DESCRIPTOR_LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "timm": ("timm",),
    "pillow": ("pillow",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "pyav": ("av",),  # the pipeline's decoder (decord reads only for the plain reference loop)
    "facenet-pytorch": ("facenet-pytorch",),
}
# The CPU runtimes (named as in CPU_RUNTIME_MODULES); only the one that ran is recorded.
RUNTIME_LIBRARIES: dict[str, tuple[str, ...]] = {
    "openvino": ("openvino",), "onnxruntime": ("onnxruntime", "onnxruntime-gpu")}


def project_version() -> str:
    try:
        return version(PROJECT_NAME)
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "0+unknown"


def descriptor_library_versions(backend: str) -> dict[str, str | None]:
    """Installed versions of the libraries that make descriptors, with the runtime of ``backend``
    (a resolved backend); None for one that is not installed. Read from the package metadata,
    so nothing is imported."""
    wanted = dict(DESCRIPTOR_LIBRARIES)
    runtime = CPU_RUNTIME_MODULES.get(backend)
    if runtime:
        wanted[runtime] = RUNTIME_LIBRARIES[runtime]
    found: dict[str, str | None] = {}
    for name, distributions in wanted.items():
        found[name] = None
        for distribution in distributions:
            try:
                found[name] = version(distribution)
                break
            except PackageNotFoundError:
                continue
    return found


@dataclass(frozen=True)
class ExtractionConfig:
    """What to extract and how; provenance in the output is derived from this object alone."""

    dataset: DatasetKind
    featurizer: str
    weights: str | None = None
    detector: DetectorConfig = AFEW_DETECTOR
    sampling: FrameSampling = FrameSampling()
    face_batch_size: int = 32
    device: str = "auto"
    backend: Backend = "auto"
    """Runtime of the featurizer and of the detector's networks: OpenVINO (else ONNX Runtime) on the
    CPU and torch on a GPU (auto), or forced."""
    group: bool = False
    """For ``folder`` archives: aggregate every face (VGAF-style) rather than one per frame."""
    with_face_rows: bool = False
    segment_frames: int = 2048
    """Sampled frames per segment of a long clip, each a separate unit of work (0: never split).
    Not provenance: segments merge exactly, so the descriptors do not depend on it."""

    @staticmethod
    def default_detector(dataset: DatasetKind, group: bool = False) -> DetectorConfig:
        return VGAF_DETECTOR if aggregation_for(dataset, group) == "vgaf" else AFEW_DETECTOR

    @property
    def spec(self) -> FeaturizerSpec:
        return get_featurizer_spec(self.featurizer)

    @property
    def layout(self) -> DescriptorLayout:
        return DescriptorLayout(aggregation_for(self.dataset, self.group), self.spec.feature_dim)

    def resolved_backend(self) -> str:
        """The backend the workers run for this configuration, featurizer and detector alike
        (``auto`` resolved, as they do)."""
        return resolve_backend(self.backend, device_type(self.device))

    def provenance(self, weights_sha256: str) -> dict[str, Any]:
        spec = self.spec
        backend = self.resolved_backend()
        return {
            "project": PROJECT_NAME,
            "project_version": project_version(),
            "dataset": self.dataset,
            "classes": list(class_names(self.dataset)),
            "featurizer": spec.name,
            "featurizer_architecture": spec.architecture,
            "featurizer_input_size": spec.input_size,
            "featurizer_emotion_tuned": spec.emotion_tuned,
            "featurizer_backend": backend,
            "detector_backend": backend,
            "libraries": descriptor_library_versions(backend),
            "weights_sha256": weights_sha256,
            "layout": self.layout.to_dict(),
            "detector": self.detector.to_dict(),
            "frames": self.sampling.to_dict(),
            "face_preprocessing": "align_5_points_224_cv2" if self.layout.aligns_faces else "crop_no_margin",
        }
