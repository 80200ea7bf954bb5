"""Fixtures shared by the test suite: a real photograph and the loaded offline featurizer."""

from __future__ import annotations

import os

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory):
    """The exported and compiled featurizers go to a folder of this test session, not ~/.cache
    (set in the environment, so Beam's worker processes see it too)."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


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
