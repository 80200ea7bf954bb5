"""Area resampling of many boxes of uint8 frames in one compiled call (MTCNN's crops and pyramid).

MTCNN shrinks each frame to its pyramid levels, and each candidate box to 24x24 or 48x48, by
area averaging (``interpolate(mode="area")``, i.e. adaptive average pooling). Done through
torch this is one call per box, about 40 us each and ~30 per frame, plus a float copy of every
frame; here one numba kernel does all boxes of a batch straight from the uint8 frames, in
parallel over boxes, with the same pooling bins and the same float32 arithmetic: the results
equal torch's bit for bit (tests/featurizers/test_area_resize.py).
"""

from __future__ import annotations

import numba
import numpy as np


_MAX_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]


@numba.njit(parallel=True, nogil=True, cache=True)
def _area_resize_kernel(frames, frame_index, top, bottom, left, right, offset, scale, out):  # pragma: no cover
    out_h, out_w = out.shape[1], out.shape[2]
    for k in numba.prange(frame_index.shape[0]):
        f = frame_index[k]
        height = bottom[k] - top[k]
        width = right[k] - left[k]
        for i in range(out_h):
            # Adaptive pooling's bins: [floor(i*L/S), ceil((i+1)*L/S)).
            r0 = top[k] + (i * height) // out_h
            r1 = top[k] + ((i + 1) * height + out_h - 1) // out_h
            for j in range(out_w):
                c0 = left[k] + (j * width) // out_w
                c1 = left[k] + ((j + 1) * width + out_w - 1) // out_w
                red = 0
                green = 0
                blue = 0
                for y in range(r0, r1):
                    for x in range(c0, c1):
                        red += frames[f, y, x, 0]
                        green += frames[f, y, x, 1]
                        blue += frames[f, y, x, 2]
                # torch divides the (exact) sum by the bin height, then by its width.
                rows = np.float32(r1 - r0)
                cols = np.float32(c1 - c0)
                out[k, i, j, 0] = (np.float32(red) / rows / cols - offset) * scale
                out[k, i, j, 1] = (np.float32(green) / rows / cols - offset) * scale
                out[k, i, j, 2] = (np.float32(blue) / rows / cols - offset) * scale


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
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"expected (N, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
    index, top, bottom, left, right = (np.ascontiguousarray(v, np.int64) for v in (frame_index, top, bottom, left, right))
    if len(index) and ((top < 0).any() or (left < 0).any() or (bottom > frames.shape[1]).any()
                       or (right > frames.shape[2]).any() or (bottom <= top).any() or (right <= left).any()
                       or (index < 0).any() or (index >= len(frames)).any()):
        raise ValueError("every box must be non-empty and inside its frame")
    out = np.empty((len(index), out_height, out_width, 3), np.float32)
    numba.set_num_threads(max(1, min(threads or _MAX_THREADS, _MAX_THREADS)))
    _area_resize_kernel(np.ascontiguousarray(frames), index, top, bottom, left, right,
                        np.float32(offset), np.float32(scale), out)
    return out
