"""Stream a video's frames in fixed-size chunks, so a clip is never held in memory whole."""

from __future__ import annotations

import math
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featurizers.errors import VideoDecodeError
from featurizers.video_reader import IndexedVideo, ReadError


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a clip are used: every ``step``-th one, or about ``target_fps`` per second."""

    step: int = 1
    target_fps: float | None = None
    chunk_size: int = 32
    """Frames decoded per call: big enough for decord's fast sequential path, small enough to bound memory."""

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"frame step must be >= 1, got {self.step}")
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target fps must be > 0, got {self.target_fps}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk size must be >= 1, got {self.chunk_size}")

    def step_for(self, native_fps: float) -> int:
        """The frame step that realises this sampling on a clip of ``native_fps``."""
        if self.target_fps is None or not math.isfinite(native_fps) or native_fps <= 0:
            return self.step
        return max(1, round(native_fps / self.target_fps))

    def to_dict(self) -> dict[str, object]:
        return {"step": self.step, "target_fps": self.target_fps, "chunk_size": self.chunk_size}


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive sampled frames of one clip: RGB uint8 ``frames`` of shape (N, H, W, 3)."""

    frame_indices: np.ndarray
    times_s: np.ndarray
    frames: np.ndarray
    native_fps: float
    n_corrupt: int = 0
    """Sampled frames of this chunk's index range that the decoder could not give (corrupt or
    missing packets): left out of ``frames``, never replaced by a neighbour."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container declares, read without decoding any frame."""

    n_frames: int
    """Frames the container declares (decord counts the video packets)."""
    fps: float


def sampled_indices(n_frames: int, step: int, frame_range: tuple[int, int] | None = None) -> np.ndarray:
    """Native indices of the frames a sampling keeps: ``arange(0, n_frames, step)`` within ``[start, stop)``.

    The sampling is anchored at frame 0 whatever the range, so the indices of consecutive
    ranges concatenate to exactly the indices of the whole clip.
    """
    start, stop = (0, n_frames) if frame_range is None else frame_range
    if start < 0 or stop < start:
        raise ValueError(f"frame range must satisfy 0 <= start <= stop, got [{start}, {stop})")
    first = -(-start // step) * step  # the first multiple of step at or after start
    return np.arange(first, min(stop, n_frames), step, dtype=np.int64)


def check_video_path(path: str | os.PathLike[str]) -> Path:
    """The checks made before any decoder sees a path; raises :class:`VideoDecodeError` naming it.

    A named pipe (FIFO) is let through unread: a stream has no size or header to check here,
    and reading its first bytes would take them from the decoder.
    """
    p = Path(path)
    if p.is_dir():
        raise VideoDecodeError(f"{p}: is a folder, not a video file")
    if not p.exists():
        raise VideoDecodeError(f"{p}: no such file")
    if stat.S_ISFIFO(p.stat().st_mode):
        return p
    if not p.is_file():
        raise VideoDecodeError(f"{p}: not a regular file or a pipe")
    if p.stat().st_size == 0:
        raise VideoDecodeError(f"{p}: empty file (0 bytes)")
    missing = riff_shortfall(p)
    if missing:
        raise VideoDecodeError(f"{p}: truncated: the AVI header declares {missing} more bytes than the file holds")
    return p


def _open(path: str | os.PathLike[str]) -> IndexedVideo:
    p = check_video_path(path)
    try:
        video = IndexedVideo(str(p))
    except ReadError as exc:
        raise VideoDecodeError(f"{p}: {exc}") from exc
    if video.n_frames == 0:
        video.close()
        raise VideoDecodeError(f"{p}: the container holds no video frames")
    return video


_RIFF_SIZE_UNKNOWN = (0, 0xFFFFFFFF)
"""RIFF sizes that writers leave when they never patch the header: no claim to check."""


def riff_shortfall(path: str | os.PathLike[str]) -> int:
    """Bytes missing from a RIFF (AVI) file whose header declares more than the file holds; else 0.

    decord (ffmpeg) reads a cut-off AVI as a shorter clip without any error, so a truncated
    AVI would pass as a short, complete one. The RIFF header states the size of its first
    chunk; a file shorter than that was cut. OpenDML files continue past the first chunk, so
    only a shortfall counts. Files of other formats give 0.
    """
    with open(path, "rb") as stream:
        header = stream.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"AVI ":
        return 0
    (declared,) = struct.unpack("<I", header[4:8])
    if declared in _RIFF_SIZE_UNKNOWN:
        return 0
    return max(0, declared + 8 - os.path.getsize(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """The declared frame count and frame rate of a video, after the same checks as decoding.

    Raises :class:`VideoDecodeError` when the file cannot be opened as a video.
    """
    video = _open(path)
    video.close()
    return VideoInfo(n_frames=video.n_frames, fps=video.fps)


def iter_frame_chunks(path: str | os.PathLike[str], sampling: FrameSampling = FrameSampling(),
                      frame_range: tuple[int, int] | None = None) -> Iterator[FrameChunk]:
    """Yield the sampled frames of a video chunk by chunk.

    ``frame_range=(start, stop)`` keeps only the sampled frames with native index in
    ``[start, stop)``; the sampling stays anchored at frame 0, so the chunks of consecutive
    ranges concatenate to exactly the frames of the whole clip.

    Raises :class:`VideoDecodeError` (also an ``OSError``) when the file cannot be opened or a
    frame cannot be decoded midway, naming the file and the frame.
    """
    video = _open(path)
    try:
        fps = video.fps
        indices = sampled_indices(video.n_frames, sampling.step_for(fps), frame_range)
        try:
            for decoded in video.read(indices, sampling.chunk_size):
                times = decoded.frame_indices / fps if fps > 0 else np.full(len(decoded.frame_indices), np.nan)
                yield FrameChunk(frame_indices=decoded.frame_indices, times_s=times.astype(np.float64),
                                 frames=decoded.frames, native_fps=fps, n_corrupt=decoded.n_lost)
        except ReadError as exc:
            raise VideoDecodeError(f"{path}: {exc}") from exc
    finally:
        video.close()
