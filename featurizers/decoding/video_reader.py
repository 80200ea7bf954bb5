"""Read chosen frames of a video with PyAV, synchronously, so memory holds one chunk at a time.

Why not decord: decord 0.6.0 reads packets ahead without bound while its decoder thread has no
frame ready (``VideoReader::NextFrameImpl`` pushes one packet per poll), so after the first
frame nearly the whole file sits in its packet queue; its decoder thread then turns every one
of them into an RGB frame in an unbounded queue whenever the consumer is slower than the
decoder. A slow consumer (face detection) made it hold the whole clip decoded: 6.3 GB for a
9,440-frame 640x360 clip. Here decoding runs in the caller's thread, one packet when a frame is
needed, and nothing is decoded that was not asked for.

Frames are numbered as decord numbers them, so indices and pixels stay what they were: one
demux pass lists the stream's packets, and a frame's index is the rank of its timestamp among
them (:mod:`featurizers.decoding.frame_index`). RGB conversion is FFmpeg's default (the same as
decord's; equal to the bit on H.264).
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import numpy as np

from featurizers.decoding.frame_index import FrameIndex, index_of_packets
from featurizers.decoding.avi_index import avi_sample_table
from featurizers.decoding.mp4_index import ReadAt, SampleTable, find_moov, sample_table


class ReadError(Exception):
    """A video could not be opened, indexed or decoded; the message names what failed."""


class _UnreadableError(ReadError):
    """The demuxer failed: nothing after this point of the file can be read."""


@dataclass(frozen=True)
class DecodedChunk:
    """Decoded frames of consecutive wanted indices; ``n_lost`` wanted frames had no usable picture.

    ``frames`` is a list of RGB (H, W, 3) arrays, so a caller copies each straight to where it
    goes (a shared memory slot) instead of through a stacked copy.
    """

    frame_indices: np.ndarray
    frames: list[np.ndarray]
    n_lost: int


class IndexedVideo:
    """An opened video stream with its frame index, ready to decode any frame range.

    ``source`` is a local path or a seekable file object (a bucket's object read by byte ranges).
    Given an ``index`` (the clip's, or a segment's window of it, from the clip's probe), nothing
    is read to number the frames; without one, the index is built here: one demux pass that
    reads the packets' timestamps and keyframe flags, decoding nothing; or, for an MP4/MOV file,
    its sample tables alone (:mod:`featurizers.decoding.mp4_index`), for an AVI its ``idx1``
    (:mod:`featurizers.decoding.avi_index`), without the media data.
    """

    def __init__(self, source: str | BinaryIO, index: FrameIndex | None = None) -> None:
        import av

        table = _sample_table(source) if index is None else None
        try:
            self._container = av.open(source)
        except Exception as exc:  # PyAV raises its own error family for bad files, OSError for missing
            raise ReadError(f"cannot open as a video ({_first_line(exc)})") from exc
        if not self._container.streams.video:
            self.close()
            raise ReadError("the container holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = 1  # one worker decodes one clip; parallelism is Beam's
        if index is None and table is not None:
            index = self._index_of_table(table)
        if index is None:
            try:
                index = self._index()
            except Exception as exc:
                self.close()
                raise ReadError(f"cannot read the packets ({_first_line(exc)})") from exc
        self.index = index
        self.fps = index.fps
        self.n_frames = index.n_frames
        self.declared_frames = index.declared_frames
        """The frame count the container's header states (0: none); ``n_frames`` counts the packets."""

    def _index_of_table(self, table: SampleTable) -> FrameIndex | None:
        """The index from an MP4's sample tables, shifted as FFmpeg shifts them (measured on the first
        packet); None when they do not describe this stream as FFmpeg reads it."""
        stream = self._stream
        if table.timescale and (stream.time_base is None or stream.time_base != Fraction(1, table.timescale)):
            return None
        if int(stream.frames or 0) not in (0, len(table.pts)):
            return None
        try:
            first = next(p for p in self._container.demux(stream) if p.size)
        except Exception:  # StopIteration or a demuxer error: the demux pass will say what is wrong
            return None
        if first.pts is None:
            return None
        self._container.seek(0)
        shift = int(first.pts) - int(table.pts[0])
        rate = stream.average_rate
        packets = zip((table.pts + shift).tolist(), [None] * len(table.pts), table.keyframe.tolist())
        return index_of_packets(packets, float(rate) if rate else math.nan, int(stream.frames or 0))

    def _index(self) -> FrameIndex:
        """The stream's frame index from one demux pass over its packets (no frame decoded)."""
        rate = self._stream.average_rate
        packets = ((p.pts, p.dts, p.is_keyframe) for p in self._container.demux(self._stream) if p.size)
        return index_of_packets(packets, float(rate) if rate else math.nan, int(self._stream.frames or 0))

    def close(self) -> None:
        self._container.close()

    def _seek_before(self, index: int) -> None:
        """Position the demuxer on the last keyframe at or before frame ``index``."""
        key = self.index.keyframe_at_or_before(index)
        self._container.seek(self.index.timestamp(key), stream=self._stream, backward=True, any_frame=False)

    def _pictures(self, first: int) -> Iterator[tuple[int | None, object]]:
        """(index, frame) of each decoded picture from the keyframe before ``first`` on.

        ``index`` is None for a picture whose timestamp is not one of the stream's packets. A
        packet the decoder rejects yields nothing: its frame shows up as missing.
        """
        import av

        self._seek_before(first)
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as exc:  # the file itself cannot be read on: no frame after this
                raise _UnreadableError(_first_line(exc)) from exc
            try:
                pictures = packet.decode()
            except av.error.FFmpegError:
                continue  # a corrupt packet: its frame will be missing and counted as lost
            for picture in pictures:
                ts = picture.pts if picture.pts is not None else picture.dts
                yield (self.index.rank(int(ts)) if ts is not None else None), picture

    def read(self, indices: np.ndarray, chunk_size: int) -> Iterator[DecodedChunk]:
        """Decode the frames at ascending ``indices``, ``chunk_size`` wanted frames per chunk.

        A wanted frame that the decoder skips or marks corrupt is left out of its chunk and
        counted in ``n_lost``. Frames still wanted when the stream ends, or when the file cannot
        be read on, raise :class:`ReadError` naming them.
        """
        if len(indices) == 0:
            return
        position, lost = 0, 0  # next wanted position; frames lost since the last chunk went out
        kept_indices: list[int] = []
        kept_frames: list[np.ndarray] = []
        chunk_end = min(chunk_size, len(indices))
        chunk_start = int(indices[0])

        def take() -> DecodedChunk:
            nonlocal lost
            out = DecodedChunk(np.asarray(kept_indices, np.int64), list(kept_frames), lost)
            kept_indices.clear(), kept_frames.clear()
            lost = 0
            return out

        try:
            for index, picture in self._pictures(int(indices[0])):
                if index is None:
                    continue
                while position < len(indices) and indices[position] <= index:
                    if indices[position] == index and not picture.is_corrupt:
                        kept_indices.append(index)
                        kept_frames.append(_rgb(picture))
                    else:
                        lost += 1
                    position += 1
                    if position == chunk_end:
                        chunk = take()
                        if len(chunk.frame_indices):
                            yield chunk
                        elif position == len(indices):
                            raise ReadError(f"frames {chunk_start}-{indices[-1]} of {self.n_frames} could not be decoded")
                        else:
                            lost = chunk.n_lost  # a chunk with no picture: its losses go with the next
                        chunk_start = int(indices[position]) if position < len(indices) else -1
                        chunk_end = min(chunk_end + chunk_size, len(indices))
                if position == len(indices):
                    return
        except _UnreadableError as exc:
            raise ReadError(f"frames {indices[position]}-{indices[-1]} of {self.n_frames} could not be read ({exc})") from exc
        raise ReadError(
            f"frames {indices[position]}-{indices[-1]} of {self.n_frames} could not be decoded: "
            "the stream ends before the frame count its container declares"
        )


def _sample_table(source: str | BinaryIO) -> SampleTable | None:
    """The first video stream's frames from an MP4's ``moov`` box or an AVI's ``idx1`` only; None otherwise."""
    try:
        if isinstance(source, str):
            if not os.path.isfile(source):  # a pipe: nothing may be read ahead of the demuxer
                return None
            with open(source, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                return _table_of(lambda at, n: os.pread(f.fileno(), n, at), size)
        else:
            size = source.seek(0, os.SEEK_END)

            def read_at(at: int, n: int) -> bytes:
                source.seek(at)
                return source.read(n)

            try:
                return _table_of(read_at, size)
            finally:
                source.seek(0)
    except (OSError, ValueError, struct.error, IndexError):
        return None  # not an MP4 we read: the demux pass indexes it


def _table_of(read_at: ReadAt, size: int) -> SampleTable | None:
    moov = find_moov(read_at, size)
    if moov is not None:
        return sample_table(moov, size)
    return avi_sample_table(read_at, size)


def _rgb(picture) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a decoded picture, turned upright as its display matrix says (as decord does)."""
    frame = picture.to_ndarray(format="rgb24")
    turns = round((picture.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=turns)) if turns else frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
