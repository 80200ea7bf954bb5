"""Turn detections into face images: plain crops (AFEW) and 5-point alignment (VGAF).

Pure functions on arrays; no model, no I/O.
"""

from __future__ import annotations

import numpy as np

# The 5-point template (left eye, right eye, nose, left and right mouth corner) of the
# 96x112 face, shifted +8 px in x to the 112x112 ArcFace template, then scaled x2.
_FIVE_POINTS_96x112 = np.array(
    [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655], [62.7299, 92.2041]],
    dtype=np.float64,
)
ALIGNED_FACE_SIZE = 224
ALIGNMENT_TEMPLATE = (_FIVE_POINTS_96x112 + np.array([8.0, 0.0])) * 2.0


def crop_face(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """Crop a detector box with no margin: coordinates truncated to int and clipped to the frame.

    Returns None when nothing is left (a box wholly outside the frame or thinner than a pixel).
    """
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box[:4])  # int() truncates toward zero, as the reference
    x1, x2 = max(0, min(x1, width)), max(0, min(x2, width))
    y1, y2 = max(0, min(y1, height)), max(0, min(y2, height))
    if x2 <= x1 or y2 <= y1:
        return None
    return frame[y1:y2, x1:x2]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form, as skimage's SimilarityTransform.estimate; returns a 3x3 matrix.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (N>=2, 2) point arrays of equal shape, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(covariance) < 0:
        reflection[1, 1] = -1.0
    rotation = u @ reflection @ vt
    src_var = (src_c**2).sum() / len(src)
    scale = (singular * np.diag(reflection)).sum() / src_var if src_var > 0 else 1.0
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp an RGB uint8 ``image`` (H, W, 3) by the 3x3 forward ``matrix`` into (height, width) = ``size``.

    OpenCV 4's ``warpAffine``, bilinear with a black border, exactly as the reference aligned
    its VGAF faces (pinned below 5: OpenCV 5 rounds differently, up to 4 grey levels).
    """
    import cv2

    out_h, out_w = size
    return cv2.warpAffine(np.ascontiguousarray(image), np.asarray(matrix, np.float64)[:2], (out_w, out_h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def align_face(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Align a face on its 5 landmarks to the 224x224 template (VGAF preprocessing)."""
    matrix = similarity_transform(np.asarray(landmarks).reshape(5, 2), ALIGNMENT_TEMPLATE)
    return warp_affine(frame, matrix, (ALIGNED_FACE_SIZE, ALIGNED_FACE_SIZE))
