"""Evaluation rows, accuracy figures, per-class reports and the confusion-matrix picture.

The reference printed two figures: "Accuracy" on the clips where a face was found and
"Complete accuracy" on every clip, faceless ones entering as all-zero descriptors (predicted as
whatever class the model gives a zero vector). Published numbers mix the two, so we always
report both. Everything here except :func:`plot_confusion_matrices` is a pure function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import classification_report, confusion_matrix
from sklearn.pipeline import Pipeline

from classifiers.descriptors import DescriptorSet, encode_labels
from common.errors import DatasetLayoutError


@dataclass(frozen=True)
class EvaluationCounts:
    """What happened to the rows of the evaluated split."""

    rows_in_split: int
    errors_excluded: int
    unlabelled_excluded: int
    evaluated: int
    with_face: int
    faceless: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationSet:
    """Rows to predict: failed and unlabelled clips removed, faceless clips as zero rows."""

    X: np.ndarray
    y: np.ndarray
    has_face: np.ndarray
    clip_ids: np.ndarray
    counts: EvaluationCounts


def evaluation_set(descriptors: DescriptorSet, classes: tuple[str, ...]) -> EvaluationSet:
    """Select and encode the rows to evaluate; labels are indices into the model's ``classes``."""
    source = ", ".join(descriptors.sources) or "the descriptor table"
    is_error = descriptors.status == "error"
    labelled = np.array([v is not None for v in descriptors.labels], dtype=bool)
    keep = ~is_error & labelled
    if not keep.any():
        raise DatasetLayoutError(f"nothing to evaluate in the chosen split of {source}: "
                                 f"{int(is_error.sum())} failed clips, {int((~labelled).sum())} unlabelled")
    kept = descriptors.take(keep)
    X = kept.X.copy()
    X[~kept.has_face] = 0.0  # faceless clips count as zero descriptors, whatever was stored
    counts = EvaluationCounts(
        rows_in_split=len(descriptors), errors_excluded=int(is_error.sum()),
        unlabelled_excluded=int((~labelled & ~is_error).sum()), evaluated=len(kept),
        with_face=int(kept.has_face.sum()), faceless=int((~kept.has_face).sum()))
    return EvaluationSet(X=X, y=encode_labels(kept.labels, classes), has_face=kept.has_face.copy(),
                         clip_ids=kept.clip_ids, counts=counts)


def class_scores(pipeline: Pipeline, X: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-class scores, one column per ``pipeline.classes_``: SVM margins or forest probabilities."""
    if hasattr(pipeline, "decision_function"):
        scores = np.asarray(pipeline.decision_function(X), dtype=np.float64)
        if scores.ndim == 1:  # binary problems give one margin, for classes_[1]
            scores = np.column_stack([-scores, scores])
        return scores, "decision_function"
    return np.asarray(pipeline.predict_proba(X), dtype=np.float64), "probability"


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Fraction of equal entries; None for no rows (so JSON shows that nothing was measured)."""
    if len(y_true) == 0:
        return None
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def subset_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, the classification report (as a dict) and the confusion matrix of one subset."""
    labels = list(range(len(classes)))
    n = len(y_true)
    matrix = confusion_matrix(y_true, y_pred, labels=labels) if n else np.zeros((len(labels),) * 2, int)
    report = (classification_report(y_true, y_pred, labels=labels, target_names=list(classes),
                                    output_dict=True, zero_division=0) if n else None)
    return {"n": n, "correct": int(np.sum(np.asarray(y_true) == np.asarray(y_pred))),
            "accuracy": accuracy(y_true, y_pred), "classification_report": report,
            "confusion_matrix": {"classes": list(classes), "rows": "true", "columns": "predicted",
                                 "matrix": matrix.astype(int).tolist()}}


def evaluation_metrics(y_true: np.ndarray, y_pred: np.ndarray, has_face: np.ndarray,
                       classes: tuple[str, ...]) -> dict[str, Any]:
    """Both reference figures: on clips with faces, and on all clips (faceless as zero rows)."""
    has_face = np.asarray(has_face, dtype=bool)
    with_faces = subset_metrics(y_true[has_face], y_pred[has_face], classes)
    all_clips = subset_metrics(y_true, y_pred, classes)
    return {"classes": list(classes),
            "accuracy_with_faces": with_faces["accuracy"], "accuracy_all": all_clips["accuracy"],
            "with_faces": with_faces, "all_clips": all_clips}


def plot_confusion_matrices(matrices: dict[str, np.ndarray], classes: tuple[str, ...],
                            path: str | Path, title: str = "") -> None:
    """Write one panel per named matrix (rows true, columns predicted) as a PNG.

    Uses the Agg canvas directly so that plotting never depends on, or changes, pyplot's
    global backend (jobs run on headless workers).
    """
    n_panels = max(len(matrices), 1)
    size = max(4.0, 0.6 * len(classes) + 2.5)
    figure = Figure(figsize=(size * n_panels, size + 0.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, n_panels, squeeze=False)[0]
    for ax, (name, matrix) in zip(axes, matrices.items()):
        matrix = np.asarray(matrix)
        row_sums = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, row_sums, out=np.zeros(matrix.shape), where=row_sums > 0)
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
        ticks = np.arange(len(classes))
        ax.set_xticks(ticks, labels=classes, rotation=45, ha="right")
        ax.set_yticks(ticks, labels=classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name)
    if title:
        figure.suptitle(title)
    figure.savefig(path, format="png", dpi=100)
