"""A read-only file over an object in a bucket, fetched by byte ranges, that counts what it fetched.

A decoder that seeks in a video stored in ``s3://`` or ``gs://`` must not download the whole
object: each read fetches only the bytes asked for, plus a small read-ahead block, through
fsspec's ranged reads. The count of fetched bytes says what a segment really cost.
"""

from __future__ import annotations

import io
import os

READ_AHEAD_BYTES = 1 << 20
"""Bytes fetched beyond a read, so that a demuxer's small sequential reads are few requests."""


class RangedFile(io.RawIOBase):
    """``read``/``seek``/``tell`` over an object; one ranged GET per read-ahead block."""

    def __init__(self, fs: object, path: str, size: int, read_ahead: int = READ_AHEAD_BYTES) -> None:
        super().__init__()
        self._fs, self._path, self.size = fs, path, size
        self.name = path
        self._read_ahead = read_ahead
        self._position = 0
        self._block_start, self._block = 0, b""
        self.bytes_fetched = 0
        """Bytes fetched from the store so far (read-ahead included)."""

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
        block_stop = self._block_start + len(self._block)
        if not (self._block_start <= self._position and stop <= block_stop):
            fetch_stop = min(max(stop, self._position + self._read_ahead), self.size)
            self._block = bytes(self._fs.cat_file(self._path, start=self._position, end=fetch_stop))
            self._block_start = self._position
            self.bytes_fetched += len(self._block)
        data = self._block[self._position - self._block_start : stop - self._block_start]
        self._position += len(data)
        return data


def open_ranged(url: str, read_ahead: int = READ_AHEAD_BYTES) -> RangedFile:
    """A :class:`RangedFile` over the object at ``url`` (raises FileNotFoundError when there is none)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return RangedFile(fs, path, int(fs.size(path)), read_ahead)
