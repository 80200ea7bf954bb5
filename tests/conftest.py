"""Fixtures shared by the test suite: a real photograph, the loaded offline featurizer, S3 and GCS servers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from stores import GCS_CLIENT_ENV

os.environ.update(GCS_CLIENT_ENV)  # before anything imports gcsfs, in this process and the ones it starts


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker a core, at most 4, since each worker holds its own
    networks (about 2 GB with Beam's and the decoder's processes)."""
    return max(1, min(os.cpu_count() or 1, 4))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end job tests first: they are the longest modules (a few tests of many seconds each), and
    the workers take modules in this order (pyproject: --no-loadscope-reorder), so the run ends on short
    modules instead of one worker waiting for the other's last long one."""
    items.sort(key=lambda item: 0 if item.path.parent.name == "jobs" else 1)  # stable: each group keeps its order


@pytest.fixture(scope="session", autouse=True)
def private_cache_folder(tmp_path_factory):
    """The exported and compiled featurizers go to a folder of this test session, not ~/.cache
    (set in the environment, so Beam's worker processes see it too). The suite's xdist workers share
    one, so each network is exported and compiled once per run; the cache's writes are atomic renames."""
    previous = os.environ.get("XDG_CACHE_HOME")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # basetemp is <run>/popen-gwN: the run's folder is its parent
        folder = tmp_path_factory.getbasetemp().parent / "shared-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("cache")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield
    if previous is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture
def one_torch_thread():
    """Training on one torch thread: the same operations in the same order, so runs compare exactly."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def _served(server):
    """Point the clients at ``server`` (its environment) while the fixture lives, then stop it."""
    from stores import restore_env, set_env

    saved = set_env(server.env)
    try:
        yield server.env
    finally:
        restore_env(saved)
        server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's) on 127.0.0.1; clients find it through AWS_ENDPOINT_URL."""
    from stores import S3Server

    yield from _served(S3Server())


@pytest.fixture
def bucket(s3_server) -> str:
    """A new empty bucket on the test server, as an ``s3://`` URL."""
    from stores import new_s3_bucket

    return new_s3_bucket()


@pytest.fixture(scope="session")
def gcs_server():
    """A real GCS emulator (fake-gcs-server) on 127.0.0.1; gcsfs finds it through STORAGE_EMULATOR_HOST."""
    from stores import GcsServer

    yield from _served(GcsServer())


@pytest.fixture
def gcs_bucket(gcs_server) -> str:
    """A new empty bucket on the GCS emulator, as a ``gs://`` URL."""
    from stores import new_gcs_bucket

    return new_gcs_bucket()


@pytest.fixture(scope="session")
def dask_cluster():
    """A local Dask cluster of two single-thread worker processes, shared by the tests that run a job
    on a cluster by address: each worker imports the networks' libraries once for all of them."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster
