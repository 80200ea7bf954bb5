"""Classifier pipelines (L2 normalisation, then an estimator), training-row selection and C search.

The reference L2-normalised each clip descriptor and then fitted a LinearSVC, an RBF SVC or a
RandomForest. Here the normalisation is the first step of a scikit-learn ``Pipeline``, so the
saved model applies it by itself and nobody can forget it at prediction time.
scikit-learn is imported by the functions that fit: the training job's ``--help`` reads only the
settings here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from classifiers.descriptors import DescriptorSet, encode_labels
from common.errors import DatasetLayoutError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

ClassifierKind = Literal["linearsvc", "randomforest", "svc"]
CLASSIFIER_KINDS: tuple[str, ...] = get_args(ClassifierKind)

# C of the reference LinearSVC runs per dataset (AFEW 1.1, VGAF 0.5); 1.0 elsewhere.
LINEARSVC_DEFAULT_C = {"afew": 1.1, "vgaf": 0.5}
# The reference seeded numpy with 1 before its RandomForest; we pass the seed explicitly.
DEFAULT_SEED = 1
DEFAULT_N_ESTIMATORS = 1000
DEFAULT_MAX_DEPTH = 7
DEFAULT_CV_FOLDS = 5


@dataclass(frozen=True)
class HyperParameters:
    """Everything that, together with the data, decides the fitted model."""

    C: float | None = None
    """Regularisation of the SVMs; None for the forest."""
    n_estimators: int | None = None
    max_depth: int | None = None
    seed: int = DEFAULT_SEED
    max_iter: int | None = None
    """Solver iteration cap; None keeps scikit-learn's default for the estimator."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_C(kind: ClassifierKind, dataset: str | None) -> float:
    """The reference's C: per dataset for LinearSVC, 1.0 for the RBF SVC."""
    if kind == "linearsvc":
        return LINEARSVC_DEFAULT_C.get(dataset or "", 1.0)
    return 1.0


def resolve_hyperparameters(kind: ClassifierKind, dataset: str | None, *, C: float | None = None,
                            n_estimators: int | None = None, max_depth: int | None = None,
                            seed: int | None = None, max_iter: int | None = None) -> HyperParameters:
    """Fill what the user did not set with the defaults of ``kind``, dropping what it ignores."""
    seed = DEFAULT_SEED if seed is None else seed
    if kind == "randomforest":
        if C is not None or max_iter is not None:
            raise ValueError("--C and --max-iter apply to linearsvc and svc, not to randomforest")
        return HyperParameters(n_estimators=n_estimators or DEFAULT_N_ESTIMATORS,
                               max_depth=DEFAULT_MAX_DEPTH if max_depth is None else max_depth, seed=seed)
    if n_estimators is not None or max_depth is not None:
        raise ValueError(f"--n-estimators and --max-depth apply to randomforest, not to {kind}")
    return HyperParameters(C=default_C(kind, dataset) if C is None else C, seed=seed, max_iter=max_iter)


def build_pipeline(kind: ClassifierKind, params: HyperParameters) -> Pipeline:
    """An unfitted ``Normalizer(l2) -> estimator`` pipeline with a fixed seed."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import Normalizer
    from sklearn.svm import SVC, LinearSVC

    if kind == "linearsvc":
        estimator: Any = LinearSVC(C=params.C, random_state=params.seed,
                                   **({"max_iter": params.max_iter} if params.max_iter else {}))
    elif kind == "svc":
        estimator = SVC(kernel="rbf", C=params.C, gamma="scale", random_state=params.seed,
                        **({"max_iter": params.max_iter} if params.max_iter else {}))
    elif kind == "randomforest":
        estimator = RandomForestClassifier(n_estimators=params.n_estimators, max_depth=params.max_depth,
                                           n_jobs=-1, random_state=params.seed)
    else:
        raise ValueError(f"unknown classifier {kind!r}; expected one of {CLASSIFIER_KINDS}")
    # Row-wise and stateless: all-zero (faceless) rows stay zero, as in the reference.
    return Pipeline([("l2", Normalizer(norm="l2")), ("classifier", estimator)])


@dataclass(frozen=True)
class TrainingCounts:
    """What happened to the rows of the chosen split on their way into the fit."""

    rows_in_split: int
    errors_excluded: int
    unlabelled_excluded: int
    faceless_dropped: int
    rows_used: int
    per_class: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingSet:
    """Descriptors and label indices (in ``classes`` order) ready for ``fit``."""

    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    counts: TrainingCounts


def training_set(descriptors: DescriptorSet) -> TrainingSet:
    """Keep labelled clips with faces; failed clips and faceless clips are counted and left out.

    Faceless clips carry an all-zero descriptor that says nothing about their class, so the
    reference fitted only on clips with faces; we do the same.
    """
    source = ", ".join(descriptors.sources) or "the descriptor table"
    is_error = descriptors.status == "error"
    labelled = np.array([v is not None for v in descriptors.labels], dtype=bool)
    if not labelled[~is_error].any():
        raise DatasetLayoutError(f"labels missing: no clip in the chosen split of {source} has a label "
                                 "(an unlabelled folder cannot be trained on; pick a labelled split)")
    faceless = ~descriptors.has_face & ~is_error & labelled
    used = ~is_error & labelled & descriptors.has_face
    if not used.any():
        raise DatasetLayoutError(f"no training rows: every labelled clip in the chosen split of {source} "
                                 "failed or has no face")
    classes = descriptors.classes
    y = encode_labels(descriptors.labels[used], classes)
    present = np.unique(y)
    if len(present) < 2:
        raise DatasetLayoutError(f"only one class ({classes[present[0]]!r}) among the {int(used.sum())} "
                                 f"training clips of {source}; a classifier needs at least two")
    per_class = np.bincount(y, minlength=len(classes))
    counts = TrainingCounts(
        rows_in_split=len(descriptors), errors_excluded=int(is_error.sum()),
        unlabelled_excluded=int((~labelled & ~is_error).sum()), faceless_dropped=int(faceless.sum()),
        rows_used=int(used.sum()), per_class={c: int(n) for c, n in zip(classes, per_class)})
    return TrainingSet(X=descriptors.X[used], y=y, classes=classes, counts=counts)


def fit_classifier(data: TrainingSet, kind: ClassifierKind, params: HyperParameters) -> Pipeline:
    """Fit the pipeline for ``kind`` on the training set."""
    return build_pipeline(kind, params).fit(data.X, data.y)


@dataclass(frozen=True)
class CSearchResult:
    """Cross-validated accuracy of each candidate C and the one chosen."""

    folds: int
    candidates: tuple[float, ...]
    mean_accuracy: tuple[float, ...]
    std_accuracy: tuple[float, ...]
    best_C: float

    def to_dict(self) -> dict[str, Any]:
        return {"folds": self.folds, "best_C": self.best_C, "scoring": "accuracy",
                "results": [{"C": c, "mean_accuracy": m, "std_accuracy": s}
                            for c, m, s in zip(self.candidates, self.mean_accuracy, self.std_accuracy)]}


def parse_C_grid(text: str) -> tuple[float, ...]:
    """``"0.01,0.1,1"`` -> sorted unique positive floats; a clear error otherwise."""
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise ValueError(f"--search-C expects comma-separated numbers, got {text!r}") from exc
    if not values or values[0] <= 0:
        raise ValueError(f"--search-C needs at least one positive C, got {text!r}")
    return tuple(values)


def search_C(data: TrainingSet, kind: ClassifierKind, params: HyperParameters,
             candidates: tuple[float, ...], folds: int = DEFAULT_CV_FOLDS) -> CSearchResult:
    """Stratified k-fold accuracy for each C; ties go to the smaller (more regularised) C.

    The number of folds shrinks to the size of the smallest class, which must be at least 2.
    """
    if kind == "randomforest":
        raise ValueError("--search-C applies to linearsvc and svc, not to randomforest")
    per_class = np.bincount(data.y)
    smallest = int(per_class[per_class > 0].min())
    n_splits = min(folds, smallest)
    if n_splits < 2:
        raise DatasetLayoutError(f"cross-validation needs at least 2 clips per class; the smallest "
                                 f"class has {smallest} (drop --search-C or add clips)")
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=params.seed)
    means, stds = [], []
    for C in candidates:
        pipeline = build_pipeline(kind, HyperParameters(**{**params.to_dict(), "C": C}))
        scores = cross_val_score(pipeline, data.X, data.y, cv=splitter, scoring="accuracy")
        means.append(float(scores.mean()))
        stds.append(float(scores.std()))
    best = int(np.argmax(means))  # first maximum, and candidates are sorted ascending
    return CSearchResult(folds=n_splits, candidates=tuple(candidates), mean_accuracy=tuple(means),
                         std_accuracy=tuple(stds), best_C=float(candidates[best]))
