from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import Normalizer
from sklearn.svm import SVC, LinearSVC
from synthetic_tables import CLASSES, clip_row, separable_rows, standard_rows, write_table

from classifiers.descriptors import load_descriptors, select_split
from classifiers.evaluation import evaluation_set
from classifiers.training import (
    HyperParameters,
    build_pipeline,
    default_C,
    fit_classifier,
    parse_C_grid,
    resolve_hyperparameters,
    search_C,
    training_set,
)
from common.errors import DatasetLayoutError

FAST = {"linearsvc": HyperParameters(C=1.0), "svc": HyperParameters(C=1.0),
        "randomforest": HyperParameters(n_estimators=15, max_depth=3)}


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    """A one-file AFEW-like table with separable classes, faceless clips and failed clips."""
    return write_table(tmp_path / "features" / "afew_synthetic.parquet", standard_rows())


def test_training_set_drops_faceless_and_failed_clips_and_counts_them(table_path: Path) -> None:
    data = training_set(select_split(load_descriptors(table_path), "train"))
    c = data.counts
    assert (c.rows_in_split, c.errors_excluded, c.faceless_dropped, c.unlabelled_excluded, c.rows_used) == (27, 1, 2, 0, 24)
    assert c.per_class == {"Angry": 8, "Happy": 8, "Sad": 8}
    assert data.X.shape == (24, 8) and (np.linalg.norm(data.X, axis=1) > 0).all()
    assert data.classes == CLASSES and sorted(set(data.y.tolist())) == [0, 1, 2]


@pytest.mark.parametrize("kind", ["linearsvc", "svc", "randomforest"])
def test_each_classifier_separates_separable_classes(table_path: Path, kind: str) -> None:
    descriptors = load_descriptors(table_path)
    model = fit_classifier(training_set(select_split(descriptors, "train")), kind, FAST[kind])
    rows = evaluation_set(select_split(descriptors, "val"), CLASSES)
    faces = rows.has_face
    assert np.mean(model.predict(rows.X[faces]) == rows.y[faces]) == 1.0


def test_same_input_gives_the_same_model(table_path: Path) -> None:
    data = training_set(select_split(load_descriptors(table_path), "train"))
    probe = np.random.default_rng(5).uniform(size=(20, 8))
    for kind, params in FAST.items():
        a, b = fit_classifier(data, kind, params), fit_classifier(data, kind, params)
        np.testing.assert_array_equal(a.predict(probe), b.predict(probe))
        if kind == "linearsvc":
            np.testing.assert_array_equal(a[-1].coef_, b[-1].coef_)
        elif kind == "randomforest":
            np.testing.assert_array_equal(a.predict_proba(probe), b.predict_proba(probe))


def test_pipeline_is_l2_normaliser_then_seeded_estimator() -> None:
    pipe = build_pipeline("linearsvc", HyperParameters(C=1.1, seed=7))
    assert isinstance(pipe[0], Normalizer) and pipe[0].norm == "l2"
    assert isinstance(pipe[-1], LinearSVC) and pipe[-1].C == 1.1 and pipe[-1].random_state == 7
    svc = build_pipeline("svc", HyperParameters(C=2.0, max_iter=50))[-1]
    assert isinstance(svc, SVC) and svc.kernel == "rbf" and svc.gamma == "scale" and svc.max_iter == 50
    forest = build_pipeline("randomforest", resolve_hyperparameters("randomforest", "afew"))[-1]
    assert (forest.n_estimators, forest.max_depth, forest.n_jobs, forest.random_state) == (1000, 7, -1, 1)


def test_default_C_follows_the_reference_runs() -> None:
    assert default_C("linearsvc", "afew") == 1.1
    assert default_C("linearsvc", "vgaf") == 0.5
    assert default_C("linearsvc", "folder") == 1.0
    assert default_C("svc", "afew") == 1.0
    assert resolve_hyperparameters("linearsvc", "vgaf").C == 0.5
    assert resolve_hyperparameters("linearsvc", "vgaf", C=3.0).C == 3.0
    with pytest.raises(ValueError, match="--C"):
        resolve_hyperparameters("randomforest", "afew", C=1.0)
    with pytest.raises(ValueError, match="--n-estimators"):
        resolve_hyperparameters("svc", "afew", n_estimators=10)


def test_clear_errors_for_unusable_training_data(tmp_path: Path) -> None:
    unlabelled = write_table(tmp_path / "u.parquet", [clip_row("u1", None, None, np.ones(8))])
    with pytest.raises(DatasetLayoutError, match="labels missing"):
        training_set(load_descriptors(unlabelled))
    faceless = write_table(tmp_path / "f.parquet", [clip_row("f1", "train", "Sad"),
                                                    clip_row("e1", "train", "Angry", status="error")])
    with pytest.raises(DatasetLayoutError, match="no training rows"):
        training_set(load_descriptors(faceless))
    one_class = write_table(tmp_path / "o.parquet", separable_rows("train", 3, classes=("Happy",)))
    with pytest.raises(DatasetLayoutError, match="only one class \\('Happy'\\)"):
        training_set(load_descriptors(one_class))


def test_search_C_reports_every_candidate_and_picks_the_best(table_path: Path) -> None:
    data = training_set(select_split(load_descriptors(table_path), "train"))
    result = search_C(data, "linearsvc", HyperParameters(C=1.0), (0.01, 1.0, 10.0), folds=4)
    assert result.folds == 4 and result.candidates == (0.01, 1.0, 10.0)
    assert len(result.mean_accuracy) == 3
    assert result.best_C == result.candidates[int(np.argmax(result.mean_accuracy))]
    assert result.to_dict()["results"][1]["C"] == 1.0
    # folds shrink to the smallest class (8 clips here)
    assert search_C(data, "svc", HyperParameters(C=1.0), (1.0,), folds=20).folds == 8
    with pytest.raises(ValueError, match="randomforest"):
        search_C(data, "randomforest", FAST["randomforest"], (1.0,))


def test_parse_C_grid() -> None:
    assert parse_C_grid("1, 0.1,0.01,1") == (0.01, 0.1, 1.0)
    for bad in ("a,b", "", "0,1"):
        with pytest.raises(ValueError, match="--search-C"):
            parse_C_grid(bad)
