from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_tables import CLASSES, clip_row, write_table

from classifiers.descriptors import load_descriptors
from classifiers.evaluation import (
    accuracy,
    class_scores,
    evaluation_metrics,
    evaluation_set,
    plot_confusion_matrices,
    subset_metrics,
)
from classifiers.training import HyperParameters, build_pipeline
from common.errors import DatasetLayoutError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_two_accuracy_figures_by_hand() -> None:
    y_true = np.array([0, 1, 2, 0, 1])
    y_pred = np.array([0, 1, 1, 0, 2])
    has_face = np.array([True, True, True, False, False])
    m = evaluation_metrics(y_true, y_pred, has_face, CLASSES)
    assert m["accuracy_with_faces"] == pytest.approx(2 / 3)  # clips 0, 1 right; clip 2 wrong
    assert m["accuracy_all"] == pytest.approx(3 / 5)  # plus faceless clip 3 right, clip 4 wrong
    assert (m["with_faces"]["n"], m["with_faces"]["correct"], m["all_clips"]["correct"]) == (3, 2, 3)
    assert m["all_clips"]["confusion_matrix"]["matrix"] == [[2, 0, 0], [0, 1, 1], [0, 1, 0]]
    assert m["all_clips"]["confusion_matrix"]["classes"] == list(CLASSES)
    report = m["all_clips"]["classification_report"]
    assert report["Angry"]["recall"] == 1.0 and report["Happy"]["support"] == 2
    assert report["Sad"]["precision"] == 0.0


def test_empty_subset_has_no_accuracy() -> None:
    assert accuracy(np.array([]), np.array([])) is None
    m = subset_metrics(np.array([], int), np.array([], int), CLASSES)
    assert m["accuracy"] is None and m["classification_report"] is None
    assert m["confusion_matrix"]["matrix"] == [[0] * 3] * 3


def test_evaluation_set_keeps_faceless_as_zero_rows_and_excludes_failures(tmp_path: Path) -> None:
    rows = [clip_row("a", "val", "Angry", np.ones(8)), clip_row("f", "val", "Sad"),
            clip_row("e", "val", "Happy", status="error"), clip_row("u", "val", None, np.ones(8))]
    rows[1]["descriptor"] = [9.0] * 8  # a stale non-zero descriptor on a faceless clip is zeroed
    d = load_descriptors(write_table(tmp_path / "t.parquet", rows))
    s = evaluation_set(d, CLASSES)
    assert s.clip_ids.tolist() == ["a", "f"] and s.y.tolist() == [0, 2]
    assert not s.X[1].any() and s.X[0].all()
    c = s.counts
    assert (c.rows_in_split, c.errors_excluded, c.unlabelled_excluded, c.evaluated, c.with_face, c.faceless) == (4, 1, 1, 2, 1, 1)


def test_evaluation_set_with_nothing_to_evaluate_is_an_error(tmp_path: Path) -> None:
    d = load_descriptors(write_table(tmp_path / "t.parquet", [clip_row("e", "val", "Sad", status="error")]))
    with pytest.raises(DatasetLayoutError, match="nothing to evaluate"):
        evaluation_set(d, CLASSES)


def test_class_scores_one_column_per_model_class() -> None:
    X = np.array([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 5.0, 0], [0, 0, 0, 5.0]] * 3)
    y = np.array([0, 1, 2, 2] * 3)
    svm = build_pipeline("linearsvc", HyperParameters(C=1.0)).fit(X, y)
    scores, kind = class_scores(svm, X)
    assert kind == "decision_function" and scores.shape == (12, 3)
    forest = build_pipeline("randomforest", HyperParameters(n_estimators=5, max_depth=2)).fit(X, y)
    scores, kind = class_scores(forest, X)
    assert kind == "probability" and np.allclose(scores.sum(axis=1), 1.0)
    binary = build_pipeline("svc", HyperParameters(C=1.0)).fit(X, (y > 0).astype(int))
    scores, _ = class_scores(binary, X)
    assert scores.shape == (12, 2) and np.allclose(scores[:, 0], -scores[:, 1])


def test_confusion_matrix_png_is_written(tmp_path: Path) -> None:
    path = tmp_path / "cm.png"
    plot_confusion_matrices({"faces": np.eye(3, dtype=int), "all": np.ones((3, 3), int)}, CLASSES, path, "t")
    assert path.read_bytes()[:8] == PNG_MAGIC
