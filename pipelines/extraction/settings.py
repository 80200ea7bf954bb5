"""The extraction settings: one frozen object that every worker receives, from which provenance is derived."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from common.provenance import PROJECT_NAME, descriptor_library_versions, project_version
from common.tables.schema import DatasetKind, DescriptorLayout, aggregation_for, class_names
from featurizers.decoding.decode import FrameSampling
from featurizers.detection.detection_mode import EXACT, DetectionMode
from featurizers.detection.detect import AFEW_DETECTOR, VGAF_DETECTOR, DetectorConfig
from featurizers.embedding.registry import FeaturizerSpec, get_featurizer_spec
from featurizers.runtimes.backend_choice import Backend, device_type, resolve_backend
from pipelines.extraction.timeline import TimelineSettings


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
    segment_frames: int = 2048
    """Sampled frames per segment of a long clip, each a separate unit of work (0: never split).
    Not provenance: segments merge exactly, so the descriptors do not depend on it."""
    timeline: TimelineSettings = field(default_factory=TimelineSettings)
    """Time windows and face tracks (their own tables; the clip's row does not depend on them)."""
    detection: DetectionMode = EXACT
    """Exact (the full cascade on every frame) unless a faster mode was asked for; provenance."""

    @property
    def segment_alignment(self) -> int:
        """Sampled frames a segment's length is a multiple of: whole decoding chunks and, with
        detection on key frames, whole blocks of ``detect_every``, so that each segment starts
        with a full detection where the unsplit clip has one."""
        return math.lcm(self.sampling.chunk_size, self.detection.detect_every)

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

    def identity(self, weights_sha256: str) -> dict[str, Any]:
        """The provenance keys a model is checked against; known without resolving a backend or device."""
        return {"featurizer": self.spec.name, "layout": self.layout.to_dict(), "weights_sha256": weights_sha256}

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
            "detection_mode": self.detection.to_dict(),
            "frames": self.sampling.to_dict(),
            "face_preprocessing": "align_5_points_224_cv2" if self.layout.aligns_faces else "crop_no_margin",
        }
