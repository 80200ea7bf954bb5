"""Fixtures shared by the test suite: a real photograph and the loaded offline featurizer."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def lite0_spec():
    from featurizers.registry import get_featurizer_spec

    return get_featurizer_spec("effnet_lite0_imagenet")


@pytest.fixture(scope="session")
def lite0_embedder(lite0_spec):
    import torch

    from featurizers.embed import FaceEmbedder, load_network

    model = load_network(lite0_spec)
    return FaceEmbedder(lite0_spec, model, torch.device("cpu"))
