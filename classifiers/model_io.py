"""Trained-model folders: ``model.skops`` (the fitted pipeline) beside ``model.json`` (its provenance).

skops instead of pickle, because a model folder is something people pass around and loading a
pickle runs whatever it names. Loading checks the file against an explicit allow-list of the
scikit-learn types our pipelines are made of and refuses anything else before building objects.
``model.json`` says which descriptors the model belongs to, so evaluation and scoring can refuse
descriptors from another featurizer or layout.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from classifiers.model_files import (  # noqa: F401 - ModelProvenance and the file names, offered with the loader
    MODEL_FILE,
    PROVENANCE_FILE,
    ModelProvenance,
    read_model_provenance,
)
from common.errors import CheckpointFormatError, UnsafeCheckpointError
from common.stores.storage import write_atomically

CLASSIFIER_TYPES: tuple[type, ...] = (LinearSVC, SVC, RandomForestClassifier)


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# The only scikit-learn types a model file may contain. Tree is the forest's compiled tree
# structure; it has no public import path, so it is named by string.
TRUSTED_TYPES: frozenset[str] = frozenset(
    [_type_name(t) for t in (Pipeline, Normalizer, DecisionTreeClassifier, *CLASSIFIER_TYPES)]
    + ["sklearn.tree._tree.Tree"])


@dataclass(frozen=True)
class TrainedModel:
    """A loaded model folder."""

    pipeline: Pipeline
    provenance: ModelProvenance
    folder: Path


def save_model(folder: str | Path, pipeline: Pipeline, provenance: ModelProvenance) -> Path:
    """Write ``model.skops`` and ``model.json`` into ``folder`` (created if needed); returns it.

    Each file is written beside its final name and then renamed, so an interrupted save never
    leaves a half-written model that looks complete.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / MODEL_FILE, sio.dumps(pipeline))
    text = json.dumps(provenance.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n"
    _write_atomically(folder / PROVENANCE_FILE, text.encode())
    return folder


def load_model(folder: str | Path) -> TrainedModel:
    """Read a model folder, refusing unknown format versions and types outside the allow-list."""
    folder = Path(folder)
    provenance = read_model_provenance(folder)
    pipeline = load_pipeline(folder / MODEL_FILE)
    return TrainedModel(pipeline=pipeline, provenance=provenance, folder=folder)


def load_pipeline(model_file: str | Path) -> Pipeline:
    """Load a skops file that holds only allow-listed types and is ``Normalizer -> classifier``."""
    model_file = Path(model_file)
    refused = untrusted_types(model_file)
    if refused:
        raise UnsafeCheckpointError(
            f"{model_file} contains types outside the allow-list: {refused}; it was not loaded. "
            f"Only {sorted(TRUSTED_TYPES)} are accepted; retrain with jobs.train if the file is yours")
    try:
        pipeline = sio.load(model_file, trusted=sorted(TRUSTED_TYPES))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise CheckpointFormatError(f"{model_file} is not a readable skops model: {exc}") from exc
    _check_structure(pipeline, model_file)
    return pipeline


def untrusted_types(model_file: str | Path) -> list[str]:
    """Types in the file that we do not accept, checked before any object is built.

    skops itself trusts every scikit-learn estimator by default, so besides its own list of
    untrusted types we also refuse scikit-learn types that are not ours.
    """
    try:
        by_skops = set(sio.get_untrusted_types(file=model_file))
        sklearn_types = {name for name in _types_in_schema(Path(model_file)) if name.startswith("sklearn.")}
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{model_file} is not a readable skops model: {exc}") from exc
    return sorted((by_skops | sklearn_types) - TRUSTED_TYPES)


def _types_in_schema(model_file: Path) -> set[str]:
    with zipfile.ZipFile(model_file) as archive:
        schema = json.loads(archive.read("schema.json"))
    return {f"{node['__module__']}.{node['__class__']}" for node in _walk(schema)
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str)}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_structure(pipeline: Any, model_file: Path) -> None:
    steps = pipeline.steps if isinstance(pipeline, Pipeline) else []
    if (len(steps) != 2 or not isinstance(steps[0][1], Normalizer)
            or not isinstance(steps[1][1], CLASSIFIER_TYPES)):
        raise CheckpointFormatError(f"{model_file} does not hold a Normalizer -> classifier pipeline "
                                    f"(found {pipeline!r}); was it written by jobs.train?")


def _write_atomically(path: Path, payload: bytes) -> None:
    write_atomically(path, lambda tmp: tmp.write_bytes(payload))


def _json_default(value: Any) -> Any:
    """numpy scalars and tuples that sneak into hyper-parameters become plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
