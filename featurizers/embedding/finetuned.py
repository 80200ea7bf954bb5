"""A fine-tuned featurizer on disk: ``featurizer.json`` beside ``weights.safetensors``.

``jobs.finetune`` writes such a folder; every job that takes a registry name also takes its
path (``get_featurizer_spec`` reads it into a :class:`FeaturizerSpec`), so preprocessing,
backends and provenance derive from it exactly as from a registry entry. The weights are a
plain tensor file (safetensors): loading runs no pickle, and the JSON records their SHA-256,
checked on every load.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.digests import file_sha256
from common.errors import CheckpointFormatError, WeightsNotFoundError
from featurizers.embedding.featurizer_spec import (
    FINETUNED_CONFIG_FILE,
    FINETUNED_WEIGHTS_FILE,
    RESIZE_INTERPOLATION,
    FeaturizerSpec,
)

FORMAT_NAME = "emotiw-video fine-tuned featurizer"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FinetunedDescription:
    """What ``featurizer.json`` holds: how to rebuild, preprocess and trace the network."""

    architecture: str
    global_pool: str
    """timm pooling of the network (``avg``; HSEmotion B2 checkpoints use ``max``)."""
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    classes: tuple[str, ...]
    base_featurizer: str
    base_weights_sha256: str
    weights_sha256: str
    training: dict[str, Any]
    interpolation: str = RESIZE_INTERPOLATION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "architecture": self.architecture, "global_pool": self.global_pool,
            "input_size": self.input_size, "interpolation": self.interpolation,
            "mean": list(self.mean), "std": list(self.std), "feature_dim": self.feature_dim,
            "classes": list(self.classes),
            "base": {"featurizer": self.base_featurizer, "weights_sha256": self.base_weights_sha256},
            "weights_file": FINETUNED_WEIGHTS_FILE, "weights_sha256": self.weights_sha256,
            "training": self.training,
        }

    @staticmethod
    def from_json(data: dict[str, Any], source: str) -> FinetunedDescription:
        if data.get("format") != FORMAT_NAME or data.get("format_version") != FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{source}: not a {FORMAT_NAME} description (format {data.get('format')!r}, "
                f"version {data.get('format_version')!r}; expected version {FORMAT_VERSION})")
        try:
            description = FinetunedDescription(
                architecture=str(data["architecture"]), global_pool=str(data["global_pool"]),
                input_size=int(data["input_size"]), mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
                feature_dim=int(data["feature_dim"]), classes=tuple(str(c) for c in data["classes"]),
                base_featurizer=str(data["base"]["featurizer"]),
                base_weights_sha256=str(data["base"]["weights_sha256"]),
                weights_sha256=str(data["weights_sha256"]), training=dict(data.get("training") or {}),
                interpolation=str(data["interpolation"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointFormatError(f"{source}: missing or malformed entry ({type(exc).__name__}: {exc})") from None
        if description.interpolation != RESIZE_INTERPOLATION:
            raise CheckpointFormatError(
                f"{source}: interpolation {description.interpolation!r}; this project resizes faces "
                f"with {RESIZE_INTERPOLATION!r} only")
        if len(description.mean) != 3 or len(description.std) != 3 or not description.classes:
            raise CheckpointFormatError(f"{source}: mean and std need 3 values and classes at least one name")
        return description


def is_featurizer_folder(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / FINETUNED_CONFIG_FILE).is_file()


def read_description(folder: str | os.PathLike[str]) -> FinetunedDescription:
    """Parse a folder's ``featurizer.json``; errors name the file and what is wrong."""
    path = Path(folder) / FINETUNED_CONFIG_FILE
    if not path.is_file():
        raise WeightsNotFoundError(f"{folder}: no {FINETUNED_CONFIG_FILE}; expected a folder written by jobs.finetune")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointFormatError(f"{path}: expected a JSON object")
    return FinetunedDescription.from_json(data, str(path))


def spec_from_folder(folder: str | os.PathLike[str]) -> FeaturizerSpec:
    """The :class:`FeaturizerSpec` of a fine-tuned folder; its name is the folder's absolute path,
    so descriptors, models and scores name the featurizer by where it lives."""
    root = Path(folder).absolute()
    stat = (root / FINETUNED_CONFIG_FILE).stat()
    return _spec_from_folder(str(root), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _spec_from_folder(root: str, mtime_ns: int, size: int) -> FeaturizerSpec:
    """Cached per version of the file: jobs ask for the spec often (``ExtractionConfig.spec``)."""
    description = read_description(root)
    return FeaturizerSpec(
        name=root,
        architecture=description.architecture,
        input_size=description.input_size,
        feature_dim=description.feature_dim,
        source="finetuned",
        head_outputs=description.classes,
        mean=description.mean,
        std=description.std,
        emotion_tuned=True,
        description=f"fine-tuned from {description.base_featurizer} on {', '.join(description.classes)}",
    )


def save_featurizer_folder(folder: str | os.PathLike[str], model: Any, description: FinetunedDescription) -> Path:
    """Write the network's weights (safetensors) and its description; returns the folder.

    ``description.weights_sha256`` is filled in from the written file.
    """
    from dataclasses import replace

    from safetensors.torch import save_file

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    weights = root / FINETUNED_WEIGHTS_FILE
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(weights), metadata={"format": FORMAT_NAME, "architecture": description.architecture})
    description = replace(description, weights_sha256=file_sha256(weights))
    (root / FINETUNED_CONFIG_FILE).write_text(json.dumps(description.to_json(), indent=2) + "\n")
    return root


def load_finetuned_model(folder: str | os.PathLike[str]) -> Any:
    """Rebuild the timm network of a fine-tuned folder and load its checked weights (eval mode)."""
    import timm
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    root = Path(folder)
    description = read_description(root)
    weights = root / FINETUNED_WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsNotFoundError(f"{root}: {FINETUNED_WEIGHTS_FILE} is missing")
    found = file_sha256(weights)
    if found != description.weights_sha256:
        raise CheckpointFormatError(
            f"{weights}: SHA-256 {found[:12]}... differs from {description.weights_sha256[:12]}... recorded in "
            f"{FINETUNED_CONFIG_FILE}; the weights were changed or damaged after fine-tuning")
    model = timm.create_model(description.architecture, pretrained=False, num_classes=len(description.classes),
                              global_pool=description.global_pool)
    try:
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointFormatError(f"{weights}: does not hold {description.architecture} weights "
                                    f"({type(exc).__name__}: {str(exc)[:300]})") from None
    return model.eval()



