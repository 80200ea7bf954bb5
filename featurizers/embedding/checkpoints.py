"""Load the published HSEmotion checkpoints safely under timm 1.x.

HSEmotion publishes whole models pickled with ``torch.save(model)`` under timm 0.9: a TF-style
EfficientNet-B0 or -B2 with the emotion head as ``classifier``. Two things stand in the way:

* A plain ``torch.load`` unpickles arbitrary code, so a tampered file could run anything.
  We unpickle with torch's ``weights_only`` loader and allow only the tensor, container and
  EfficientNet layer classes such a checkpoint needs; any other global is refused, named.
* timm 1.x added attributes to some classes (e.g. ``conv_s2d``, ``aa``) that its ``forward``
  reads. Unpickling restores only the attributes the old objects had, so we set the new ones to
  the values timm 1.x gives a network built without those features, which computes exactly what
  timm 0.9 did. This works on the modules themselves, so it does not depend on width or depth.
  A module that still differs from its timm 1.x counterpart afterwards is refused, instead of
  being run and giving silently wrong features.
"""

from __future__ import annotations

import _compat_pickle
import logging
import os
import pickle
import re
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import timm
import torch
from timm.layers import BatchNormAct2d, Conv2dSame, DropPath, SelectAdaptivePool2d
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual, SqueezeExcite
from timm.models.efficientnet import EfficientNet
from torch import nn

from common.digests import file_sha256
from common.errors import CheckpointFormatError, UnsafeCheckpointError, WeightsNotFoundError
from featurizers.embedding.featurizer_spec import HSEMOTION_PUBLISHED_AT

logger = logging.getLogger(__name__)

CHECKPOINT_CLASSES: tuple[type, ...] = (
    # the network and its timm layers
    EfficientNet,
    DepthwiseSeparableConv,
    InvertedResidual,
    SqueezeExcite,
    Conv2dSame,
    BatchNormAct2d,
    SelectAdaptivePool2d,
    DropPath,
    # torch layers timm builds it from, and the usual wrappers of a fine-tuned head
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.Linear,
    nn.Identity,
    nn.Sequential,
    nn.SiLU,
    nn.Sigmoid,
    nn.Flatten,
    nn.Dropout,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
"""Classes a checkpoint may instantiate, on top of torch's own tensor allow-list.

Unpickling any of them only builds or restores a torch/timm layer; none lets the file choose code to run.
"""

# torch's allow-list is process-wide state; loads in several threads must not undo each other's.
_ALLOW_LIST_LOCK = threading.Lock()

_DISALLOWED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")

# Set on models by timm's factory, not by the classes; read with defaults, so never required.
_FACTORY_METADATA = frozenset({"pretrained_cfg", "default_cfg", "pretrained_model_args"})


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a checkpoint file, recorded with descriptors so their weights can be traced."""
    return file_sha256(path)


def load_hsemotion_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> EfficientNet:
    """Load a whole-model HSEmotion checkpoint into a timm 1.x EfficientNet in eval mode.

    ``forward_head(forward_features(x), pre_logits=True)`` gives the global-pool features and
    ``forward(x)`` the emotion logits, as under the timm the checkpoint was saved with. A
    ``Sequential`` head is replaced by its ``Linear`` (HSEmotion's own code uses only that layer),
    so ``get_classifier()`` is the ``Linear``.

    Raises ``WeightsNotFoundError`` if the file is missing, ``UnsafeCheckpointError`` if its
    pickle references anything outside :data:`CHECKPOINT_CLASSES` and torch's tensor classes
    (nothing from it is run), and ``CheckpointFormatError`` if it holds something other than
    a timm EfficientNet that timm 1.x can run.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"checkpoint {path} not found (or not a file)")
    loaded = _restricted_load(path)
    if not isinstance(loaded, EfficientNet):
        raise CheckpointFormatError(
            f"{path}: found {_describe(loaded)}; expected a whole timm EfficientNet pickled with "
            "torch.save(model), as HSEmotion publishes its .pt files"
        )
    _upgrade_to_current_timm(loaded)
    _check_matches_current_timm(loaded, path)
    _unwrap_sequential_head(loaded, path)
    # Moved only now, so a device problem surfaces as torch's own error, not as a bad file.
    return loaded.to(map_location).eval()


def _restricted_load(path: Path) -> object:
    """Unpickle onto the CPU with torch's weights-only loader, allowing only :data:`CHECKPOINT_CLASSES`."""
    with _ALLOW_LIST_LOCK, torch.serialization.safe_globals(list(CHECKPOINT_CLASSES)):
        is_archive = zipfile.is_zipfile(path)  # torch.save's format since torch 1.6
        # Scan first, so the error can name every offending global, not just the first one met.
        unsafe = _unsafe_globals(path) if is_archive else []
        if unsafe:
            raise _unsafe_error(path, unsafe)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            named = _DISALLOWED_GLOBAL.findall(str(error))
            if named:
                raise _unsafe_error(path, [_python3_name(name) for name in named]) from None
            if is_archive and "Weights only load failed" in str(error):
                raise _unsafe_error(path, ["a pickle construct the weights-only loader refuses"]) from None
            raise _unreadable_error(path, error) from error
        except (RuntimeError, EOFError, ValueError) as error:
            raise _unreadable_error(path, error) from error


def _unsafe_globals(path: Path) -> list[str]:
    """Globals the archive's pickle names that are not allowed, as Python 3 names."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        return sorted({_python3_name(name) for name in names})
    except (ValueError, RuntimeError):
        return []  # not a torch.save archive after all; torch.load reports it


def _python3_name(name: str) -> str:
    """The name Python 3 resolves a protocol-2 global to (torch.save writes ``subprocess`` as ``commands``).

    Uses the tables the standard ``pickle`` module itself consults for this.
    """
    module, _, attribute = name.rpartition(".")
    if (module, attribute) in _compat_pickle.NAME_MAPPING:
        return ".".join(_compat_pickle.NAME_MAPPING[(module, attribute)])
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{attribute}"


def _unsafe_error(path: Path, names: Iterable[str]) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path}: refused to unpickle, it references {', '.join(names)}, which is outside the "
        "allow-list of tensor and EfficientNet layer classes (unpickling it could run code). "
        "Use the checkpoint as published by HSEmotion, or re-save a trusted model with torch.save(model)."
    )


def _unreadable_error(path: Path, error: Exception) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"{path}: not a readable torch checkpoint ({type(error).__name__}: {str(error)[:200]}); "
        "expected a .pt file written by torch.save, e.g. downloaded again from " + HSEMOTION_PUBLISHED_AT
    )


def _describe(obj: object) -> str:
    if isinstance(obj, Mapping):
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        if tensors and tensors == len(obj):
            return f"a state dict of {tensors} tensors (weights without the network)"
        return f"a {type(obj).__name__} with keys {sorted(map(str, obj))[:8]}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


def _upgrade_to_current_timm(model: EfficientNet) -> None:
    """Give modules pickled under timm 0.9 the attributes timm 1.x added, at their neutral values.

    Each value is what timm 1.x sets when the feature is off (no space-to-depth stem in a block,
    no anti-aliasing), so the upgraded module computes what it did under timm 0.9.
    """
    for module in model.modules():
        if isinstance(module, (DepthwiseSeparableConv, InvertedResidual)):
            _set_if_missing(module, "conv_s2d", lambda: None)
            _set_if_missing(module, "bn_s2d", lambda: None)
            _set_if_missing(module, "aa", nn.Identity)
    _set_if_missing(model, "in_chans", lambda: model.conv_stem.in_channels)
    _set_if_missing(model, "stage_ends", lambda: [info["stage"] for info in model.feature_info])
    _set_if_missing(model, "head_hidden_size", lambda: model.num_features * model.global_pool.feat_mult())


def _set_if_missing(module: nn.Module, name: str, make_value: Callable[[], object]) -> None:
    if not hasattr(module, name):
        setattr(module, name, make_value())


def _check_matches_current_timm(model: EfficientNet, path: Path) -> None:
    """Refuse a network whose modules still lack what timm 1.x's code reads, or hold extra layers.

    Compares each module with one of the same class built by the installed timm, so a checkpoint
    from a timm whose classes differ in ways we do not upgrade is caught here, not at run time
    or, worse, by silently different features.
    """
    reference = _reference_members()
    for name, module in model.named_modules():
        expected = reference.get(type(module))
        if expected is None:
            continue
        expected_attributes, expected_children = expected
        problems = []
        if missing := expected_attributes - _members(module):
            problems.append(f"lacks {sorted(missing)}")
        if extra := set(module._modules) - expected_children:
            problems.append(f"has unknown layers {sorted(extra)}")
        if problems:
            raise CheckpointFormatError(
                f"{path}: {name or 'the model'} ({type(module).__name__}) {' and '.join(problems)} "
                f"compared with timm {timm.__version__}; the checkpoint was saved by a timm whose "
                "EfficientNet differs in ways this loader does not upgrade (timm 0.9.x is supported)"
            )


@lru_cache(maxsize=1)
def _reference_members() -> dict[type, tuple[frozenset[str], frozenset[str]]]:
    """Per timm class, the attributes and child layers its modules have in a timm 1.x TF EfficientNet.

    torch's own layers are left out: torch keeps their old pickles working itself.
    """
    reference = timm.create_model("tf_efficientnet_b0", pretrained=False)
    return {
        type(module): (frozenset(_members(module) - _FACTORY_METADATA), frozenset(module._modules))
        for module in reference.modules()
        if type(module).__module__.startswith("timm.")
    }


def _members(module: nn.Module) -> set[str]:
    """Public attributes, parameters, buffers and children (torch's own bookkeeping excluded)."""
    public = {k for k in vars(module) if not k.startswith("_")}
    return public | set(module._modules) | set(module._parameters) | set(module._buffers)


def _unwrap_sequential_head(model: EfficientNet, path: Path) -> None:
    """Make ``classifier`` the head's ``Linear``: HSEmotion reads logits from that layer alone."""
    head = model.classifier
    if isinstance(head, nn.Linear):
        return
    if not (isinstance(head, nn.Sequential) and len(head) > 0 and isinstance(head[0], nn.Linear)):
        raise CheckpointFormatError(
            f"{path}: classifier is {type(head).__name__}; expected a Linear "
            "or a Sequential whose first layer is one"
        )
    no_ops_at_eval = (nn.Dropout, nn.Identity)
    dropped = [type(layer).__name__ for layer in list(head)[1:] if not isinstance(layer, no_ops_at_eval)]
    if dropped:
        logger.warning("%s: using the head's first Linear; ignoring the layers after it: %s", path, dropped)
    model.classifier = head[0]
    model.num_classes = head[0].out_features
