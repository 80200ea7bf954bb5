"""List a dataset's clips with their labels: AFEW and VGAF layouts, or any folder of videos.

The job lists inputs itself (rather than a file-pattern match) so that no entry is lost:
zero-byte files, folders named like videos and label problems all become clips with a
problem or a decoding error, and so rows in the output.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from common.errors import DatasetLayoutError
from common.tables.schema import AFEW_CLASSES, VGAF_CLASSES
from pipelines.extraction.clip_records import ClipRef

VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"})
SPLITS = ("train", "val", "test")
SAMPLE_ROOT = Path(__file__).resolve().parents[2] / "sample_videos"

# Folder names each layout accepts for a split, official names first.
AFEW_SPLIT_FOLDERS = {"train": ("Train_AFEW", "train"), "val": ("Val_AFEW", "val"), "test": ("Test_AFEW", "test")}
VGAF_SPLIT_FOLDERS = {"train": ("Train",), "val": ("Val",), "test": ("Test",)}
VGAF_LABEL_FILES = {"train": "Train_labels.txt", "val": "Val_labels.txt", "test": "Test_labels.txt"}
# The author's derived frame/face folders live inside AFEW split folders; they are not classes.
AFEW_DERIVED_PREFIX = "AlignedFaces_LBPTOP_Points"


def _visible_entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _split_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _requested_splits(split: str) -> tuple[str, ...]:
    if split == "all":
        return SPLITS
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} or all")
    return (split,)


def unique_clip_ids(refs: list[ClipRef], root: Path) -> list[ClipRef]:
    """Clip ids are file stems, except where stems repeat: then the path relative to the root."""
    counts = Counter(r.clip_id for r in refs)
    return [
        r if counts[r.clip_id] == 1 else replace(r, clip_id=Path(r.path).relative_to(root).as_posix())
        for r in refs
    ]


def list_afew(root: Path, split: str = "all") -> list[ClipRef]:
    """AFEW as distributed (``Train_AFEW/<Class>/*.avi``) or as the author laid it out (``train/<Class>``)."""
    refs: list[ClipRef] = []
    found_any = False
    for name in _requested_splits(split):
        folder = _split_folder(root, AFEW_SPLIT_FOLDERS[name])
        if folder is None:
            continue
        found_any = True
        entries = [p for p in _visible_entries(folder) if not p.name.startswith(AFEW_DERIVED_PREFIX)]
        if name == "test":  # the test split is distributed unlabelled, its videos directly in the folder
            unlabelled = [p for p in entries if p.suffix.lower() in VIDEO_EXTENSIONS]
            refs += [ClipRef(p.stem, str(p), "afew", name) for p in unlabelled]
            entries = [p for p in entries if p not in unlabelled]
        unknown = [p.name for p in entries if p.name not in AFEW_CLASSES]
        if unknown:
            raise DatasetLayoutError(
                f"{folder}: unknown entries {unknown}; an AFEW split folder holds only the class "
                f"folders {', '.join(AFEW_CLASSES)}"
            )
        for class_dir in entries:
            index = AFEW_CLASSES.index(class_dir.name)
            for clip in _visible_entries(class_dir):
                refs.append(ClipRef(clip.stem, str(clip), "afew", name, class_dir.name, index))
    if not found_any:
        expected = " or ".join("/".join(AFEW_SPLIT_FOLDERS[s]) for s in _requested_splits(split))
        raise DatasetLayoutError(f"{root}: no AFEW split folder found; expected {expected}")
    return unique_clip_ids(refs, root)


@dataclass(frozen=True)
class LabelFile:
    """A parsed VGAF label file: labels by video name, and one message per bad line."""

    labels: dict[str, int]
    problems: dict[str, str]
    """Problems attached to a video name (e.g. unknown label id)."""
    unattached: list[str]
    """Problems that name no video (malformed lines)."""


def parse_vgaf_labels(text: str, source: str = "labels") -> LabelFile:
    """Parse ``name label`` lines after one header line; labels 1/2/3 become indices 0/1/2."""
    labels: dict[str, int] = {}
    problems: dict[str, str] = {}
    unattached: list[str] = []
    lines = text.splitlines()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            unattached.append(f"{source} line {number}: expected 'name label', got {line.strip()!r}")
            continue
        name, raw = parts
        if not raw.isdigit() or not 1 <= int(raw) <= len(VGAF_CLASSES):
            problems[name] = f"{source} line {number}: unknown label {raw!r} (expected 1 Positive, 2 Neutral, 3 Negative)"
        elif name in labels and labels[name] != int(raw) - 1:
            problems[name] = f"{source} line {number}: {name} listed again with a different label"
        else:
            labels[name] = int(raw) - 1
    return LabelFile(labels, problems, unattached)


def list_vgaf(root: Path, split: str = "all") -> tuple[list[ClipRef], list[str]]:
    """VGAF: ``Train/``, ``Val/`` videos and ``Train_labels.txt``, ``Val_labels.txt``.

    Returns the clips and the label-file problems that belong to no clip. A video without a
    label, a label without a video and a bad label line each give a clip with a problem.
    """
    refs: list[ClipRef] = []
    warnings: list[str] = []
    found_any = False
    for name in _requested_splits(split):
        folder = _split_folder(root, VGAF_SPLIT_FOLDERS[name])
        label_path = root / VGAF_LABEL_FILES[name]
        if folder is None and not label_path.is_file():
            continue
        found_any = True
        label_file = None
        if label_path.is_file():
            label_file = parse_vgaf_labels(label_path.read_text(errors="replace"), str(label_path))
            warnings += label_file.unattached
        videos = _visible_entries(folder) if folder is not None else []
        seen = set()
        for video in videos:
            seen.add(video.stem)
            ref = ClipRef(video.stem, str(video), "vgaf", name)
            if label_file is None:
                refs.append(ref)  # an unlabelled split (e.g. test) is fine
            elif video.stem in label_file.problems:
                refs.append(replace(ref, problem=label_file.problems[video.stem]))
            elif video.stem in label_file.labels:
                index = label_file.labels[video.stem]
                refs.append(replace(ref, label=VGAF_CLASSES[index], label_index=index))
            else:
                refs.append(replace(ref, problem=f"no label for {video.stem} in {label_path}"))
        if label_file is not None:
            missing = sorted((set(label_file.labels) | set(label_file.problems)) - seen)
            folder_name = folder or root / VGAF_SPLIT_FOLDERS[name][0]
            for stem in missing:
                listed = label_file.labels.get(stem)
                refs.append(ClipRef(
                    stem, str(folder_name / stem), "vgaf", name,
                    VGAF_CLASSES[listed] if listed is not None else None, listed,
                    problem=f"listed in {label_path} but no video named {stem}.* in {folder_name}",
                ))
    if not found_any:
        raise DatasetLayoutError(
            f"{root}: no VGAF split found; expected Train/ or Val/ with Train_labels.txt or Val_labels.txt"
        )
    return unique_clip_ids(refs, root), warnings


def list_folder(root: Path) -> list[ClipRef]:
    """Every video under a folder, recursively, by extension (case-insensitive); unlabelled."""
    if root.is_file():
        return [ClipRef(root.stem, str(root), "folder")]
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such folder")
    refs = [
        ClipRef(p.stem, str(p), "folder")
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in VIDEO_EXTENSIONS and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return unique_clip_ids(refs, root)


def list_clips(dataset: str, root: Path, split: str = "all") -> tuple[list[ClipRef], list[str]]:
    """The clips of a dataset, and warnings that belong to no clip."""
    if dataset == "afew":
        return list_afew(root, split), []
    if dataset == "vgaf":
        return list_vgaf(root, split)
    if dataset == "folder":
        return list_folder(root), []
    raise ValueError(f"unknown dataset {dataset!r}; expected afew, vgaf or folder")
