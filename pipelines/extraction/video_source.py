"""Frames of a video wherever it lies: the decoder needs a local file, so remote videos are copied first."""

from __future__ import annotations

from collections.abc import Iterator

from common.storage import local_copy
from featurizers.decoding.decode import FrameChunk, FrameSampling, iter_frame_chunks


def video_chunks(url: str, sampling: FrameSampling,
                 frame_range: tuple[int, int] | None = None) -> Iterator[FrameChunk]:
    """Chunks of a local path or an object-store URL (``s3://``, ``gs://``), or of its frames ``[start, stop)``.

    A remote video is streamed to the worker's temp folder and deleted once its frames have
    been read, or as soon as the caller stops early (the generator is closed).
    """
    with local_copy(url) as path:
        yield from iter_frame_chunks(path, sampling, frame_range)
