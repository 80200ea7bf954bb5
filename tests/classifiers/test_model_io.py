from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer
from synthetic_tables import CLASSES, provenance

from classifiers.model_io import MODEL_FILE, PROVENANCE_FILE, ModelProvenance, load_model, load_pipeline, save_model
from classifiers.training import HyperParameters, build_pipeline
from common.errors import CheckpointFormatError, UnsafeCheckpointError

X = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0]] * 4)
Y = np.array([0, 1, 2] * 4)


def _provenance(**changes: object) -> ModelProvenance:
    prov = provenance()
    fields = dict(featurizer=prov["featurizer"], layout=prov["layout"], classes=list(CLASSES),
                  classifier="linearsvc", hyperparameters=HyperParameters(C=1.0).to_dict(),
                  weights_sha256=prov["weights_sha256"], dataset="afew",
                  training={"rows_used": 12, "per_class": {c: 4 for c in CLASSES}})
    return ModelProvenance(**{**fields, **changes})


@pytest.mark.parametrize("kind", ["linearsvc", "svc", "randomforest"])
def test_round_trip_keeps_predictions_and_provenance(tmp_path: Path, kind: str) -> None:
    params = HyperParameters(n_estimators=5, max_depth=2) if kind == "randomforest" else HyperParameters(C=1.0)
    pipeline = build_pipeline(kind, params).fit(X, Y)
    save_model(tmp_path / "m", pipeline, _provenance(classifier=kind))
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.pipeline.predict(X), pipeline.predict(X))
    assert loaded.provenance.classifier == kind and loaded.provenance.classes == list(CLASSES)
    on_disk = json.loads((tmp_path / "m" / PROVENANCE_FILE).read_text())
    assert on_disk["format_version"] == 1
    assert set(on_disk["libraries"]) == {"python", "numpy", "scikit-learn", "skops"}
    assert on_disk["created"] and on_disk["layout"]["length"] == 8


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    save_model(tmp_path, build_pipeline("linearsvc", HyperParameters(C=1.0)).fit(X, Y), _provenance())
    data = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    data["format_version"] = 99
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointFormatError, match="format version 99"):
        load_model(tmp_path)


def test_sklearn_type_outside_the_allow_list_is_refused_before_loading(tmp_path: Path) -> None:
    # skops trusts every scikit-learn estimator by default; our allow-list does not.
    foreign = Pipeline([("l2", Normalizer()), ("classifier", KNeighborsClassifier(n_neighbors=1))]).fit(X, Y)
    sio.dump(foreign, tmp_path / MODEL_FILE)
    with pytest.raises(UnsafeCheckpointError, match="KNeighborsClassifier.*not loaded"):
        load_pipeline(tmp_path / MODEL_FILE)


def test_type_untrusted_by_skops_is_refused(tmp_path: Path) -> None:
    sneaky = Pipeline([("l2", Normalizer()), ("classifier", FunctionTransformer(eval))])
    sio.dump(sneaky, tmp_path / MODEL_FILE)
    assert sio.get_untrusted_types(file=tmp_path / MODEL_FILE) == ["builtins.eval"]
    with pytest.raises(UnsafeCheckpointError, match="builtins.eval"):
        load_pipeline(tmp_path / MODEL_FILE)


def test_wrong_structure_and_garbage_files_are_format_errors(tmp_path: Path) -> None:
    sio.dump(Normalizer().fit(X), tmp_path / "plain.skops")
    with pytest.raises(CheckpointFormatError, match="Normalizer -> classifier"):
        load_pipeline(tmp_path / "plain.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(CheckpointFormatError, match="not a readable skops model"):
        load_pipeline(tmp_path / "junk.skops")


def test_missing_model_folder_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(tmp_path / "nothing")
