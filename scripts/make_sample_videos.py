"""Make the small sample videos under ``sample_videos/`` that the tests and the README's first command use.

The clips copy the layout of the real EmotiW datasets so that the dataset listers, the
detector and the whole pipeline can run on them without the licensed originals:

* ``afew/Train_AFEW/<Class>/<id>.avi`` and ``afew/Val_AFEW/<Class>/<id>.avi``: 320x256
  (AFEW's 5:4), 25 fps, 2 s, MPEG-4 Part 2 tagged XVID in AVI like the originals; one face
  per clip, and one clip with no face at all.
* ``vgaf/Train/<name>.mp4``, ``vgaf/Val/<name>.mp4`` with ``Train_labels.txt`` and
  ``Val_labels.txt``: 640x360, 25 fps, 2 s, H.264 in MP4 like the originals; several faces
  of at least 64 px per frame (VGAF's detector setting), and one clip with no face.

Every pixel comes from photographs that scikit-image ships in its wheel (``skimage.data``)
and that its docstrings declare free of copyright restrictions:

* faces: ``astronaut`` (Eileen Collins, NASA: "No known copyright restrictions, released
  into the public domain") and ``camera`` (a man at a camera: "No copyright restrictions.
  CC0 by the photographer (Lav Varshney)");
* faceless scenes and backgrounds: ``coffee`` ("No copyright restrictions. CC0 by the
  photographer (Rachel Michetti)") and ``rocket`` (SpaceX, "released in the public domain").

An AFEW clip is a simulated camera move (pan, zoom, hand-held shake, a slow change of
exposure) over one of these stills, mirrored, rotated or tinted so that no two clips show
the same picture. A VGAF clip is a composite "group scene": three to five face cut-outs
from ``astronaut`` and ``camera`` (mirrored, scaled, tilted, re-lit copies) pasted with soft
edges onto a blurred, colour-shifted ``coffee`` or ``rocket`` crop or a gradient, each face
jittering on its own while the virtual camera pans and zooms over the scene. Nothing is
downloaded: scikit-image's wheel holds all of it.

THESE CLIPS CARRY NO REAL EMOTION. The AFEW class folders and the VGAF labels are arbitrary
placeholders that exercise the code paths (listing, labels, training on a few rows); a model
trained or scored on them learns nothing. The group scenes repeat two people.

Run from the repository root (needs scikit-image, Pillow, numpy and PyAV, ``pip install av``)::

    python scripts/make_sample_videos.py [--out sample_videos] [--check]

``--check`` then reads every clip back with decord and prints, per clip, the frame count,
the share of frames where the project's MTCNN settings find a face (AFEW) or at least two
faces (VGAF), and the mean number of faces per frame. Output is deterministic: fixed seeds,
single-threaded bit-exact encoders.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from skimage import data as skdata

FPS = 25
CLIP_FRAMES = 50  # 2 s at 25 fps: long enough for clip statistics, short enough for CPU tests
AFEW_SIZE = (320, 256)
VGAF_SIZE = (640, 360)
SCENE_SIZE = (800, 450)
"""A group scene's canvas; the virtual camera films a 16:9 window of it at 640x360."""


def skimage_photos() -> dict[str, Image.Image]:
    """The scikit-image stills this script uses, as RGB images (all public domain or CC0)."""
    return {
        "astronaut": Image.fromarray(skdata.astronaut()),
        "camera": Image.fromarray(skdata.camera()).convert("RGB"),
        "coffee": Image.fromarray(skdata.coffee()),
        "rocket": Image.fromarray(skdata.rocket()),
    }


# ----------------------------------------------------------------------------- stills


@dataclass(frozen=True)
class Still:
    """A variant of one photograph: optionally mirrored, tilted about a point, and re-coloured."""

    photo: str
    mirror: bool = False
    angle: float = 0.0
    """Degrees counter-clockwise about ``pivot`` (source pixels, after mirroring)."""
    pivot: tuple[float, float] | None = None
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Per-channel gain (R, G, B)."""
    saturation: float = 1.0
    """1 keeps colour, 0 gives grey."""


def render_still(still: Still, photos: dict[str, Image.Image]) -> Image.Image:
    """Apply the still's mirror, tilt and colour change to its photograph."""
    image = photos[still.photo]
    if still.mirror:
        image = ImageOps.mirror(image)
    if still.angle:
        fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
        image = image.rotate(still.angle, Image.Resampling.BICUBIC, center=still.pivot, fillcolor=fill)
    pixels = np.asarray(image, dtype=np.float32)
    if still.saturation != 1.0:
        grey = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
        pixels = grey[..., None] + (pixels - grey[..., None]) * still.saturation
    pixels = pixels * np.asarray(still.tint, np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


# ----------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class CameraMove:
    """A virtual camera over a still: window centre and width (source pixels) at start and end."""

    start: tuple[float, float]
    end: tuple[float, float]
    start_width: float
    end_width: float
    shake: float = 2.0
    """Largest hand-held offset in source pixels; keeps MTCNN from seeing identical frames."""
    exposure: tuple[float, float] = (1.0, 1.0)


def _smooth_shake(rng: np.random.Generator, frames: int, amplitude: float) -> np.ndarray:
    """A slow random wobble (frames, 2) bounded by amplitude: a hand-held camera, not white noise."""
    steps = rng.normal(size=(frames + 8, 2))
    kernel = np.ones(9) / 9
    smooth = np.stack([np.convolve(steps[:, axis], kernel, mode="valid") for axis in range(2)], axis=1)
    peak = np.abs(smooth).max() or 1.0
    return smooth[:frames] / peak * amplitude


def _ease(t: float) -> float:
    """Smoothstep: starts and stops gently, like an operator."""
    return t * t * (3 - 2 * t)


def film(
    scene: Callable[[int], Image.Image], move: CameraMove, size: tuple[int, int], frames: int, seed: int
) -> Iterator[np.ndarray]:
    """Yield RGB frames (H, W, 3) of a camera gliding over ``scene(frame_index)``; the window stays inside it."""
    out_width, out_height = size
    aspect = out_height / out_width
    shake = _smooth_shake(np.random.default_rng(seed), frames, move.shake)
    for index in range(frames):
        photo = scene(index)
        t = index / max(frames - 1, 1)
        eased = _ease(t)
        width = move.start_width + (move.end_width - move.start_width) * eased
        height = width * aspect
        cx = move.start[0] + (move.end[0] - move.start[0]) * eased + shake[index, 0]
        cy = move.start[1] + (move.end[1] - move.start[1]) * eased + shake[index, 1]
        cx = float(np.clip(cx, width / 2, photo.width - width / 2))
        cy = float(np.clip(cy, height / 2, photo.height - height / 2))
        box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
        frame = np.asarray(photo.resize(size, Image.Resampling.BILINEAR, box=box), dtype=np.float32)
        gain = move.exposure[0] + (move.exposure[1] - move.exposure[0]) * t
        yield np.clip(frame * gain, 0, 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------- group scenes

FACE_CUTS = {
    # Source box (x1, y1, x2, y2) around the face with hair and some neck; MTCNN finds the face
    # in the full photograph at astronaut (181, 62, 268, 172) and camera (199, 119, 254, 192).
    "astronaut": (150, 25, 300, 215),
    "camera": (165, 85, 290, 225),
}


@dataclass(frozen=True)
class FaceCopy:
    """One pasted face: which cut-out, where its centre sits on the canvas, how tall, how it differs."""

    photo: str
    centre: tuple[float, float]
    height: float
    """Cut-out height on the canvas in pixels; the detected face box is about 60% of it."""
    mirror: bool = False
    angle: float = 0.0
    gain: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    jitter: float = 3.0
    """Largest own movement in canvas pixels, independent of the camera."""


@dataclass(frozen=True)
class Background:
    """A faceless backdrop: a blurred, colour-shifted crop of a photograph, or a gradient (photo None)."""

    photo: str | None
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    blur: float = 6.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    colours: tuple[tuple[int, int, int], tuple[int, int, int]] = ((60, 70, 90), (170, 150, 120))
    """Gradient ends, top-left to bottom-right, when photo is None."""


@dataclass(frozen=True)
class GroupScene:
    """Several face copies over a backdrop; the canvas is SCENE_SIZE."""

    background: Background
    faces: tuple[FaceCopy, ...]


def _feathered_oval(size: tuple[int, int], feather: float) -> Image.Image:
    """An L-mode mask: an ellipse filling ``size`` minus a margin, its edge blurred by ``feather`` px."""
    width, height = size
    margin = int(round(feather * 1.5))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((margin, margin, width - 1 - margin, height - 1 - margin), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(feather))


def render_background(background: Background, photos: dict[str, Image.Image]) -> Image.Image:
    """The scene's backdrop at SCENE_SIZE."""
    width, height = SCENE_SIZE
    if background.photo is None:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        t = ((xs / width + ys / height) / 2)[..., None]
        low, high = (np.asarray(c, np.float32) for c in background.colours)
        pixels = low + (high - low) * t + 12 * np.sin(xs / 70.0)[..., None]
        return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    crop = photos[background.photo].resize(SCENE_SIZE, Image.Resampling.BICUBIC, box=background.box)
    crop = crop.filter(ImageFilter.GaussianBlur(background.blur))
    pixels = np.asarray(crop, np.float32) * np.asarray(background.tint, np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


def render_face(face: FaceCopy, photos: dict[str, Image.Image]) -> tuple[Image.Image, Image.Image]:
    """The face cut-out (RGB) and its soft mask (L), scaled, mirrored, tilted and re-lit."""
    cut = photos[face.photo].crop(FACE_CUTS[face.photo])
    scale = face.height / cut.height
    cut = cut.resize((round(cut.width * scale), round(face.height)), Image.Resampling.BICUBIC)
    if face.mirror:
        cut = ImageOps.mirror(cut)
    pixels = np.asarray(cut, np.float32) * face.gain * np.asarray(face.tint, np.float32)
    cut = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    mask = _feathered_oval(cut.size, feather=max(cut.width / 18, 2.0))
    if face.angle:
        cut = cut.rotate(face.angle, Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(face.angle, Image.Resampling.BICUBIC, expand=True)
    return cut, mask


def group_scene(
    scene: GroupScene, photos: dict[str, Image.Image], frames: int, seed: int
) -> Callable[[int], Image.Image]:
    """A function from frame index to the composited canvas, each face on its own slow wobble."""
    backdrop = render_background(scene.background, photos)
    cutouts = [render_face(face, photos) for face in scene.faces]
    rng = np.random.default_rng(seed)
    wobbles = [_smooth_shake(rng, frames, face.jitter) for face in scene.faces]

    def canvas(index: int) -> Image.Image:
        image = backdrop.copy()
        for face, (cut, mask), wobble in zip(scene.faces, cutouts, wobbles):
            x = face.centre[0] + wobble[index, 0] - cut.width / 2
            y = face.centre[1] + wobble[index, 1] - cut.height / 2
            image.paste(cut, (int(round(x)), int(round(y))), mask)
        return image

    return canvas


# ----------------------------------------------------------------------------- the clips


@dataclass(frozen=True)
class SampleClip:
    """One output file: where it goes, what it films (a still or a group scene), how, and its seed."""

    path: str
    subject: Still | GroupScene
    move: CameraMove
    seed: int


AFEW_CLIPS = (
    SampleClip("afew/Train_AFEW/Happy/000001001.avi", Still("astronaut"),
               CameraMove((240, 170), (222, 130), 360, 240), seed=1),
    SampleClip("afew/Train_AFEW/Neutral/000002002.avi", Still("camera"),
               CameraMove((235, 170), (215, 160), 260, 300, exposure=(0.8, 1.15)), seed=2),
    # Astronaut mirrored (face centre now near x 288), cool and desaturated, slow push in.
    SampleClip("afew/Train_AFEW/Sad/000003003.avi",
               Still("astronaut", mirror=True, saturation=0.35, tint=(0.85, 0.92, 1.05)),
               CameraMove((280, 150), (290, 125), 300, 200, exposure=(1.0, 0.85)), seed=3),
    # Camera man mirrored (face centre near x 285), warm tint, zoom out while panning.
    SampleClip("afew/Val_AFEW/Surprise/000004004.avi",
               Still("camera", mirror=True, tint=(1.1, 0.95, 0.78)),
               CameraMove((290, 160), (260, 190), 200, 340, exposure=(1.1, 0.9)), seed=4),
    # Astronaut tilted 9 degrees about her face, darker and greenish, panning sideways.
    SampleClip("afew/Val_AFEW/Fear/000005005.avi",
               Still("astronaut", angle=9.0, pivot=(224, 117), tint=(0.8, 0.9, 0.8)),
               CameraMove((195, 150), (255, 140), 270, 250, shake=3.0), seed=5),
    # No face anywhere: the pipeline must carry a clip with zero detections through.
    SampleClip("afew/Val_AFEW/Angry/000006006.avi", Still("coffee"),
               CameraMove((220, 200), (380, 200), 400, 400), seed=6),
)

VGAF_CLIPS = (
    SampleClip(
        "vgaf/Train/1_1.mp4",
        GroupScene(
            Background("coffee", (0, 0, 600, 338), blur=7, tint=(0.9, 0.85, 1.1)),
            (
                FaceCopy("astronaut", (150, 215), 235, angle=4),
                FaceCopy("camera", (330, 235), 241, mirror=True, gain=1.05, tint=(1.05, 0.95, 0.85)),
                FaceCopy("astronaut", (500, 205), 224, mirror=True, angle=-5, gain=0.85),
                FaceCopy("camera", (660, 240), 235, angle=3, gain=1.1),
            ),
        ),
        CameraMove((360, 225), (440, 225), 720, 720), seed=11,
    ),
    SampleClip(
        "vgaf/Train/2_3.mp4",
        GroupScene(
            Background(None, colours=((40, 60, 80), (150, 170, 190))),
            (
                FaceCopy("camera", (130, 230), 224, angle=-4, tint=(0.9, 1.0, 1.1)),
                FaceCopy("astronaut", (290, 215), 241, mirror=True, gain=1.1),
                FaceCopy("camera", (450, 240), 230, mirror=True, angle=6, gain=0.9),
                FaceCopy("astronaut", (600, 220), 230, angle=-3, tint=(1.05, 0.95, 0.9)),
                FaceCopy("astronaut", (720, 250), 224, mirror=True, angle=5, gain=0.8),
            ),
        ),
        CameraMove((400, 225), (420, 235), 800, 680), seed=12,
    ),
    SampleClip(
        "vgaf/Val/3_1.mp4",
        GroupScene(
            Background("rocket", (100, 0, 600, 281), blur=8, tint=(1.0, 0.9, 0.8)),
            (
                FaceCopy("astronaut", (220, 220), 246, mirror=True, angle=-6),
                FaceCopy("camera", (400, 230), 241, gain=0.95, tint=(1.1, 1.0, 0.9)),
                FaceCopy("astronaut", (580, 215), 235, angle=5, gain=1.15),
            ),
        ),
        CameraMove((420, 225), (380, 230), 780, 660, exposure=(0.9, 1.1)), seed=13,
    ),
    SampleClip(
        "vgaf/Val/4_2.mp4",
        GroupScene(
            Background("coffee", (150, 60, 550, 285), blur=9, tint=(0.75, 0.95, 0.9)),
            (
                FaceCopy("camera", (160, 225), 235, mirror=True, angle=-3, gain=1.1),
                FaceCopy("astronaut", (330, 210), 230, angle=6, tint=(0.95, 1.0, 1.1)),
                FaceCopy("camera", (490, 235), 241, angle=4, gain=0.85, tint=(1.1, 0.95, 0.8)),
                FaceCopy("astronaut", (650, 220), 224, mirror=True, angle=-4, gain=0.95),
            ),
        ),
        CameraMove((340, 225), (460, 225), 680, 680, exposure=(1.1, 0.85)), seed=14,
    ),
    SampleClip("vgaf/Val/5_2.mp4", Still("rocket"),
               CameraMove((280, 220), (360, 200), 560, 480), seed=15),
)

# Placeholder labels (1 Positive, 2 Neutral, 3 Negative), one of each kind per split; no emotion behind them.
VGAF_LABELS = {"1_1": 1, "2_3": 3, "3_1": 1, "4_2": 2, "5_2": 3}
VGAF_LABEL_HEADER = "Vid_name Label"


def clip_frames(clip: SampleClip, photos: dict[str, Image.Image], size: tuple[int, int],
                frames: int = CLIP_FRAMES) -> Iterator[np.ndarray]:
    """The clip's frames: the camera over a fixed still, or over a group scene that moves itself."""
    if isinstance(clip.subject, Still):
        still = render_still(clip.subject, photos)
        scene: Callable[[int], Image.Image] = lambda _index: still  # noqa: E731
    else:
        scene = group_scene(clip.subject, photos, frames, seed=clip.seed + 100)
    return film(scene, clip.move, size, frames, clip.seed)


def write_video(path: Path, frames: Iterator[np.ndarray], size: tuple[int, int]) -> int:
    """Encode frames: MPEG-4 Part 2 (XVID tag) for .avi, H.264 for .mp4; returns the frame count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    # bitexact keeps version strings out of the files, so a rerun gives the same bytes.
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        if path.suffix == ".avi":
            stream = container.add_stream("mpeg4", rate=FPS, options={"qscale": "5", "flags": "+bitexact"})
            stream.codec_context.codec_tag = "XVID"
        else:
            stream = container.add_stream(
                "libx264", rate=FPS, options={"crf": "26", "preset": "medium", "flags": "+bitexact"}
            )
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # threaded encoders may split work differently per run
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        for packet in stream.encode():
            container.mux(packet)
    return count


def write_vgaf_labels(out: Path) -> None:
    """Write Train_labels.txt and Val_labels.txt in VGAF's format: a header, then ``name label`` lines."""
    for split in ("Train", "Val"):
        names = sorted(Path(clip.path).stem for clip in VGAF_CLIPS if clip.path.startswith(f"vgaf/{split}/"))
        lines = [VGAF_LABEL_HEADER] + [f"{name} {VGAF_LABELS[name]}" for name in names]
        (out / "vgaf" / f"{split}_labels.txt").write_text("\n".join(lines) + "\n")


def check_clips(out: Path) -> None:
    """Read every clip with decord and print frame count, shape, the share of frames with faces and the mean."""
    import decord

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from featurizers.detection.detect import AFEW_DETECTOR, VGAF_DETECTOR, FaceDetector

    detectors = {"afew": (FaceDetector(AFEW_DETECTOR), 1), "vgaf": (FaceDetector(VGAF_DETECTOR), 2)}
    for clip in AFEW_CLIPS + VGAF_CLIPS:
        detector, needed = detectors[clip.path.split("/")[0]]
        reader = decord.VideoReader(str(out / clip.path))
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        counts = [len(faces) for faces in detector.detect(frames)]
        hits = sum(count >= needed for count in counts)
        print(
            f"{clip.path}: {len(reader)} frames {frames.shape[2]}x{frames.shape[1]} "
            f"{reader.get_avg_fps():.0f} fps; >= {needed} face(s) in {hits}/{len(counts)} "
            f"({hits / len(counts):.0%}), mean faces {np.mean(counts):.2f}"
        )


def run(argv: list[str] | None = None) -> None:
    """Write all sample clips and label files under --out, then optionally check them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_videos"), help="output folder")
    parser.add_argument("--check", action="store_true", help="read clips back and report face detection rates")
    args = parser.parse_args(argv)

    photos = skimage_photos()
    for clip, size in [(c, AFEW_SIZE) for c in AFEW_CLIPS] + [(c, VGAF_SIZE) for c in VGAF_CLIPS]:
        count = write_video(args.out / clip.path, clip_frames(clip, photos, size), size)
        logging.info("wrote %s (%d frames, %d bytes)", clip.path, count, (args.out / clip.path).stat().st_size)
    write_vgaf_labels(args.out)
    if args.check:
        check_clips(args.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run()
