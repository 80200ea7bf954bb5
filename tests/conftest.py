"""Fixtures shared by the test suite: real photographs, tiny clips and the loaded offline models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videos import panning_frames, write_video


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def face_clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """A 12-frame clip of a real face (scikit-image's astronaut photograph)."""
    return write_video(tmp_path_factory.mktemp("clips") / "face.avi", panning_frames(astronaut, 12))


@pytest.fixture(scope="session")
def lite0_spec():
    from featurizers.registry import get_featurizer_spec

    return get_featurizer_spec("effnet_lite0_imagenet")


@pytest.fixture(scope="session")
def lite0_embedder(lite0_spec):
    import torch

    from featurizers.embed import FaceEmbedder, load_network

    model, _ = load_network(lite0_spec)
    return FaceEmbedder(lite0_spec, model, torch.device("cpu"))
