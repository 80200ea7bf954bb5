"""What a trained-model folder holds and what ``model.json`` says, read without scikit-learn.

``jobs.score`` checks the model against the featurizer and compares its digest with the one
its state was scored with on every run; a night with nothing new must do so without loading
scikit-learn (seconds of imports). Loading the fitted pipeline is :mod:`classifiers.model_io`'s job.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from common.digests import file_sha256
from common.errors import CheckpointFormatError

MODEL_FORMAT_VERSION = 1
MODEL_FILE = "model.skops"
PROVENANCE_FILE = "model.json"


def library_versions() -> dict[str, str]:
    """Versions that decide whether a model file loads and predicts the same elsewhere."""
    return {"python": platform.python_version(), **{name: version(name) for name in ("numpy", "scikit-learn", "skops")}}


@dataclass(frozen=True)
class ModelProvenance:
    """Everything ``model.json`` records: the descriptors' identity, the fit and the environment."""

    featurizer: str
    layout: dict[str, Any] | None
    classes: list[str]
    classifier: str
    hyperparameters: dict[str, Any]
    weights_sha256: str | None = None
    dataset: str | None = None
    estimator_params: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    """Split, source files and row counts (used, faceless dropped, errors excluded, per class)."""
    cross_validation: dict[str, Any] | None = None
    descriptor_provenance: dict[str, Any] = field(default_factory=dict)
    """The descriptor tables' own provenance (project version, detector, frames), verbatim."""
    libraries: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = MODEL_FORMAT_VERSION

    def identity(self) -> dict[str, Any]:
        """The provenance keys compared against descriptor tables (same shape as theirs)."""
        return {"featurizer": self.featurizer, "layout": self.layout, "weights_sha256": self.weights_sha256}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model.json") -> ModelProvenance:
        """Parse ``model.json``; unknown format versions and missing keys are refused."""
        version = data.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{source} has model format version {version!r}; this code reads version "
                f"{MODEL_FORMAT_VERSION} only (retrain the model with this version of the project)")
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("featurizer", "layout", "classes", "classifier", "hyperparameters")
                   if k not in data]
        if missing:
            raise CheckpointFormatError(f"{source} lacks the keys {missing}")
        return cls(**{k: v for k, v in data.items() if k in known})


def require_model_folder(folder: str | Path) -> Path:
    """The folder, once both of its files are there; else a FileNotFoundError that says what a model folder is."""
    folder = Path(folder)
    for needed in (folder / PROVENANCE_FILE, folder / MODEL_FILE):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found; --model must be a folder written by jobs.train "
                                    f"(holding {MODEL_FILE} and {PROVENANCE_FILE})")
    return folder


def model_sha256(folder: str | Path) -> str:
    """The digest of the fitted model file: what scores record, and what tells a retrained model apart."""
    return file_sha256(require_model_folder(folder) / MODEL_FILE)


def read_model_provenance(folder: str | Path) -> ModelProvenance:
    """``model.json`` of a model folder, refusing unknown format versions and missing keys."""
    provenance_file = require_model_folder(folder) / PROVENANCE_FILE
    try:
        data = json.loads(provenance_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointFormatError(f"{provenance_file} is not valid JSON: {exc}") from exc
    return ModelProvenance.from_dict(data, source=str(provenance_file))
