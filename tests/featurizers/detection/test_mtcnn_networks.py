"""MTCNN's networks on the CPU runtimes: the same faces as on torch, their cache, the backend rule."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detections import assert_same_faces
from videos import SAMPLES

from featurizers.decoding.decode import FrameSampling, iter_frame_chunks
from featurizers.detection import mtcnn_networks
from featurizers.detection.detect import AFEW_DETECTOR, VGAF_DETECTOR, FaceDetector

ROOT = Path(__file__).parents[3]


def _first_frames(clip: str, n: int) -> np.ndarray:
    return next(iter(iter_frame_chunks(str(SAMPLES / clip), FrameSampling(chunk_size=n)))).frames


CLIPS = {"afew": ("afew/Train_AFEW/Happy/000001001.avi", AFEW_DETECTOR), "vgaf": ("vgaf/Train/2_3.mp4", VGAF_DETECTOR)}


@pytest.fixture(scope="module")
def references() -> dict:
    """Per sample clip: 8 frames, and the faces of our cascade on torch and of facenet-pytorch."""
    found = {}
    for name, (clip, config) in CLIPS.items():
        frames = _first_frames(clip, 8)
        found[name] = (frames, [FaceDetector(config).detect(frames),
                                FaceDetector(config, engine="facenet").detect(frames)])
    return found


@pytest.mark.slow
@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("backend", ["openvino", "onnx"])
def test_the_cascade_on_a_cpu_runtime_finds_what_torch_and_facenet_pytorch_find(references, clip, backend):
    # The runtimes' network outputs differ from torch's by at most ~2e-6 (float32 rounding of other
    # kernels); through the box arithmetic that is ~1e-4 px on these clips, and the last stage's
    # probabilities move by ~1e-7. The bounds leave 10x margin: a wrong graph (layout, weights,
    # a missing softmax) moves boxes by pixels or finds other faces.
    frames, expected_by_reference = references[clip]
    ours = FaceDetector(CLIPS[clip][1], backend=backend)
    assert ours.backend == backend
    found = ours.detect(frames)
    for expected in expected_by_reference:
        assert_same_faces(found, expected, len(frames))


def test_the_runtime_networks_handle_frames_with_nothing_to_find():
    detector = FaceDetector(AFEW_DETECTOR, backend="openvino")
    blank = np.full((2, 64, 80, 3), 128, np.uint8)
    assert [len(f) for f in detector.detect(blank)] == [0, 0]
    assert [len(f) for f in detector.detect(np.zeros((1, 20, 20, 3), np.uint8))] == [0]  # no pyramid level


def test_auto_runs_openvino_on_the_cpu_and_the_stock_engine_stays_on_torch():
    assert FaceDetector(AFEW_DETECTOR, backend="auto").backend == "openvino"
    assert FaceDetector(AFEW_DETECTOR, engine="facenet").backend == "torch"
    with pytest.raises(ValueError, match="facenet engine runs on torch only"):
        FaceDetector(AFEW_DETECTOR, engine="facenet", backend="openvino")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        FaceDetector(AFEW_DETECTOR, backend="tensorrt")


def test_a_cpu_runtime_is_refused_on_a_gpu():
    nets = [torch.nn.Identity()] * 3  # refused before any network is touched
    with pytest.raises(ValueError, match="runs on the CPU only"):
        mtcnn_networks.make_cascade_networks(*nets, torch.device("cuda"), "openvino")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "emotiw-video" / "networks"


def test_each_network_is_exported_and_compiled_once_then_read_from_the_cache(cache):
    frames = _first_frames("afew/Train_AFEW/Happy/000001001.avi", 4)
    first = FaceDetector(AFEW_DETECTOR, backend="openvino")
    files = sorted(p.name for p in cache.glob("*/*.onnx"))
    assert files == ["mtcnn_onet.onnx", "mtcnn_pnet.onnx", "mtcnn_rnet.onnx"]
    assert not any(stage.model.loaded_from_cache for stage in _stages(first))
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}

    second = FaceDetector(AFEW_DETECTOR, backend="openvino")
    assert all(stage.model.loaded_from_cache for stage in _stages(second))
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamps  # nothing written again
    for a, b in zip(first.detect(frames), second.detect(frames)):
        np.testing.assert_array_equal(a.boxes, b.boxes)


def test_other_weights_get_their_own_export():
    from facenet_pytorch import MTCNN

    pnet = MTCNN().pnet
    key = mtcnn_networks.stage_key(pnet, "pnet")
    assert mtcnn_networks.stage_key(pnet, "rnet") != key
    with torch.no_grad():
        pnet.conv1.weight.view(-1)[3] += 0.25
    assert mtcnn_networks.stage_key(pnet, "pnet") != key


def _stages(detector: FaceDetector) -> list:
    networks = detector._cascade.networks  # type: ignore[union-attr]
    return [networks.pnet, networks.rnet, networks.onet]


def test_detection_keeps_the_callers_torch_thread_count():
    """numba's first parallel call used to set torch's thread count to every core; a fresh
    process, since that happens only once."""
    script = (
        "import numpy as np, torch; torch.set_num_threads(1)\n"
        "from featurizers.detection.detect import AFEW_DETECTOR, FaceDetector\n"
        "frames = np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)\n"
        "for backend in ('torch', 'openvino'):\n"
        "    FaceDetector(AFEW_DETECTOR, backend=backend).detect(frames)\n"
        "    print(torch.get_num_threads())\n")
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}  # a pool larger than the caller's count, on any machine
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]
