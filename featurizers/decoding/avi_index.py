"""Every frame's timestamp and keyframe flag of an AVI video, from its ``idx1`` index alone.

An AVI's legacy index lists every chunk of the ``movi`` list with its stream, keyframe flag,
offset and size: for the video stream, entry k is frame k. Reading it (16 bytes a frame) spares
a demux pass over the whole file. Only the plain case is read here (an ``idx1`` whose video
entries all hold data that lies inside the file, no OpenDML super-index); anything else gives
None and the caller falls back to one demux pass.
"""

from __future__ import annotations

import struct

import numpy as np

from featurizers.decoding.mp4_index import ReadAt, SampleTable

MAX_IDX1_BYTES = 256 << 20
_KEYFRAME = 0x10


def avi_sample_table(read_at: ReadAt, file_size: int) -> SampleTable | None:
    """The first video stream's frames from ``idx1``, in file order; None when not a plain AVI with one."""
    head = read_at(0, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    at, hdrl, movi, idx1 = 12, None, None, None
    while at + 8 <= file_size:
        kind, size = struct.unpack("<4sI", read_at(at, 8))
        if kind == b"LIST":
            list_type = read_at(at + 8, 4)
            if list_type == b"hdrl":
                hdrl = read_at(at + 12, size - 4)
            elif list_type == b"movi":
                movi = at + 8  # where idx1 offsets may count from (the "movi" fourcc)
        elif kind == b"idx1":
            if size > MAX_IDX1_BYTES:
                return None
            idx1 = read_at(at + 8, size)
        at += 8 + size + (size & 1)
    if hdrl is None or movi is None or idx1 is None or len(idx1) % 16:
        return None
    stream = _first_video_stream(hdrl)
    if stream is None:
        return None
    entries = np.frombuffer(idx1, np.dtype([("id", "S4"), ("flags", "<u4"), ("offset", "<u4"), ("size", "<u4")]))
    prefix = f"{stream:02d}".encode()
    video = entries[np.char.startswith(entries["id"], prefix) &
                    (np.char.endswith(entries["id"], b"dc") | np.char.endswith(entries["id"], b"db"))]
    if len(video) == 0 or np.any(video["size"] == 0):
        return None
    offsets = video["offset"].astype(np.int64)
    base = movi if offsets[0] < movi else 0  # offsets from the movi list, or from the file's start
    if np.max(base + offsets + 8 + video["size"].astype(np.int64)) > file_size:
        return None  # entries past the end: the demux pass counts the frames that are there
    return SampleTable(np.arange(len(video), dtype=np.int64), (video["flags"] & _KEYFRAME) != 0, 0)


def _first_video_stream(hdrl: bytes) -> int | None:
    """The number of the first stream whose header says ``vids``; None with an OpenDML index (``indx``)."""
    if hdrl[:4] != b"avih":
        return None
    number, found = 0, None
    at = 8 + struct.unpack_from("<I", hdrl, 4)[0]  # after the main header
    while at + 12 <= len(hdrl):
        kind, size = struct.unpack_from("<4sI", hdrl, at)
        if kind == b"LIST" and hdrl[at + 8 : at + 12] == b"strl":
            body = hdrl[at + 12 : at + 8 + size]
            if b"indx" in _chunk_kinds(body):
                return None
            if found is None and body[:4] == b"strh" and body[8:12] == b"vids":
                found = number
            number += 1
        elif kind == b"LIST" and hdrl[at + 8 : at + 12] == b"odml":
            return None
        at += 8 + size + (size & 1)
    return found


def _chunk_kinds(body: bytes) -> list[bytes]:
    kinds, at = [], 0
    while at + 8 <= len(body):
        kind, size = struct.unpack_from("<4sI", body, at)
        kinds.append(kind)
        at += 8 + size + (size & 1)
    return kinds
