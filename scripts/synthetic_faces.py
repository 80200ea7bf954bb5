"""A learnable synthetic facial-expression task from the project's public-domain face photographs.

No emotion data can be shipped, yet fine-tuning must be shown to work. This script makes a
task in which the class is a *facial change* and everything else is nuisance:

* **Classes** (AFEW names, so the AFEW lister takes the clips): ``Neutral`` (no change),
  ``Happy`` (mouth corners pulled outwards and up) and ``Surprise`` (mouth pulled open
  downwards, eyes and brows stretched upwards). Each is a smooth geometric warp (sums of
  Gaussian displacement bumps) centred on the face's own landmarks, with a random strength.
* **Identities**: variants of the two faces in scikit-image's public-domain/CC0 photographs
  (``astronaut``, ``camera``; see ``sample_videos/README.md``): mirrored or not, stretched
  wider or narrower, re-coloured, re-lit, with their own small random warps of face shape.
  They are *pseudo*-identities of two people, which is the most this licensed material allows;
  held-out identities are parameter sets never seen in training.
* **Pose**: each image or frame tilts (+-10 degrees), scales and shifts at random.

ImageNet features are dominated by identity, colour and pose here, so a classifier on them
is weak; a network fine-tuned on the labels learns to look at the mouth and eyes.

``face_folder`` writes face crops as an image folder (the unit tests); ``afew_videos`` writes
AFEW-layout clips (``Train_AFEW/<Class>/*.avi``, ``Val_AFEW/<Class>/*.avi``) for the whole
chain (``benchmarks/benchmark_finetune.py``). Deterministic for a given seed.

    python scripts/synthetic_faces.py --out /tmp/synthetic_afew [--train-identities 8 --val-identities 4]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

CLASSES = ("Happy", "Neutral", "Surprise")


@dataclass(frozen=True)
class FaceSource:
    """A face in a scikit-image photograph: the crop around it and its 5 landmarks (crop pixels).

    Landmarks measured with the project's MTCNN (``AFEW_DETECTOR``) on the full photograph:
    left eye, right eye, nose, left and right mouth corner.
    """

    photo: str
    box: tuple[int, int, int, int]
    landmarks: tuple[tuple[float, float], ...]


SOURCES = (
    FaceSource("astronaut", (150, 40, 296, 200),
               ((204.5, 101.2), (247.4, 103.4), (225.7, 129.7), (201.6, 139.7), (245.4, 142.0))),
    FaceSource("camera", (196, 112, 266, 204),
               ((234.0, 147.8), (251.7, 150.5), (250.4, 168.4), (231.0, 179.5), (244.0, 180.9))),
)
FACE_SIZE = (128, 144)
"""Width, height of a rendered face crop (both sources are resized to it)."""


def _photo(name: str) -> np.ndarray:
    from skimage import data as skdata

    image = getattr(skdata, name)()
    return np.stack([image] * 3, axis=-1) if image.ndim == 2 else image


@dataclass(frozen=True)
class Identity:
    """One pseudo-identity: a source face and the changes that make it look like another person."""

    name: str
    source: int
    mirror: bool
    width: float
    """Horizontal stretch of the whole face (0.85-1.15)."""
    tint: tuple[float, float, float]
    gain: float
    shape_seed: int
    """Seeds the identity's own small landmark-free warps (face shape)."""
    background: tuple[tuple[int, int, int], tuple[int, int, int]]


def make_identities(count: int, seed: int, prefix: str = "id") -> list[Identity]:
    rng = np.random.default_rng(seed)
    identities = []
    for i in range(count):
        colours = tuple(tuple(int(v) for v in rng.integers(30, 220, 3)) for _ in range(2))
        identities.append(Identity(
            name=f"{prefix}{i:02d}", source=i % len(SOURCES), mirror=bool(rng.random() < 0.5),
            width=float(rng.uniform(0.85, 1.15)), tint=tuple(float(v) for v in rng.uniform(0.75, 1.25, 3)),  # type: ignore[arg-type]
            gain=float(rng.uniform(0.75, 1.2)), shape_seed=int(rng.integers(1 << 30)),
            background=colours,  # type: ignore[arg-type]
        ))
    return identities


def _bumps(shape: tuple[int, int], centres: list[tuple[float, float]], shifts: list[tuple[float, float]],
           sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A smooth displacement field: each centre moves by its shift, fading as a Gaussian of ``sigma``."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    for (cx, cy), (sx, sy) in zip(centres, shifts):
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2))
        dx += weight * sx
        dy += weight * sy
    return dx, dy


def _warp(image: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Pull each output pixel from where the displacement says it came from (small shifts: inverse ~ minus)."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def expression_field(label: str, landmarks: np.ndarray, shape: tuple[int, int],
                     strength: float) -> tuple[np.ndarray, np.ndarray]:
    """The class's warp on a face with these landmarks (crop pixels); ``strength`` about 0.6-1."""
    left_eye, right_eye, _, mouth_left, mouth_right = landmarks
    eye_gap = float(np.linalg.norm(right_eye - left_eye))
    mouth = (mouth_left + mouth_right) / 2
    s = strength * eye_gap
    if label == "Neutral":
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    if label == "Happy":  # corners out and up, the middle of the lower lip slightly up
        centres = [tuple(mouth_left), tuple(mouth_right), (mouth[0], mouth[1] + 0.15 * eye_gap)]
        shifts = [(-0.22 * s, -0.22 * s), (0.22 * s, -0.22 * s), (0.0, -0.08 * s)]
        return _bumps(shape, centres, shifts, 0.28 * eye_gap)
    if label == "Surprise":  # jaw and lower lip down, upper lip up, eyes and brows up
        centres = [(mouth[0], mouth[1] + 0.2 * eye_gap), (mouth[0], mouth[1] - 0.1 * eye_gap),
                   (left_eye[0], left_eye[1] - 0.35 * eye_gap), (right_eye[0], right_eye[1] - 0.35 * eye_gap)]
        shifts = [(0.0, 0.3 * s), (0.0, -0.1 * s), (0.0, -0.18 * s), (0.0, -0.18 * s)]
        return _bumps(shape, centres, shifts, 0.3 * eye_gap)
    raise ValueError(f"unknown class {label!r}; expected one of {CLASSES}")


class FaceRenderer:
    """Renders faces of identities with an expression and a pose; the photographs are loaded once."""

    def __init__(self) -> None:
        self._crops = []
        for source in SOURCES:
            x1, y1, x2, y2 = source.box
            crop = _photo(source.photo)[y1:y2, x1:x2]
            scale = np.array([FACE_SIZE[0] / (x2 - x1), FACE_SIZE[1] / (y2 - y1)])
            marks = (np.asarray(source.landmarks) - [x1, y1]) * scale
            self._crops.append((cv2.resize(crop, FACE_SIZE, interpolation=cv2.INTER_CUBIC), marks))

    def identity_face(self, identity: Identity) -> tuple[np.ndarray, np.ndarray]:
        """The identity's neutral face (float32 RGB) and its landmarks."""
        face, marks = self._crops[identity.source]
        face, marks = face.astype(np.float32), marks.copy()
        w, h = FACE_SIZE
        if identity.mirror:
            face = face[:, ::-1]
            marks[:, 0] = w - 1 - marks[:, 0]
            marks = marks[[1, 0, 2, 4, 3]]
        # Wider or narrower about the face's centre line.
        cx = marks[2, 0]
        matrix = np.float32([[identity.width, 0, cx * (1 - identity.width)], [0, 1, 0]])
        face = cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        marks[:, 0] = identity.width * marks[:, 0] + cx * (1 - identity.width)
        # The identity's own face shape: a few random bumps anywhere on the face.
        rng = np.random.default_rng(identity.shape_seed)
        centres = [tuple(v) for v in rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.9 * h], (4, 2))]
        shifts = [tuple(v) for v in rng.normal(0, 3.0, (4, 2))]
        face = _warp(face, *_bumps((h, w), centres, shifts, 0.18 * w))
        face = face * np.asarray(identity.tint, np.float32) * identity.gain
        return np.clip(face, 0, 255), marks

    def render(self, identity: Identity, label: str, rng: np.random.Generator) -> np.ndarray:
        """A face crop (uint8 RGB, FACE_SIZE) of ``identity`` showing ``label``, in a random pose."""
        face, marks = self.identity_face(identity)
        w, h = FACE_SIZE
        face = _warp(face, *expression_field(label, marks, (h, w), float(rng.uniform(0.6, 1.0))))
        angle, scale = float(rng.uniform(-10, 10)), float(rng.uniform(0.9, 1.1))
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-0.05, 0.05, 2) * (w, h)
        face = cv2.warpAffine(face, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        noise = rng.normal(0, 3.0, face.shape)
        return np.clip(face * rng.uniform(0.9, 1.1) + noise, 0, 255).round().astype(np.uint8)


def face_folder(root: str | Path, identities: list[Identity], per_class: int, seed: int,
                classes: tuple[str, ...] = CLASSES) -> Path:
    """Write ``<Class>/<identity>_<k>.png`` face crops: the identity is the group ``jobs.finetune`` splits by."""
    root = Path(root)
    renderer = FaceRenderer()
    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for identity in identities:
            for k in range(per_class):
                Image.fromarray(renderer.render(identity, label, rng)).save(root / label / f"{identity.name}_{k}.png")
    return root


FRAME_SIZE = (320, 256)


def _background(identity: Identity) -> np.ndarray:
    w, h = FRAME_SIZE
    t = (np.linspace(0, 1, w)[None, :] + np.linspace(0, 1, h)[:, None]) / 2
    a, b = (np.asarray(c, np.float32) for c in identity.background)
    return a + (b - a) * t[..., None]


def clip_frames(renderer: FaceRenderer, identity: Identity, label: str, frames: int,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Frames (RGB uint8, 320x256) of one clip: the identity's face with its expression, moving slowly."""
    w, h = FRAME_SIZE
    fw, fh = FACE_SIZE
    start = rng.uniform([20, 10], [w - fw - 20, h - fh - 10])
    end = np.clip(start + rng.uniform(-30, 30, 2), [0, 0], [w - fw, h - fh])
    background = _background(identity)
    out = []
    for i in range(frames):
        x, y = (start + (end - start) * i / max(frames - 1, 1)).round().astype(int)
        frame = background.copy()
        frame[y : y + fh, x : x + fw] = renderer.render(identity, label, rng)
        out.append(np.clip(frame, 0, 255).astype(np.uint8))
    return out


def write_avi(path: Path, frames: list[np.ndarray], fps: int = 25) -> None:
    """MPEG-4 Part 2 in AVI, as AFEW's clips (PyAV)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = FRAME_SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "3"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def afew_videos(root: str | Path, train: list[Identity], val: list[Identity], clips_per_class: int = 1,
                frames: int = 12, seed: int = 0) -> Path:
    """AFEW-layout clips: every identity shows every class; val identities are never in train."""
    root = Path(root)
    renderer = FaceRenderer()
    rng = np.random.default_rng(seed)
    for split, identities in (("Train_AFEW", train), ("Val_AFEW", val)):
        for label in CLASSES:
            for identity in identities:
                for k in range(clips_per_class):
                    name = f"{identity.name}{label[:2].lower()}{k}"
                    write_avi(root / split / label / f"{name}.avi", clip_frames(renderer, identity, label, frames, rng))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-identities", type=int, default=8)
    parser.add_argument("--val-identities", type=int, default=4)
    parser.add_argument("--clips-per-class", type=int, default=1)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train = make_identities(args.train_identities, args.seed, "tr")
    val = make_identities(args.val_identities, args.seed + 1, "va")
    afew_videos(args.out, train, val, args.clips_per_class, args.frames, args.seed)
    print(f"wrote {len(CLASSES) * (len(train) + len(val)) * args.clips_per_class} clips to {args.out}")


if __name__ == "__main__":
    main()
