"""The maths of detection on key frames: which frames get the full cascade, and where each face
followed between them is looked for next. Pure functions on numpy arrays; the network calls
live in :mod:`featurizers.detection.tracked_detection`.
"""

from __future__ import annotations

import numpy as np

SEARCH_MARGIN = 0.0
"""Each side of a predicted box may grow by this share of its size before O-Net's crop. Measured
on the benchmark clips (every-5): 0.05 to 0.2 made O-Net reject faces it kept at 0 (up to 80
of 100 face frames of a 720x576 clip at 0.2) and moved descriptors more; O-Net is trained on
boxes as tight as R-Net gives, and its own last box, squared, is one."""


RECENTRE_IOU = 0.75
"""A followed face is looked at again, centred, when the square of the box O-Net gave overlaps the
crop it was given less than this. Measured (every 5, 720x576 camera pans past a face at 8 and 16
px a frame, ``benchmarks/benchmark_fast_modes.py``): box overlap with exact rose from about 0.8 to
0.92 on the fast pan, descriptor cosine from 0.909 to 0.973 (0.951 to 0.962 on the slower one);
clips with a steady face never reach it, and 0.85 measured alike."""


def key_frame_mask(positions: np.ndarray, previous: int | None, every: int) -> np.ndarray:
    """Which frames of a run of sampled positions get the full cascade.

    A frame is a key frame when it is the first one seen in its block of ``every`` sampled
    positions, so key frames fall on positions 0, N, 2N, ... of the clip whatever its chunks, a
    segment that starts on a block (they are planned so) starts with a full detection, and a
    key frame the decoder lost passes its role to the next frame of its block. ``previous`` is
    the position of the frame before ``positions[0]`` (None: nothing before it).
    """
    blocks = np.asarray(positions, np.int64) // every
    before = np.concatenate([[-1 if previous is None else previous // every], blocks[:-1]])
    return blocks != before


def search_boxes(boxes: np.ndarray, margin: float = SEARCH_MARGIN) -> np.ndarray:
    """Squares about each box's centre, on its longer side grown by ``margin`` on every side
    (MTCNN feeds its later stages square boxes)."""
    boxes = np.asarray(boxes, np.float32)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * margin)
    half = side / 2
    return np.stack([centre_x - half, centre_y - half, centre_x + half, centre_y + half], axis=1).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (K, 4) with every box of ``b`` (L, 4)."""
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)
