"""Frames of a video wherever it lies: a local path, or a bucket's object read by byte ranges."""

from __future__ import annotations

from collections.abc import Iterator

from common.stores.storage import is_remote, local_copy
from featurizers.decoding.decode import FrameChunk, FrameSampling, ReadStats, iter_frame_chunks
from featurizers.decoding.frame_index import FrameIndex


def video_chunks(url: str, sampling: FrameSampling, frame_range: tuple[int, int] | None = None, *,
                 index: FrameIndex | None = None, limit_corrupt: bool = True,
                 stats: ReadStats | None = None) -> Iterator[FrameChunk]:
    """Chunks of a local path or an object-store URL (``s3://``, ``gs://``), or of its frames ``[start, stop)``.

    With the clip's frame ``index`` (planned clips), a bucket's video is read in place by byte
    ranges: a segment fetches only the bytes from the keyframe before its first frame to its
    end. Without one (splitting off), a remote video is streamed whole to the worker's temp
    folder first, as the decoder would read it twice (once to index it) and deleted once its
    frames have been read, or as soon as the caller stops early (the generator is closed).
    """
    if index is not None and is_remote(url):
        yield from iter_frame_chunks(url, sampling, frame_range, index=index, limit_corrupt=limit_corrupt,
                                     stats=stats)
        return
    with local_copy(url) as path:
        yield from iter_frame_chunks(path, sampling, frame_range, index=index, limit_corrupt=limit_corrupt,
                                     stats=stats)
