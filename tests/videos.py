"""Helpers for tests: where the samples are, and tiny videos made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "sample_videos"


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25, codec: str = "mpeg4",
                options: dict[str, str] | None = None) -> Path:
    """Encode RGB frames with PyAV (mpeg4 in .avi, or H.264 in .mp4 when asked; ``options`` are the
    encoder's, e.g. ``{"g": "16", "bf": "2"}`` for a keyframe every 16 frames and B-frames)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options or {})
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


def write_vfr_video(path: Path, frames: list[np.ndarray], times_ms: list[int]) -> Path:
    """Encode RGB frames as H.264 in .mp4 with the given presentation times (variable frame rate, B-frames)."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"g": "12", "bf": "2"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for frame, ms in zip(frames, times_ms):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts, picture.time_base = ms, Fraction(1, 1000)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return path
