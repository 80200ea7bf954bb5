"""Fixtures shared by the test suite: tiny videos made on the fly and the loaded offline models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "sample_videos"


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, codec: str = "mpeg4") -> Path:
    """Encode RGB frames with PyAV (mpeg4 in .avi, or H.264 in .mp4 when asked)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def panning_frames(image: np.ndarray, n: int, size: tuple[int, int] = (240, 320), shift: int = 2) -> list[np.ndarray]:
    """Frames of a slow diagonal pan over ``image``, resized to (height, width) = ``size``."""
    height, width = size
    crop_h, crop_w = image.shape[0] * 3 // 4, image.shape[1] * 3 // 4
    return [
        np.asarray(Image.fromarray(image[i * shift : i * shift + crop_h, i * shift : i * shift + crop_w]).resize((width, height)))
        for i in range(n)
    ]


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
