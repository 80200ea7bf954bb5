"""Every frame's timestamp and keyframe flag of an MP4/MOV video, from its sample tables alone.

The ``moov`` box holds per sample its decode duration (``stts``), composition offset
(``ctts``), size (``stsz``) and whether it is a sync sample (``stss``): the whole frame index
without reading one byte of the media data. For an hour of video that is about a megabyte
instead of the whole file. Only the plain case is read here (one edit, normal rate, no empty
samples); anything else gives None and the caller falls back to one demux pass.

Timestamps come out in the track's time scale, as FFmpeg's demuxer gives them up to a constant
shift (its edit-list handling), which the caller measures on the first packet.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, n)``: up to ``n`` bytes of the file from ``offset``."""

MAX_MOOV_BYTES = 256 << 20
"""A larger ``moov`` is not believed (a damaged size field): the caller demuxes instead."""
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


@dataclass(frozen=True)
class SampleTable:
    """The first video track's samples in file (decode) order."""

    pts: np.ndarray
    """Presentation times in the track's time scale, before FFmpeg's constant shift."""
    keyframe: np.ndarray
    timescale: int


def _boxes(data: bytes, start: int = 0, stop: int | None = None):
    """(type, payload start, payload stop) of the boxes laid end to end in ``data[start:stop]``."""
    stop = len(data) if stop is None else stop
    at = start
    while at + 8 <= stop:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > stop:
                return
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = stop - at
        if size < header or at + size > stop:
            return
        yield kind, at + header, at + size
        at += size


def find_moov(read_at: ReadAt, file_size: int) -> bytes | None:
    """The ``moov`` box's payload, found by walking the top-level box headers; None when not an MP4."""
    head = read_at(0, 8)
    if len(head) < 8 or head[4:8] != b"ftyp":
        return None
    at = 0
    while at + 8 <= file_size:
        head = read_at(at, 16)
        if len(head) < 8:
            return None
        size, kind = struct.unpack_from(">I4s", head)
        header = 8
        if size == 1 and len(head) >= 16:
            (size,) = struct.unpack_from(">Q", head, 8)
            header = 16
        elif size == 0:
            size = file_size - at
        if size < header:
            return None
        if kind == b"moov":
            if size > MAX_MOOV_BYTES:
                return None
            data = read_at(at + header, size - header)
            return data if len(data) == size - header else None
        at += size
    return None


def _children(data: bytes, start: int, stop: int) -> dict[bytes, tuple[int, int]]:
    found: dict[bytes, tuple[int, int]] = {}
    for kind, a, b in _boxes(data, start, stop):
        found.setdefault(kind, (a, b))
    return found


def sample_table(moov: bytes, file_size: int) -> SampleTable | None:
    """The first video track's sample table from the ``moov`` payload; None for any case not read here,
    and when its samples reach past the file's ``file_size`` bytes (a cut file: the demux pass says which
    frames are missing)."""
    for kind, a, b in _boxes(moov):
        if kind != b"trak":
            continue
        trak = _children(moov, a, b)
        if b"mdia" not in trak:
            continue
        mdia = _children(moov, *trak[b"mdia"])
        if b"hdlr" not in mdia or moov[mdia[b"hdlr"][0] + 8 : mdia[b"hdlr"][0] + 12] != b"vide":
            continue
        return _video_samples(moov, trak, mdia, file_size)
    return None


def _video_samples(moov: bytes, trak: dict, mdia: dict, file_size: int) -> SampleTable | None:
    if b"mdhd" not in mdia or b"minf" not in mdia:
        return None
    at = mdia[b"mdhd"][0]
    timescale = struct.unpack_from(">I", moov, at + (20 if moov[at] == 1 else 12))[0]
    minf = _children(moov, *mdia[b"minf"])
    if b"stbl" not in minf or timescale == 0:
        return None
    stbl = _children(moov, *minf[b"stbl"])
    if b"stts" not in stbl or b"stsz" not in stbl:
        return None
    media_time = 0
    if b"edts" in trak:
        edts = _children(moov, *trak[b"edts"])
        if b"elst" in edts:
            media_time = _plain_edit(moov, edts[b"elst"][0])
            if media_time is None:
                return None
    sizes = _stsz(moov, stbl[b"stsz"][0])
    n = len(sizes)
    if n == 0 or not np.all(sizes > 0) or _media_end(moov, stbl, sizes) > file_size:
        return None
    durations = _pairs(moov, stbl[b"stts"][0], np.uint32)
    if durations is None or len(durations) != n:
        return None
    dts = np.concatenate([[0], np.cumsum(durations.astype(np.int64))[:-1]])
    offsets = np.zeros(n, np.int64)
    if b"ctts" in stbl:
        ctts = _pairs(moov, stbl[b"ctts"][0], np.int32)
        if ctts is None or len(ctts) != n:
            return None
        offsets = ctts.astype(np.int64)
    keyframe = np.ones(n, bool)
    if b"stss" in stbl:
        at = stbl[b"stss"][0]
        (count,) = struct.unpack_from(">I", moov, at + 4)
        sync = np.frombuffer(moov, ">u4", count, at + 8).astype(np.int64) - 1
        if np.any((sync < 0) | (sync >= n)):
            return None
        keyframe = np.zeros(n, bool)
        keyframe[sync] = True
    pts = dts + offsets
    if np.any(pts < media_time):  # FFmpeg would drop or mark samples the edit cuts off
        return None
    return SampleTable(pts, keyframe, int(timescale))


def _plain_edit(moov: bytes, at: int) -> int | None:
    """The media time of a plain edit list: one edit at normal rate (the usual shift of a B-frame
    delay), after empty edits if any (a start delay): timestamps then move by a constant. None for other lists."""
    version = moov[at]
    (count,) = struct.unpack_from(">I", moov, at + 4)
    entry = 20 if version == 1 else 12
    layout = ">qqh" if version == 1 else ">iih"
    if count == 0 or at + 8 + count * entry > len(moov):
        return None
    edits = [struct.unpack_from(layout, moov, at + 8 + i * entry) for i in range(count)]
    *empty, (_, media_time, rate) = edits
    if any(e[1] != -1 for e in empty) or rate != 1 or media_time < 0:
        return None
    return media_time


def _media_end(moov: bytes, stbl: dict, sizes: np.ndarray) -> int:
    """One past the last byte of the track's samples, from its chunk offsets (``stco``/``co64``) and ``stsc``."""
    if b"stsc" not in stbl or (b"stco" not in stbl and b"co64" not in stbl):
        return 1 << 62
    at = stbl[b"stco"][0] if b"stco" in stbl else stbl[b"co64"][0]
    (count,) = struct.unpack_from(">I", moov, at + 4)
    offsets = np.frombuffer(moov, ">u4" if b"stco" in stbl else ">u8", count, at + 8).astype(np.int64)
    at = stbl[b"stsc"][0]
    (entries,) = struct.unpack_from(">I", moov, at + 4)
    table = np.frombuffer(moov, ">u4", 3 * entries, at + 8).reshape(-1, 3).astype(np.int64)
    if count == 0 or entries == 0:
        return 1 << 62
    firsts = np.append(table[:, 0], count + 1)
    per_chunk = np.repeat(table[:, 1], np.maximum(np.diff(firsts), 0))[:count]
    starts = np.concatenate([[0], np.cumsum(per_chunk)[:-1]])
    if len(per_chunk) != count or per_chunk.sum() != len(sizes):
        return 1 << 62
    ends = np.concatenate([[0], np.cumsum(sizes)])
    return int(np.max(offsets + ends[starts + per_chunk] - ends[starts]))


def _stsz(moov: bytes, at: int) -> np.ndarray:
    size, count = struct.unpack_from(">II", moov, at + 4)
    if size:
        return np.full(count, size, np.int64)
    return np.frombuffer(moov, ">u4", count, at + 12).astype(np.int64)


def _pairs(moov: bytes, at: int, value_type: type) -> np.ndarray | None:
    """A run-length table of (count, value) pairs (``stts``, ``ctts``) expanded per sample."""
    (entries,) = struct.unpack_from(">I", moov, at + 4)
    if at + 8 + 8 * entries > len(moov):
        return None
    table = np.frombuffer(moov, ">u4", 2 * entries, at + 8).reshape(-1, 2)
    counts = table[:, 0].astype(np.int64)
    values = table[:, 1].astype(np.uint32).view(np.int32) if value_type is np.int32 else table[:, 1]
    if counts.sum() > 50_000_000:
        return None
    return np.repeat(values.astype(np.int64), counts)
