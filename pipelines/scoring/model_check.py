"""The model a night's run scores with, checked against the featurizer before the lock is taken.

Light on purpose: ``model.json``, the model file's digest and the weights file's digest. The
fitted pipeline, torch and the networks load only when a night has work
(:func:`pipelines.scoring.scoring_run.prepare`), yet a model that cannot work with these weights
is refused every night, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from classifiers.descriptors import check_same_identity
from classifiers.model_files import ModelProvenance, model_sha256, read_model_provenance
from common.digests import file_sha256
from featurizers.detection.detection_mode import DetectionMode
from featurizers.embedding.registry import resolve_weights_path
from pipelines.extraction.adaptive import adaptive_from_flags
from pipelines.extraction.settings import ExtractionConfig
from pipelines.extraction.timeline import TimelineSettings
from pipelines.scoring.night_plan import ScoringSettings
from pipelines.scoring.settings_from_model import extraction_config_for_model


@dataclass(frozen=True)
class CheckedModel:
    """A model folder found compatible with the weights available for scoring."""

    provenance: ModelProvenance
    model_sha256: str
    config: ExtractionConfig
    """The extraction settings the model was trained on, with this run's runtime flags and timeline."""
    weights_sha256: str


def check_model(settings: ScoringSettings, timeline: TimelineSettings) -> CheckedModel:
    """Read the model's provenance and refuse weights or a layout it was not trained on; raises on usage errors."""
    provenance = read_model_provenance(settings.model)
    config = extraction_config_for_model(provenance, weights=settings.weights, device=settings.device,
                                         face_batch_size=settings.batch_size, backend=settings.backend,
                                         segment_frames=settings.segment_frames, clip_timeout_s=settings.clip_timeout)
    detection = DetectionMode(settings.detect_every, settings.detect_max_side)
    detection.check(config.detector.min_face_size, "the model's --min-face-size")  # before any network loads
    config = replace(config, detection=detection)
    if adaptive_from_flags(settings.adaptive, settings.adaptive_threshold) is not None:
        # Adaptive description decides on whole windows: clips are never split, and no tracks are built.
        config = replace(config, segment_frames=0, timeline=replace(timeline, track_faces=False))
    else:
        config = replace(config, timeline=timeline)
    weights_sha256 = file_sha256(resolve_weights_path(config.spec, config.weights))
    check_same_identity(provenance.identity(), config.identity(weights_sha256),
                        expected_what=f"model {settings.model}", found_what="the featurizer available for scoring",
                        hint="pass --weights with the file the model was trained with, or retrain the model")
    return CheckedModel(provenance, model_sha256(settings.model), config, weights_sha256)
