"""Random changes of training faces, as pure functions: draw the parameters, then apply them.

Drawing and applying are apart so that the draws happen in one fixed order from one generator
(a run is reproducible and resumable whatever thread applies them), and so that each part is
tested alone. Faces are changed as the RGB uint8 crops they are on disk, before the
featurizer's own preprocessing (``featurizers.embedding.embed.preprocess_faces``), which stays exactly
what extraction uses; mixup and cutmix act on the preprocessed batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from featurizers.finetuning.settings import FaceAugmentation


@dataclass(frozen=True)
class FaceJitter:
    """The changes drawn for one face."""

    flip: bool
    scale: float
    shift: tuple[float, float]
    """Fractions of the width and height."""
    rotation: float
    """Degrees, counter-clockwise."""
    brightness: float
    contrast: float

    @property
    def moves_pixels(self) -> bool:
        return self.scale != 1.0 or self.shift != (0.0, 0.0) or self.rotation != 0.0


NO_JITTER = FaceJitter(False, 1.0, (0.0, 0.0), 0.0, 1.0, 1.0)


def draw_jitter(rng: np.random.Generator, augmentation: FaceAugmentation) -> FaceJitter:
    """One face's changes, each uniform within the augmentation's bounds (always six draws)."""
    a = augmentation
    flip = bool(rng.random() < 0.5)
    scale = float(rng.uniform(1 - a.max_scale, 1 + a.max_scale))
    shift = rng.uniform(-a.max_shift, a.max_shift, 2)
    rotation = float(rng.uniform(-a.max_rotation, a.max_rotation))
    brightness = float(rng.uniform(1 - a.max_brightness, 1 + a.max_brightness))
    contrast = float(rng.uniform(1 - a.max_contrast, 1 + a.max_contrast))
    return FaceJitter(flip and a.flip, scale, (float(shift[0]), float(shift[1])), rotation, brightness, contrast)


def jitter_face(face: np.ndarray, jitter: FaceJitter) -> np.ndarray:
    """The face (H, W, 3 uint8) mirrored, zoomed, shifted and rotated about its centre, then re-lit.

    Pixels that the move brings in from outside are the face's own, mirrored at the border
    (no black corners for the network to learn). Brightness scales the mean intensity and
    contrast the deviations from it: ``(x - m) * contrast + m * brightness``.
    """
    out = face[:, ::-1] if jitter.flip else face
    if jitter.moves_pixels:
        h, w = out.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), jitter.rotation, jitter.scale)
        matrix[:, 2] += (jitter.shift[0] * w, jitter.shift[1] * h)
        out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT_101)
    if jitter.brightness == 1.0 and jitter.contrast == 1.0:
        return np.ascontiguousarray(out)
    values = out.astype(np.float32)
    mean = float(values.mean())
    values = (values - mean) * jitter.contrast + mean * jitter.brightness
    return np.clip(values, 0, 255).round().astype(np.uint8)


@dataclass(frozen=True)
class BatchMix:
    """Mixup or cutmix of a batch: image i is blended with image ``partner[i]``.

    ``weight`` is the share of each image's own label in the loss; for cutmix it is the share of
    its pixels left uncovered by the pasted box.
    """

    partner: np.ndarray
    weight: float
    box: tuple[int, int, int, int] | None
    """Cutmix's pasted box (top, left, bottom, right) in input pixels; None for mixup."""


def draw_mix(rng: np.random.Generator, n: int, size: int, mixup: float, cutmix: float) -> BatchMix | None:
    """Mixup, cutmix or neither for a batch of ``n`` images of ``size`` pixels a side.

    With both alphas above 0, each batch takes one of the two with equal chance (timm's
    ``Mixup`` does the same). The blend weight is drawn from Beta(alpha, alpha).
    """
    if n < 2 or (mixup <= 0 and cutmix <= 0):
        return None
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    weight = float(rng.beta(alpha, alpha))
    partner = rng.permutation(n)
    if not use_cutmix:
        return BatchMix(partner, weight, None)
    # A box covering (1 - weight) of the image, centred anywhere, clipped at the borders.
    side = size * np.sqrt(1.0 - weight)
    cy, cx = rng.uniform(0, size, 2)
    top, bottom = int(np.clip(round(cy - side / 2), 0, size)), int(np.clip(round(cy + side / 2), 0, size))
    left, right = int(np.clip(round(cx - side / 2), 0, size)), int(np.clip(round(cx + side / 2), 0, size))
    covered = (bottom - top) * (right - left) / (size * size)
    return BatchMix(partner, 1.0 - covered, (top, left, bottom, right))


def mix_batch(images: np.ndarray, mix: BatchMix) -> np.ndarray:
    """The batch (N, C, H, W) blended (mixup) or with the partner's box pasted in (cutmix)."""
    partner = images[mix.partner]
    if mix.box is None:
        return (mix.weight * images + (1.0 - mix.weight) * partner).astype(images.dtype)
    top, left, bottom, right = mix.box
    out = images.copy()
    out[:, :, top:bottom, left:right] = partner[:, :, top:bottom, left:right]
    return out
