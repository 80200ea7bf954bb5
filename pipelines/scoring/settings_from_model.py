"""The extraction settings a trained model's descriptors were made with, rebuilt for scoring.

Kept out of the classifier package: it is extraction plumbing that only needs the model's
provenance (a plain record read from ``model.json``).
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from featurizers.decoding.decode import FrameSampling
from featurizers.detection.detect import DetectorConfig
from featurizers.runtimes.backend_choice import Backend
from pipelines.extraction.settings import ExtractionConfig

if TYPE_CHECKING:
    from classifiers.model_io import ModelProvenance

logger = logging.getLogger(__name__)


def extraction_config_for_model(provenance: ModelProvenance, *, weights: str | None = None,
                                device: str = "auto", face_batch_size: int = 32, backend: Backend = "auto",
                                segment_frames: int = ExtractionConfig.segment_frames,
                                clip_timeout_s: float | None = None) -> ExtractionConfig:
    """The extraction settings a model was trained on, for an unlabelled folder of videos.

    Featurizer, aggregation, detector and frame sampling come from the model's descriptor
    provenance, so scoring describes videos exactly as the training clips were described;
    settings missing from an old provenance fall back to the dataset defaults (logged).
    Raises ValueError for a featurizer this project does not know.
    """
    layout = provenance.layout or {}
    group = layout.get("aggregation") == "vgaf"
    described = provenance.descriptor_provenance or {}
    detector = ExtractionConfig.default_detector("folder", group)
    if described.get("detector"):
        detector = _dataclass_from_dict(DetectorConfig, described["detector"])
    else:
        logger.warning("model provenance records no detector settings; using the defaults %s", detector)
    sampling = FrameSampling()
    if described.get("frames"):
        sampling = _dataclass_from_dict(FrameSampling, described["frames"])
    else:
        logger.warning("model provenance records no frame sampling; using every frame")
    sampling = replace(sampling, clip_timeout_s=clip_timeout_s)  # a run-time limit, never in provenance
    config = ExtractionConfig(dataset="folder", featurizer=provenance.featurizer, weights=weights,
                              detector=detector, sampling=sampling, face_batch_size=face_batch_size,
                              device=device, group=group, backend=backend, segment_frames=segment_frames)
    config.spec  # noqa: B018 - raises ValueError naming the known featurizers
    return config


def _dataclass_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build a frozen settings dataclass from JSON (lists back to tuples, unknown keys ignored)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names})
