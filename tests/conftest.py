"""Fixtures shared by the test suite: a real photograph, the loaded offline featurizer, an S3 server."""

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
    from featurizers.embedding.registry import get_featurizer_spec

    return get_featurizer_spec("effnet_lite0_imagenet")


@pytest.fixture(scope="session")
def lite0_embedder(lite0_spec):
    import torch

    from featurizers.embedding.embed import FaceEmbedder, load_network

    model = load_network(lite0_spec)
    return FaceEmbedder(lite0_spec, model, torch.device("cpu"))


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's) on 127.0.0.1; clients find it through AWS_ENDPOINT_URL."""
    import os

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture
def bucket(s3_server) -> str:
    """A new empty bucket on the test server, as an ``s3://`` URL."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def dask_cluster():
    """A local Dask cluster of two single-thread worker processes, shared by the tests that run a job
    on a cluster by address: each worker imports the networks' libraries once for all of them."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster
