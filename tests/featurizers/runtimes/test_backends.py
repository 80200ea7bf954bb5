"""The featurizer's runtimes and their on-disk cache (exported ONNX file, OpenVINO's compiled model)."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from featurizers.embedding.checkpoints import load_hsemotion_model
from featurizers.runtimes import backends

TINY_B0 = Path(__file__).parents[2] / "fixtures" / "checkpoints" / "tiny_b0_avg_8.pt"
ROOT = Path(__file__).parents[3]
BATCH = np.random.default_rng(0).normal(size=(2, 3, 96, 96)).astype(np.float32)


def _files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time in ns."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "emotiw-video" / "networks"


def test_a_second_compile_loads_the_compiled_model_from_the_cache(cache):
    model = load_hsemotion_model(TINY_B0)
    first = backends.make_network(model, torch.device("cpu"), 96, "openvino")
    assert not first.loaded_from_cache
    (folder,) = cache.iterdir()
    written = _files(folder)
    assert "featurizer.onnx" in written and any(name.startswith("openvino/") for name in written)

    second = backends.make_network(model, torch.device("cpu"), 96, "openvino")
    assert second.loaded_from_cache
    assert _files(folder) == written  # nothing exported or compiled again
    np.testing.assert_array_equal(second(BATCH)[0], first(BATCH)[0])


def test_other_weights_or_settings_get_their_own_cache_entry(cache):
    model = load_hsemotion_model(TINY_B0)
    backends.make_network(model, torch.device("cpu"), 96, "openvino")
    with torch.no_grad():  # one weight of one layer changes
        next(model.parameters()).view(-1)[7] += 0.25
    changed = backends.make_network(model, torch.device("cpu"), 96, "openvino")
    assert not changed.loaded_from_cache and len(list(cache.iterdir())) == 2
    eager = backends.TorchNetwork(model, torch.device("cpu"))(BATCH)
    np.testing.assert_allclose(changed(BATCH)[0], eager[0], atol=1e-4, rtol=1e-4)  # the new weights ran

    assert backends.network_key(model, 96) != backends.network_key(model, 128)


def test_compile_settings_key_the_compiled_model_and_the_thread_count_does_not(cache, monkeypatch):
    model = load_hsemotion_model(TINY_B0)
    backends.make_network(model, torch.device("cpu"), 96, "openvino")
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)  # applied at load time, so the compiled model serves
    try:
        other_threads = backends.make_network(model, torch.device("cpu"), 96, "openvino")
    finally:
        torch.set_num_threads(threads)
    assert other_threads.loaded_from_cache
    assert other_threads._compiled.get_property("INFERENCE_NUM_THREADS") == (1 if threads > 1 else 2)

    monkeypatch.setitem(backends.OPENVINO_COMPILE_SETTINGS, "PERFORMANCE_HINT", "THROUGHPUT")
    assert not backends.make_network(model, torch.device("cpu"), 96, "openvino").loaded_from_cache
    (folder,) = cache.iterdir()
    assert len(list((folder / "openvino").iterdir())) == 2


def test_another_process_loads_the_cached_model(cache):
    """What a second run, or the second worker of a run, does."""
    model = load_hsemotion_model(TINY_B0)
    assert not backends.make_network(model, torch.device("cpu"), 96, "openvino").loaded_from_cache
    script = ("import torch; from featurizers.runtimes import backends; "
              "from featurizers.embedding.checkpoints import load_hsemotion_model; "
              f"n = backends.make_network(load_hsemotion_model({str(TINY_B0)!r}), torch.device('cpu'), 96, 'openvino'); "
              "print(n.loaded_from_cache)")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=os.environ,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_an_unwritable_cache_folder_falls_back_to_an_export_in_memory(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache would have to live under a file
    model = load_hsemotion_model(TINY_B0)
    network = backends.make_network(model, torch.device("cpu"), 96, "onnx")
    eager = backends.TorchNetwork(model, torch.device("cpu"))(BATCH)
    np.testing.assert_allclose(network(BATCH)[0], eager[0], atol=1e-4, rtol=1e-4)
    assert "exporting it in memory" in caplog.text


def test_a_half_written_compiled_model_is_compiled_again_not_trusted(cache):
    """What a worker meets when another one is still writing OpenVINO's cache file."""
    model = load_hsemotion_model(TINY_B0)
    backends.make_network(model, torch.device("cpu"), 96, "openvino")
    (blob,) = cache.rglob("*.blob")
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])
    network = backends.make_network(model, torch.device("cpu"), 96, "openvino")
    assert not network.loaded_from_cache
    eager = backends.TorchNetwork(model, torch.device("cpu"))(BATCH)
    np.testing.assert_allclose(network(BATCH)[0], eager[0], atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning to one core shows only with two or more")
def test_openvino_leaves_the_calling_thread_free_to_run_on_every_core(cache):
    """OpenVINO pins the thread that runs an inference to one core by default; every worker
    process then took the same core. Sampled from outside while inferences run."""
    import threading

    network = backends.make_network(load_hsemotion_model(TINY_B0), torch.device("cpu"), 96, "openvino")
    allowed = os.sched_getaffinity(0)
    started, stop, seen = threading.Event(), threading.Event(), []

    def infer() -> None:
        seen.append(threading.get_native_id())
        started.set()
        while not stop.is_set():
            network(BATCH)

    worker = threading.Thread(target=infer)
    worker.start()
    started.wait(10)
    masks = []
    for _ in range(300):
        masks.append(os.sched_getaffinity(seen[0]))
        time.sleep(0.002)
    stop.set()
    worker.join()
    assert all(mask == allowed for mask in masks), {frozenset(m) for m in masks}
