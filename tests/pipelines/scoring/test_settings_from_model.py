"""Scoring describes videos with the extraction settings recorded in the model's provenance."""

from __future__ import annotations

import pytest

from classifiers.model_io import ModelProvenance
from featurizers.detection.detect import VGAF_DETECTOR
from pipelines.scoring.settings_from_model import extraction_config_for_model


def test_extraction_settings_come_from_the_model_provenance() -> None:
    described = {"detector": {**VGAF_DETECTOR.to_dict(), "thresholds": [0.6, 0.7, 0.9], "min_face_size": 80},
                 "frames": {"step": 3, "target_fps": None, "chunk_size": 32}}
    provenance = ModelProvenance(featurizer="enet_b0_8_best_vgaf", layout={"aggregation": "vgaf"},
                                 classes=["Positive", "Neutral", "Negative"], classifier="linearsvc",
                                 hyperparameters={}, descriptor_provenance=described)
    config = extraction_config_for_model(provenance, weights="/w", device="cpu", face_batch_size=8)
    assert (config.dataset, config.group, config.layout.aggregation) == ("folder", True, "vgaf")
    assert config.detector.min_face_size == 80 and config.detector.thresholds == (0.6, 0.7, 0.9)
    assert config.detector.all_faces and config.sampling.step == 3
    assert (config.weights, config.device, config.face_batch_size) == ("/w", "cpu", 8)


def test_an_unknown_featurizer_is_refused() -> None:
    provenance = ModelProvenance(featurizer="nope", layout={"aggregation": "afew"}, classes=["a", "b"],
                                 classifier="linearsvc", hyperparameters={})
    with pytest.raises(ValueError, match="unknown featurizer 'nope'"):
        extraction_config_for_model(provenance)
