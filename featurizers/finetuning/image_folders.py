"""Labelled face images for fine-tuning: list and check an image folder, split it by clip, weigh classes.

The folder follows torchvision's ``ImageFolder`` layout (``<Class>/<image>``); ``jobs.faces``
writes one, with a manifest naming the clip of every image. Everything here is plain Python
on paths and labels, so the split and the weights are tested without any image or network.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from common.errors import DatasetLayoutError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
ACCEPTED_MODES = frozenset({"RGB", "L"})
"""Colour and grey images (grey, as in FER+, is repeated on three channels); any other mode is refused."""

_TRAILING_NUMBER = re.compile(r"^(.+)_\d+$")


@dataclass(frozen=True)
class LabelledImage:
    path: str
    label: int
    group: str
    """The clip the image comes from (or the image itself when nothing says): the unit of the split."""


@dataclass(frozen=True)
class ImageFolderListing:
    """The usable images of a folder, its classes in index order, and the files refused, with why."""

    images: list[LabelledImage]
    classes: tuple[str, ...]
    skipped: dict[str, str]


def clip_of_file_name(name: str) -> str:
    """The clip of ``<clip_id>_<frame>[_<face>].png`` when no manifest says.

    Up to two trailing ``_<number>`` parts are removed. Where a clip id itself ends in
    ``_<number>`` (VGAF's ``289_55``), this errs towards putting more images in one group,
    which keeps a clip's frames on one side of the split.
    """
    stem = Path(name).stem
    for _ in range(2):
        match = _TRAILING_NUMBER.match(stem)
        if match is None:
            break
        stem = match.group(1)
    return stem


def check_image(path: str | os.PathLike[str]) -> str | None:
    """Why an image cannot be used (empty, unreadable, damaged, an unsupported mode), or None."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            mode = image.mode
            image.verify()  # structure and checksums (PNG CRCs) without decoding
        if mode not in ACCEPTED_MODES:
            return f"image mode {mode}; expected RGB or L (grey)"
    except Exception as exc:  # PIL raises many types for damaged files
        return f"unreadable image ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """An image as RGB uint8 (H, W, 3); grey is repeated on the three channels."""
    with Image.open(path) as image:
        image.load()
        if image.mode not in ACCEPTED_MODES:
            raise ValueError(f"{path}: image mode {image.mode}; expected RGB or L")
        return np.asarray(image.convert("RGB"))


def list_image_folder(root: str | os.PathLike[str], classes: tuple[str, ...] | None = None,
                      clip_of: dict[str, str] | None = None) -> ImageFolderListing:
    """Every image under ``root/<Class>/``, checked; bad files are skipped and named, never read again.

    ``classes`` fixes the class order (e.g. a validation folder must use the training folder's);
    otherwise it is the sorted class folder names, as ``ImageFolder`` has it. ``clip_of`` maps a
    path relative to ``root`` to its clip (from the manifest); without it, file names say.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such folder; expected an image folder <Class>/<image>")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name[0] not in "._")
    if classes is None:
        classes = tuple(folders)
    if not classes:
        raise DatasetLayoutError(f"{root}: no class folders; expected <Class>/<image> (e.g. written by jobs.faces)")
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise DatasetLayoutError(f"{root}: class folders {unknown} are not among the classes {list(classes)}")
    images: list[LabelledImage] = []
    skipped: dict[str, str] = {}
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            problem = check_image(path)
            if problem is not None:
                skipped[str(path)] = problem
                continue
            relative = path.relative_to(root).as_posix()
            group = (clip_of or {}).get(relative) or clip_of_file_name(path.name)
            images.append(LabelledImage(str(path), index, f"{name}/{group}" if clip_of is None else group))
    for path, why in skipped.items():
        log.warning("skipped %s: %s", path, why)
    return ImageFolderListing(images, tuple(classes), skipped)


def split_by_group(images: list[LabelledImage], val_fraction: float,
                   seed: int) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Hold out whole groups (clips) until about ``val_fraction`` of the images are held out.

    The groups are shuffled with ``seed``; the same images and seed give the same split.
    Near-identical frames of one clip therefore never sit on both sides.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    groups = sorted({image.group for image in images})
    if len(groups) < 2:
        raise DatasetLayoutError(f"{len(groups)} clip(s) among {len(images)} images: cannot hold out whole "
                                 "clips for validation; pass --val-images DIR")
    order = np.random.default_rng(seed).permutation(len(groups))
    sizes = Counter(image.group for image in images)
    target = val_fraction * len(images)
    held: set[str] = set()
    count = 0
    for position in order[:-1]:  # at least one group stays for training
        if count >= target:
            break
        held.add(groups[position])
        count += sizes[groups[position]]
    train = [image for image in images if image.group not in held]
    val = [image for image in images if image.group in held]
    return train, val


def class_weights(labels: list[int] | np.ndarray, n_classes: int, class_names: tuple[str, ...] = ()) -> np.ndarray:
    """Weight of class c = (images of the most frequent class) / (images of class c).

    The weighting of the paper's loss and the author's notebook (inverse frequency, scaled so
    the most frequent class weighs 1). A class without training images is an error: its
    weight would be infinite and the head could never learn it.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    empty = [class_names[i] if i < len(class_names) else str(i) for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DatasetLayoutError(f"classes {empty} have no training images; add images or remove the class folders")
    return (counts.max() / counts).astype(np.float32)
