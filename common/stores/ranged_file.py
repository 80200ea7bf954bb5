"""A read-only file over an object in a bucket, fetched by byte ranges, that counts what it fetched.

A decoder that seeks in a video stored in ``s3://`` or ``gs://`` must not download the whole
object: each read fetches only the aligned blocks that hold the bytes asked for, through
fsspec's ranged reads. The count of fetched bytes says what a segment really cost.
"""

from __future__ import annotations

import io
import os
from collections import OrderedDict

BLOCK_BYTES = 256 << 10
"""Bytes fetched per ranged GET: a demuxer's small sequential reads become few requests."""
CACHED_BLOCKS = 8
"""Blocks kept: a demuxer that goes back to the header or the index (an MP4's ``moov`` at the end)
finds them without fetching them again."""


class RangedFile(io.RawIOBase):
    """``read``/``seek``/``tell`` over an object, fetched in aligned blocks by ranged GETs, the last few kept."""

    def __init__(self, fs: object, path: str, size: int, block_bytes: int = BLOCK_BYTES,
                 cached_blocks: int = CACHED_BLOCKS) -> None:
        super().__init__()
        self._fs, self._path, self.size = fs, path, size
        self.name = path
        self._block_bytes, self._cached = block_bytes, cached_blocks
        self._position = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self.bytes_fetched = 0
        """Bytes fetched from the store so far."""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self._position
        stop = min(self._position + size, self.size)
        if stop <= self._position:
            return b""
        first, last = self._position // self._block_bytes, (stop - 1) // self._block_bytes
        data = b"".join(self._block(k) for k in range(first, last + 1))
        offset = self._position - first * self._block_bytes
        out = data[offset : offset + stop - self._position]
        self._position += len(out)
        return out

    def _block(self, k: int) -> bytes:
        if k in self._blocks:
            self._blocks.move_to_end(k)
            return self._blocks[k]
        start = k * self._block_bytes
        block = bytes(self._fs.cat_file(self._path, start=start, end=min(start + self._block_bytes, self.size)))
        self.bytes_fetched += len(block)
        self._blocks[k] = block
        while len(self._blocks) > self._cached:
            self._blocks.popitem(last=False)
        return block


def open_ranged(url: str) -> RangedFile:
    """A :class:`RangedFile` over the object at ``url`` (raises FileNotFoundError when there is none)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return RangedFile(fs, path, int(fs.size(path)))
