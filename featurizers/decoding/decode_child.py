"""The decoding side of an isolated clip: run as ``python -m featurizers.decoding.decode_child IN OUT SHM``.

The parent (:mod:`featurizers.decoding.decode`) starts such a process and sends it one video (a clip or
a frame range) at a time. For each, this side opens the video, reports its frame count and
rate, then decodes the frames it is sent into two slots of a shared memory file and says which
slot holds what; it reuses a slot only when the parent gives it back, so it is never more than
two chunks ahead (backpressure). Then it waits for the next video's path.
A decoder that hangs or aborts takes only this process down; the parent turns that into a
:class:`~common.errors.VideoDecodeError` for the clip.

A video in a bucket (``s3://``, ``gs://``) is opened through ranged reads
(:class:`common.stores.ranged_file.RangedFile`): the child fetches only the bytes it demuxes.

Messages (pickled over the two pipes):
  child -> parent: ("info", n_frames, fps, declared_frames, index or None, bytes_read)
                   | ("chunk", slot, frame_indices, n_lost, shape) | ("done", bytes_read) | ("error", message)
  parent -> child: (source, index or None, want_index); then None (a probe)
                   | (indices (np.ndarray of int64, ascending), chunk_size); then ("free", slot) ...;
                   then the next video. A "free" left over from the last video is ignored.
  ``index`` is the clip's :class:`~featurizers.decoding.frame_index.FrameIndex` (or a segment's
  window of it): given, the child reads nothing to number the frames; asked for (``want_index``),
  the child sends the one it built. ``bytes_read``: bytes of the video read so far.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
from multiprocessing.connection import Connection

import numpy as np

from common.stores.ranged_file import open_ranged
from featurizers.decoding.frame_index import FrameIndex
from featurizers.decoding.video_reader import IndexedVideo, ReadError

SLOTS = 2
"""Chunks the child may have decoded ahead of the parent: one being read, one being filled."""


class _ReadCounter:
    """Bytes of one video read by this process: a bucket's ranged file counts its fetches; for a
    local file, the process's read bytes (``rchar`` of /proc/self/io: the file, plus the pipes'
    small messages) since the video was opened."""

    def __init__(self, ranged: object | None) -> None:
        self._ranged = ranged
        self._start = _rchar()

    def __call__(self) -> int:
        if self._ranged is not None:
            return int(self._ranged.bytes_fetched)
        now = _rchar()
        return now - self._start if now is not None and self._start is not None else -1


def _rchar() -> int | None:
    try:
        with open("/proc/self/io", "rb") as stats:
            for line in stats:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def serve(source: str, index: FrameIndex | None, want_index: bool, inbox: Connection, outbox: Connection,
          shm_fd: int) -> None:
    """Decode ``source`` (a path or a bucket's URL) as the parent asks; every failure is reported, never raised."""
    ranged = None
    counter = _ReadCounter(None)
    try:
        if "://" in source and not source.startswith("file://"):
            ranged = open_ranged(source)
            counter = _ReadCounter(ranged)
        video = IndexedVideo(ranged if ranged is not None else source, index)
    except (ReadError, OSError) as exc:
        if ranged is not None:
            ranged.close()
        outbox.send(("error", str(exc) if isinstance(exc, ReadError) else f"cannot open as a video ({exc})"))
        return
    outbox.send(("info", video.n_frames, video.fps, video.declared_frames, video.index if want_index else None,
                 counter()))
    try:
        request = inbox.recv()
        if request is not None:  # None: a probe, the parent wanted the index, count and rate only
            indices, chunk_size = request
            _stream(video, indices, chunk_size, inbox, outbox, shm_fd, counter)
    finally:
        video.close()
        if ranged is not None:
            ranged.close()


def _stream(video: IndexedVideo, indices: np.ndarray, chunk_size: int, inbox: Connection, outbox: Connection,
            shm_fd: int, counter: _ReadCounter) -> None:
    """Send the frames at ``indices`` through the shared slots, then "done"; failures as messages."""
    shared: mmap.mmap | None = None
    slot_bytes = 0
    free = list(range(SLOTS))
    try:
        for chunk in video.read(indices, chunk_size):
            shape = (len(chunk.frames), *chunk.frames[0].shape)
            if shared is None:
                slot_bytes = chunk_size * chunk.frames[0].nbytes
                os.ftruncate(shm_fd, SLOTS * slot_bytes)
                shared = mmap.mmap(shm_fd, SLOTS * slot_bytes)
            if any(frame.shape != shape[1:] for frame in chunk.frames) or math.prod(shape) > slot_bytes:
                outbox.send(("error", f"the frame size changes within the video near frame {chunk.frame_indices[0]}"))
                return
            while not free:
                message = inbox.recv()
                free.append(message[1])
            slot = free.pop(0)
            view = np.frombuffer(shared, np.uint8, math.prod(shape), slot * slot_bytes).reshape(shape)
            for i, frame in enumerate(chunk.frames):
                view[i] = frame
            del view  # the mmap cannot close while a view exports its buffer
            outbox.send(("chunk", slot, chunk.frame_indices, chunk.n_lost, shape))
    except ReadError as exc:
        outbox.send(("error", str(exc)))
        return
    except (EOFError, BrokenPipeError):
        return  # the parent stopped reading: nothing left to do
    finally:
        if shared is not None:
            shared.close()
    outbox.send(("done", counter()))


def main(argv: list[str]) -> None:
    import av  # noqa: F401  imported before the path comes, so a process started ahead is ready

    in_fd, out_fd, shm_fd = (int(a) for a in argv[1:4])
    inbox, outbox = Connection(in_fd, writable=False), Connection(out_fd, readable=False)
    while True:
        try:
            message = inbox.recv()
            if not (isinstance(message, tuple) and len(message) == 3):
                continue  # a slot freed after the last video's final chunk
            serve(*message, inbox, outbox, shm_fd)
        except (EOFError, BrokenPipeError):
            return  # the parent closed the pipes: no more videos
        except Exception as exc:  # an unexpected failure still reaches the parent (which then stops us)
            outbox.send(("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    main(sys.argv)
