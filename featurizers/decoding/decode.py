"""Stream a video's frames in fixed-size chunks, so a clip is never held in memory whole."""

from __future__ import annotations

import atexit
import math
import mmap
import os
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from common.errors import VideoDecodeError
from featurizers.decoding.decode_child import SLOTS
from featurizers.decoding.frame_index import FrameIndex

DECODE_TIMEOUT_BASE_S = 60.0
DECODE_TIMEOUT_PER_FRAME_S = 0.05
OPEN_TIMEOUT_BYTES_PER_S = 10e6
"""The default time limit of a clip's decoding: 60 s plus the file read at 10 MB/s to open it
(opening reads every packet to number the frames), then 0.05 s per native frame (20 frames/s,
about ten times slower than one core decodes 1080p H.264)."""

MAX_CORRUPT_SHARE = 0.1
"""Above this share of a clip's sampled frames left out as undecodable, the clip is an error."""


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a clip are used: every ``step``-th one, or about ``target_fps`` per second."""

    step: int = 1
    target_fps: float | None = None
    chunk_size: int = 32
    """Frames per chunk: enough to batch face detection, few enough to bound memory."""
    clip_timeout_s: float | None = None
    """How long the consumer may wait on a clip's (or frame range's) decoder before the clip fails;
    None: :meth:`timeout_for` its frame count. Not part of :meth:`to_dict`: it never changes descriptors."""

    def __post_init__(self) -> None:
        if self.step < 1:
            raise ValueError(f"frame step must be >= 1, got {self.step}")
        if self.target_fps is not None and self.target_fps <= 0:
            raise ValueError(f"target fps must be > 0, got {self.target_fps}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk size must be >= 1, got {self.chunk_size}")
        if self.clip_timeout_s is not None and not self.clip_timeout_s > 0:
            raise ValueError(f"clip timeout must be > 0 seconds, got {self.clip_timeout_s}")

    def step_for(self, native_fps: float) -> int:
        """The frame step that realises this sampling on a clip of ``native_fps``."""
        if self.target_fps is None or not math.isfinite(native_fps) or native_fps <= 0:
            return self.step
        return max(1, round(native_fps / self.target_fps))

    def timeout_for(self, n_native_frames: int) -> float:
        """The decoding time limit of a clip or frame range spanning ``n_native_frames`` frames."""
        if self.clip_timeout_s is not None:
            return self.clip_timeout_s
        return DECODE_TIMEOUT_BASE_S + DECODE_TIMEOUT_PER_FRAME_S * n_native_frames

    def open_timeout_for(self, path: Path | int) -> float:
        """The time limit to open a video (its packets may all be read once), by the file's size (or a size)."""
        if self.clip_timeout_s is not None:
            return self.clip_timeout_s
        size = path if isinstance(path, int) else (path.stat().st_size if path.is_file() else 0)
        return DECODE_TIMEOUT_BASE_S + size / OPEN_TIMEOUT_BYTES_PER_S

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
    n_native_frames: int | None = None
    """Frames the whole video declares (not only this range): where its last time window ends."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container declares, read without decoding any frame."""

    n_frames: int
    """Frames the container declares (decord counts the video packets)."""
    fps: float
    index: FrameIndex | None = field(default=None, compare=False, repr=False)
    """Every frame's timestamp and keyframe flag: what its segments need to seek and number frames."""
    bytes_read: int = -1
    """Bytes of the video the probe read (-1: unknown)."""


@dataclass
class ReadStats:
    """Filled in as a clip (or segment) is decoded: the bytes of the video its decoder read (-1: unknown)."""

    bytes_read: int = -1


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


def is_remote(source: str | os.PathLike[str]) -> bool:
    """True for a bucket's URL (``s3://``, ``gs://``), which the decoder reads by byte ranges."""
    text = str(source)
    return "://" in text and not text.startswith("file://")


def check_video_source(source: str | os.PathLike[str]) -> tuple[str, int]:
    """:func:`check_video_path` for a path or a bucket's URL: what to hand the decoder, and the size in bytes."""
    if not is_remote(source):
        p = check_video_path(source)
        return str(p), (p.stat().st_size if p.is_file() else 0)
    import fsspec

    url = str(source)
    try:
        fs, key = fsspec.core.url_to_fs(url)
        info = fs.info(key)
    except FileNotFoundError:
        raise VideoDecodeError(f"{url}: no such object") from None
    except Exception as exc:  # credentials, network: the message of the store's client says which
        raise VideoDecodeError(f"{url}: cannot be read ({type(exc).__name__}: {exc})") from exc
    if info.get("type") == "directory":
        raise VideoDecodeError(f"{url}: is a folder, not a video file")
    size = int(info.get("size") or 0)
    if size == 0:
        raise VideoDecodeError(f"{url}: empty file (0 bytes)")
    missing = _riff_missing(bytes(fs.cat_file(key, start=0, end=min(12, size))), size)
    if missing:
        raise VideoDecodeError(f"{url}: truncated: the AVI header declares {missing} more bytes than the file holds")
    return url, size


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
    return _riff_missing(header, os.path.getsize(path))


def _riff_missing(header: bytes, size: int) -> int:
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"AVI ":
        return 0
    (declared,) = struct.unpack("<I", header[4:8])
    if declared in _RIFF_SIZE_UNKNOWN:
        return 0
    return max(0, declared + 8 - size)


def probe_video(path: str | os.PathLike[str], sampling: FrameSampling = FrameSampling()) -> VideoInfo:
    """The frame count, frame rate and frame index of a video (a path or a bucket's URL), after the same
    checks as decoding: the one read of a clip's packets, whose index all its segments share.

    The container is opened in a child process under the time limit to open a clip
    (``sampling.clip_timeout_s``, else :meth:`FrameSampling.open_timeout_for`). Raises
    :class:`VideoDecodeError` when the file cannot be opened as a video, or opening it hangs or crashes.
    """
    source, size = check_video_source(path)
    with _DecoderProcess(source, sampling.open_timeout_for(size), want_index=True) as child:
        n_frames, fps, index, bytes_read = child.info("opening the video")
        child.end_probe()
    return VideoInfo(n_frames=n_frames, fps=fps, index=index, bytes_read=bytes_read)


def iter_frame_chunks(path: str | os.PathLike[str], sampling: FrameSampling = FrameSampling(),
                      frame_range: tuple[int, int] | None = None,
                      pick: Callable[[np.ndarray, float], np.ndarray] | None = None, *,
                      index: FrameIndex | None = None, limit_corrupt: bool = True,
                      stats: ReadStats | None = None) -> Iterator[FrameChunk]:
    """Yield the sampled frames of a video chunk by chunk.

    ``frame_range=(start, stop)`` keeps only the sampled frames with native index in
    ``[start, stop)``; the sampling stays anchored at frame 0, so the chunks of consecutive
    ranges concatenate to exactly the frames of the whole clip. ``pick(sampled, fps)``, when given,
    returns the subset of the sampled native indices to decode (ascending; adaptive scoring).

    Decoding runs in a child process, at most two chunks ahead of the consumer, under a time
    limit that counts only the time the consumer waits for frames
    (:meth:`FrameSampling.timeout_for`): a decoder that hangs or aborts fails this clip alone.

    ``path`` may be a bucket's URL (``s3://``, ``gs://``): the decoder then reads it by byte
    ranges. ``index`` (from :func:`probe_video`, or a segment's window of it) spares the decoder
    its own pass over the packets: it seeks to the keyframe before the range and reads on from
    there only. ``stats``, when given, receives the bytes read.

    Raises :class:`VideoDecodeError` (also an ``OSError``) naming the file and the frames when
    the file cannot be opened, a frame range cannot be decoded, the container declares more
    frames than it holds, more than :data:`MAX_CORRUPT_SHARE` of the sampled frames are
    corrupt (unless ``limit_corrupt`` is False: a segment of a split clip, whose limit applies
    to the whole clip, see :func:`corrupt_share_error`), or the decoder exceeds its time limit or dies.
    """
    p, size = check_video_source(path)
    with _DecoderProcess(p, sampling.open_timeout_for(0 if index is not None else size), index) as child:
        n_frames, fps, _, _ = child.info("opening the video")
        indices = sampled_indices(n_frames, sampling.step_for(fps), frame_range)
        if pick is not None:
            indices = np.asarray(pick(indices, fps), np.int64)
        if sampling.clip_timeout_s is None:  # the frames' share of the default limit, now that they are known
            start, stop = (0, n_frames) if frame_range is None else (frame_range[0], min(frame_range[1], n_frames))
            child.extend_limit(sampling.timeout_for(max(0, stop - start)) - DECODE_TIMEOUT_BASE_S)
        child.send((indices, sampling.chunk_size))
        lost, received = 0, 0
        while received < len(indices):
            where = f"frames {indices[received]}-{indices[-1]}"
            frame_indices, frames, n_lost = child.chunk(where, sampling.chunk_size)
            if frame_indices is None:
                break
            lost += n_lost
            received = int(np.searchsorted(indices, frame_indices[-1], side="right"))
            problem = corrupt_share_error(lost, len(indices), f" in frames {indices[0]}-{indices[-1]}") \
                if limit_corrupt else None
            if problem is not None:
                raise VideoDecodeError(f"{p}: {problem}")
            times = frame_indices / fps if fps > 0 else np.full(len(frame_indices), np.nan)
            yield FrameChunk(frame_indices=frame_indices, times_s=times.astype(np.float64), frames=frames,
                             native_fps=fps, n_corrupt=n_lost, n_native_frames=n_frames)
        if received >= len(indices):
            child.end_of_stream("the end of the video")
        if stats is not None:
            stats.bytes_read = child.bytes_read


def corrupt_share_error(n_corrupt: int, n_sampled: int, where: str = "") -> str | None:
    """Why a clip with ``n_corrupt`` of its ``n_sampled`` sampled frames undecodable is an error; None when it is not.

    The limit (:data:`MAX_CORRUPT_SHARE`) applies to a whole clip: a split clip's segments add up
    their counts first, so it gets the status it would get unsplit.
    """
    if n_corrupt > MAX_CORRUPT_SHARE * n_sampled:
        return (f"{n_corrupt} of the {n_sampled} sampled frames{where} are corrupt or missing "
                f"(more than {MAX_CORRUPT_SHARE:.0%})")
    return None


@dataclass
class _Child:
    """A started ``featurizers.decoding.decode_child`` process and its pipes and shared memory file."""

    process: subprocess.Popen
    to_child: Connection
    from_child: Connection
    shm_fd: int
    videos: int = 0
    """Videos it finished cleanly."""
    environ: dict[str, str] = field(default_factory=dict)
    """The environment it started with: a bucket's credentials and endpoint are read from it."""

    @classmethod
    def start(cls) -> _Child:
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        shm_fd = _anonymous_file()
        package_root = str(Path(__file__).resolve().parents[2])  # the child runs this very code
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "featurizers.decoding.decode_child", str(child_in), str(child_out), str(shm_fd)],
                pass_fds=(child_in, child_out, shm_fd), env=env, stdin=subprocess.DEVNULL)
        finally:
            os.close(child_in), os.close(child_out)
        return cls(process, Connection(to_child, readable=False), Connection(from_child, writable=False), shm_fd,
                   environ=dict(os.environ))

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.to_child.close(), self.from_child.close()
        os.close(self.shm_fd)


def _anonymous_file() -> int:
    """A file descriptor for shared frames that leaves nothing behind: a memfd on Linux."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("emotiw-decode")
    fd, name = tempfile.mkstemp(prefix="emotiw-decode-")
    os.unlink(name)
    return fd


MAX_VIDEOS_PER_DECODER = 256
"""A decoder process that finished a video cleanly decodes the next one; after this many it is
retired and a fresh one started, so that nothing a demuxer leaks can pile up over an archive."""

_ready: _Child | None = None
"""A decoder process waiting for its next video. Starting Python and importing PyAV and NumPy
costs 0.15-0.3 s of CPU, as much as describing several frames, so a child that ended its last
video cleanly is kept for the next (a failed, stopped or timed-out one is killed)."""
_ready_lock = threading.Lock()


def _take_child() -> _Child:
    global _ready
    with _ready_lock:
        child, _ready = _ready, None
    if child is not None and child.process.poll() is None and child.environ == os.environ:
        return child
    if child is not None:
        child.close()
    return _Child.start()


def _give_back(child: _Child) -> None:
    """Keep a child that ended its video cleanly for the next one, unless one is already kept."""
    global _ready
    child.videos += 1
    with _ready_lock:
        if _ready is None and child.videos < MAX_VIDEOS_PER_DECODER and child.process.poll() is None:
            _ready, child = child, None
    if child is not None:
        child.close()


@atexit.register
def _stop_ready() -> None:
    if _ready is not None:
        _ready.close()


class _DecoderProcess:
    """A child process decoding one video (:mod:`featurizers.decoding.decode_child`), under a time limit.

    The child goes back for the next video only once this one ended cleanly (its end of stream
    read, or the probe answered); on any other exit it is killed, as it may be stuck.

    A plain subprocess, not ``multiprocessing``: Dask workers are daemonic processes, which
    ``multiprocessing`` forbids to have children. Frames come back through an anonymous
    shared memory file (:func:`_anonymous_file`); only small messages go through the pipes.
    """

    def __init__(self, path: str, limit_s: float, index: FrameIndex | None = None, want_index: bool = False) -> None:
        self.path = path
        self.bytes_read = -1
        self.limit_s = limit_s
        self.remaining_s = limit_s
        self._shared: mmap.mmap | None = None
        self._slot_bytes = 0
        self._ended_cleanly = False
        self._child = _take_child()
        self._process, self._shm_fd = self._child.process, self._child.shm_fd
        self._to_child, self._from_child = self._child.to_child, self._child.from_child
        self.send((str(path), index, want_index))

    def __enter__(self) -> _DecoderProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the shared memory; keep the child for the next video if this one ended cleanly,
        else stop it (it may be stuck mid-video) and release its pipes."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None
        if self._ended_cleanly:
            _give_back(self._child)
        else:
            self._child.close()

    def end_probe(self) -> None:
        """Tell the child the header was all we wanted; it then waits for its next video."""
        self.send(None)
        self._ended_cleanly = True

    def end_of_stream(self, where: str) -> None:
        """Read the child's end of stream after the last chunk, so that it can take another video."""
        try:
            message = self._receive(where)
            self._ended_cleanly = message[0] == "done"
            if self._ended_cleanly:
                self.bytes_read = message[1]
        except VideoDecodeError:
            self._ended_cleanly = False

    def extend_limit(self, seconds: float) -> None:
        self.limit_s += seconds
        self.remaining_s += seconds

    def send(self, message: object) -> None:
        try:
            self._to_child.send(message)
        except (BrokenPipeError, OSError):
            pass  # the child is gone: the next receive says why

    def _receive(self, where: str) -> tuple:
        started = time.monotonic()
        ready = self._from_child.poll(max(0.0, self.remaining_s))
        self.remaining_s -= time.monotonic() - started
        if not ready:
            raise VideoDecodeError(
                f"{self.path}: decoding stopped making progress at {where}: over the time limit "
                f"of {self.limit_s:.0f} s (--clip-timeout); the decoder was stopped")
        try:
            message = self._from_child.recv()
        except (EOFError, OSError):
            code = self._process.wait()
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise VideoDecodeError(f"{self.path}: the decoder process died ({how}) at {where}") from None
        if message[0] == "error":
            raise VideoDecodeError(f"{self.path}: {message[1]}")
        return message

    def info(self, where: str) -> tuple[int, float, FrameIndex | None, int]:
        """The video's frame count and rate, its index when asked for, and the bytes read to open it."""
        _, n_frames, fps, declared, index, bytes_read = self._receive(where)
        self.bytes_read = bytes_read
        if n_frames == 0:
            raise VideoDecodeError(f"{self.path}: the container holds no video frames")
        if declared > n_frames:
            raise VideoDecodeError(f"{self.path}: the container declares {declared} frames but holds {n_frames}: "
                                   f"frames {n_frames}-{declared - 1} are missing")
        return n_frames, fps, index, bytes_read

    def chunk(self, where: str, chunk_size: int) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """The next chunk's indices, a private copy of its frames and its lost-frame count; Nones at the end."""
        message = self._receive(where)
        if message[0] == "done":
            self._ended_cleanly = True
            return None, None, 0
        _, slot, frame_indices, n_lost, shape = message
        if self._shared is None:
            self._slot_bytes = chunk_size * int(np.prod(shape[1:]))
            self._shared = mmap.mmap(self._shm_fd, SLOTS * self._slot_bytes)
        view = np.frombuffer(self._shared, np.uint8, int(np.prod(shape)), slot * self._slot_bytes)
        frames = view.reshape(shape).copy()
        del view
        self.send(("free", slot))
        return frame_indices, frames, n_lost
