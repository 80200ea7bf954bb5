"""Area resampling of many boxes of uint8 frames in one compiled call (MTCNN's crops and pyramid).

MTCNN shrinks each frame to its pyramid levels, and each candidate box to 24x24 or 48x48, by
area averaging (``interpolate(mode="area")``, i.e. adaptive average pooling). Done through
torch this is one call per box, about 40 us each and ~30 per frame, plus a float copy of every
frame; here one numba kernel does all boxes of a batch straight from the uint8 frames, in
parallel over frames, with the same pooling bins and the same float32 arithmetic: the results
equal torch's bit for bit (tests/featurizers/test_area_resize.py).

A bin's sum of integer pixels is exact in an integer summed-area table (4 lookups a bin), so a
frame whose boxes cover more pixels than :data:`TABLE_AREA_RATIO` frames (its 9 pyramid levels
cover 9) is summed once into a table, reused by all its boxes; a frame with a few small boxes is
summed box by box. Each thread keeps one table, rebuilt per frame: never one per frame of the
batch. Both ways give the same integers, so the choice never changes a result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

_MAX_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
TABLE_AREA_RATIO = 0.5
"""A frame gets a summed-area table when its boxes' areas add up to this many frames or more.
Building a table costs about one pass over the frame. Measured on 32 frames, one thread: R-Net's
crops ran 1.7x (720x576, boxes of 1.8 frames a frame) and 3.6x (1280x720, 5.4 frames) faster
from tables than summed box by box; ratios from 0 to 1 measured alike, within the noise."""

INT32_TABLE_PIXELS = (2**31 - 1) // 255
"""Frames up to this many pixels (about 8.4 million, 3840x2160 included) sum into int32 tables;
larger ones into int64."""


@numba.njit(nogil=True, cache=True)
def _fill_table(frame, table):  # pragma: no cover - compiled
    """table[y, x, c] = sum of frame[:y, :x, c], with a zero first row and column."""
    height, width = frame.shape[0], frame.shape[1]
    for x in range(width + 1):
        for c in range(3):
            table[0, x, c] = 0
    for y in range(height):
        for c in range(3):
            table[y + 1, 0, c] = 0
        red = 0
        green = 0
        blue = 0
        for x in range(width):
            red += frame[y, x, 0]
            green += frame[y, x, 1]
            blue += frame[y, x, 2]
            table[y + 1, x + 1, 0] = table[y, x + 1, 0] + red
            table[y + 1, x + 1, 1] = table[y, x + 1, 1] + green
            table[y + 1, x + 1, 2] = table[y, x + 1, 2] + blue


# error_model numpy: no zero-division check in the loop (a bin is never empty), so the compiler
# can divide several values at once; IEEE division, so the results are the same.
@numba.njit(nogil=True, cache=True, error_model="numpy")
def _resize_box(frame, table, from_table, top, bottom, left, right, out_h, out_w, start, offset, scale,
                out):  # pragma: no cover - compiled
    height = bottom - top
    width = right - left
    # Adaptive pooling's bins: [floor(i*L/S), ceil((i+1)*L/S)); the columns' are the same on every row.
    c0 = np.empty(out_w, np.int64)
    c1 = np.empty(out_w, np.int64)
    for j in range(out_w):
        c0[j] = left + (j * width) // out_w
        c1[j] = left + ((j + 1) * width + out_w - 1) // out_w
    widths = np.empty(out_w * 3, np.float32)  # the bin width of each output value
    for j in range(out_w):
        for c in range(3):
            widths[j * 3 + c] = c1[j] - c0[j]
    sums = np.empty(out_w * 3, np.int64)
    means = np.empty(out_w * 3, np.float32)
    for i in range(out_h):
        r0 = top + (i * height) // out_h
        r1 = top + ((i + 1) * height + out_h - 1) // out_h
        if from_table:
            for j in range(out_w):
                for c in range(3):
                    sums[j * 3 + c] = (np.int64(table[r1, c1[j], c]) - table[r0, c1[j], c]
                                       - table[r1, c0[j], c] + table[r0, c0[j], c])
        else:
            sums[:] = 0
            for y in range(r0, r1):
                for j in range(out_w):
                    for x in range(c0[j], c1[j]):
                        for c in range(3):
                            sums[j * 3 + c] += frame[y, x, c]
        rows = np.float32(r1 - r0)
        # torch divides the (exact) sum by the bin height, then by its width; a plain loop over
        # contiguous values, so that the compiler divides several lanes at once.
        for k in range(out_w * 3):
            means[k] = np.float32(sums[k])
        row = out[start + i * out_w * 3:start + (i + 1) * out_w * 3]
        for k in range(out_w * 3):
            row[k] = (means[k] / rows / widths[k] - offset) * scale


@numba.njit(parallel=True, nogil=True, cache=True)
def _area_resize_kernel(frames, first_box, top, bottom, left, right, out_h, out_w, out_start, use_table,
                        offset, scale, tables, out):  # pragma: no cover - compiled
    """Boxes grouped by frame (frame f's are first_box[f]:first_box[f+1]); thread group g does
    frames g, g + groups, ... with table g."""
    n_frames = first_box.shape[0] - 1
    groups = tables.shape[0]
    for g in numba.prange(groups):
        table = tables[g]
        for f in range(g, n_frames, groups):
            if first_box[f] == first_box[f + 1]:
                continue
            if use_table[f]:
                _fill_table(frames[f], table)
            for k in range(first_box[f], first_box[f + 1]):
                _resize_box(frames[f], table, use_table[f], top[k], bottom[k], left[k], right[k], out_h[k], out_w[k],
                            out_start[k], offset, scale, out)


def _check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")


def _resize_grouped(frames: np.ndarray, frame_index: np.ndarray, top: np.ndarray, bottom: np.ndarray,
                    left: np.ndarray, right: np.ndarray, out_h: np.ndarray, out_w: np.ndarray,
                    out_start: np.ndarray, out_size: int, offset: float, scale: float,
                    threads: int | None) -> np.ndarray:
    """Every box resized into one flat float32 buffer of ``out_size`` values, box k's cells
    (row-major, RGB) from ``out_start[k]``."""
    n, height, width = frames.shape[:3]
    order = np.argsort(frame_index, kind="stable")
    first_box = np.searchsorted(frame_index[order], np.arange(n + 1)).astype(np.int64)
    area = np.bincount(frame_index, weights=(bottom - top) * (right - left), minlength=n)
    use_table = area >= TABLE_AREA_RATIO * height * width
    threads = max(1, min(threads or _MAX_THREADS, _MAX_THREADS))
    groups = max(1, min(threads, int(np.count_nonzero(np.diff(first_box)))))
    dtype = np.int32 if height * width <= INT32_TABLE_PIXELS else np.int64
    table_shape = (height + 1, width + 1, 3) if use_table.any() else (1, 1, 3)
    tables = np.empty((groups, *table_shape), dtype)
    out = np.empty(out_size, np.float32)
    numba.set_num_threads(threads)
    _area_resize_kernel(np.ascontiguousarray(frames), first_box, *(np.ascontiguousarray(v[order], np.int64) for v in (
        top, bottom, left, right, out_h, out_w, out_start)), use_table, np.float32(offset), np.float32(scale), tables, out)
    return out


def area_resize_boxes(frames: np.ndarray, frame_index: np.ndarray, top: np.ndarray, bottom: np.ndarray,
                      left: np.ndarray, right: np.ndarray, out_height: int, out_width: int,
                      offset: float = 0.0, scale: float = 1.0, threads: int | None = None) -> np.ndarray:
    """Resize rows [top, bottom) x columns [left, right) of ``frames[frame_index]`` by area averaging.

    ``frames`` is (N, H, W, 3) uint8; returns (K, out_height, out_width, 3) float32, each cell
    ``(mean - offset) * scale`` of its source pixels in float32 arithmetic, so that a network's
    input scaling costs no extra pass. Boxes must lie inside their frames and be non-empty.
    ``threads`` caps numba's threads (default: all cores), so that several worker processes on
    one machine do not each start one thread per core.
    """
    _check_frames(frames)
    index, top, bottom, left, right = (np.ascontiguousarray(v, np.int64) for v in (frame_index, top, bottom, left, right))
    if len(index) and ((top < 0).any() or (left < 0).any() or (bottom > frames.shape[1]).any()
                       or (right > frames.shape[2]).any() or (bottom <= top).any() or (right <= left).any()
                       or (index < 0).any() or (index >= len(frames)).any()):
        raise ValueError("every box must be non-empty and inside its frame")
    cells = out_height * out_width * 3
    k = len(index)
    out = _resize_grouped(frames, index, top, bottom, left, right, np.full(k, out_height), np.full(k, out_width),
                          np.arange(k) * cells, k * cells, offset, scale, threads)
    return out.reshape(k, out_height, out_width, 3)


def area_pyramid(frames: np.ndarray, sizes: Sequence[tuple[int, int]], offset: float = 0.0, scale: float = 1.0,
                 threads: int | None = None) -> list[np.ndarray]:
    """Every frame resized by area averaging to each (height, width) of ``sizes``: one
    (N, height, width, 3) float32 array per size, scaled as in :func:`area_resize_boxes`.

    Each frame is summed once, into a table that serves all its levels.
    """
    _check_frames(frames)
    n, height, width = frames.shape[:3]
    if any(h < 1 or w < 1 for h, w in sizes):
        raise ValueError(f"every pyramid level needs at least one pixel, got {list(sizes)}")
    level_cells = np.array([h * w * 3 for h, w in sizes], np.int64)
    level_start = np.concatenate([[0], np.cumsum(level_cells * n)])
    # Box (frame f, level l) is row f * levels + l: grouped by frame, written level-major.
    frame_index = np.repeat(np.arange(n), len(sizes))
    level = np.tile(np.arange(len(sizes)), n)
    flat = _resize_grouped(
        frames, frame_index, np.zeros_like(frame_index), np.full_like(frame_index, height), np.zeros_like(frame_index),
        np.full_like(frame_index, width), np.array([h for h, _ in sizes], np.int64)[level],
        np.array([w for _, w in sizes], np.int64)[level], level_start[level] + frame_index * level_cells[level],
        int(level_start[-1]), offset, scale, threads)
    return [flat[level_start[i]:level_start[i + 1]].reshape(n, h, w, 3) for i, (h, w) in enumerate(sizes)]
