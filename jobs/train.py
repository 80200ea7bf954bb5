"""Train a clip classifier on descriptor tables and save it as a model folder.

    python -m jobs.train --features out/afew_b0 --classifier linearsvc --output models/afew_b0

Failed clips are excluded and faceless clips dropped (both counted in ``model.json``), as the
reference fitted only on clips where a face was found.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from typing import Sequence

from classifiers.descriptors import load_descriptors, select_split
from classifiers.training import (
    CLASSIFIER_KINDS,
    DEFAULT_CV_FOLDS,
    fit_classifier,
    parse_C_grid,
    resolve_hyperparameters,
    search_C,
    training_set,
)
from common.errors import EmotiwError
from jobs.job_setup import check_output_folder, configure_logging, parse_job_args

logger = logging.getLogger(__name__)


def _C_grid(text: str) -> tuple[float, ...]:
    try:
        return parse_C_grid(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__.splitlines()[0])
    parser.add_argument("--features", required=True,
                        help="descriptor table (.parquet) or a folder of them, from the extraction job")
    parser.add_argument("--output", required=True, help="model folder to write (model.skops, model.json)")
    parser.add_argument("--classifier", choices=CLASSIFIER_KINDS, default="linearsvc")
    parser.add_argument("--split", default="train", help="split to train on, or 'all' (default: train)")
    parser.add_argument("--C", type=float, default=None,
                        help="SVM regularisation (default: linearsvc 1.1 on AFEW, 0.5 on VGAF, else 1.0; svc 1.0)")
    parser.add_argument("--n-estimators", type=int, default=None, help="randomforest trees (default 1000)")
    parser.add_argument("--max-depth", type=int, default=None, help="randomforest depth (default 7)")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="SVM solver iteration cap (default: scikit-learn's)")
    parser.add_argument("--seed", type=int, default=None, help="random_state of estimator and CV folds (default 1)")
    parser.add_argument("--search-C", type=_C_grid, default=None, metavar="C1,C2,...",
                        help="pick C by stratified k-fold accuracy among these values, then refit on all rows")
    parser.add_argument("--cv-folds", type=int, default=DEFAULT_CV_FOLDS,
                        help=f"folds for --search-C (default {DEFAULT_CV_FOLDS}; fewer if a class is smaller)")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Train and save one model; returns the process exit code."""
    parser = build_parser()
    args, _ = parse_job_args(parser, argv, beam=False)
    flags = dict(C=args.C, n_estimators=args.n_estimators, max_depth=args.max_depth,
                 seed=args.seed, max_iter=args.max_iter)
    try:  # flag combinations and the output folder are checked before any data is read
        resolve_hyperparameters(args.classifier, None, **flags)
        if args.search_C and args.classifier == "randomforest":
            raise ValueError("--search-C applies to linearsvc and svc, not to randomforest")
        check_output_folder(args.output)
    except ValueError as exc:
        parser.error(str(exc))
    from classifiers.model_io import ModelProvenance, save_model  # scikit-learn and skops: seconds

    try:
        descriptors = load_descriptors(args.features)
        data = training_set(select_split(descriptors, args.split))
        params = resolve_hyperparameters(args.classifier, descriptors.dataset, **flags)
        cv = None
        if args.search_C:
            cv = search_C(data, args.classifier, params, args.search_C, folds=args.cv_folds)
            params = replace(params, C=cv.best_C)
            for c, mean, std in zip(cv.candidates, cv.mean_accuracy, cv.std_accuracy):
                print(f"C={c:g}: {cv.folds}-fold accuracy {mean:.4f} ± {std:.4f}")
            print(f"best C={cv.best_C:g}; refitting on all training rows")
        pipeline = fit_classifier(data, args.classifier, params)
        prov = descriptors.provenance
        provenance = ModelProvenance(
            featurizer=descriptors.featurizer, layout=prov.get("layout"), classes=list(data.classes),
            classifier=args.classifier, hyperparameters=params.to_dict(),
            weights_sha256=prov.get("weights_sha256"), dataset=descriptors.dataset,
            estimator_params=pipeline.named_steps["classifier"].get_params(),
            training={"split": args.split, "features": list(descriptors.sources), **data.counts.to_dict()},
            cross_validation=cv.to_dict() if cv else None, descriptor_provenance=prov)
        folder = save_model(args.output, pipeline, provenance)
    except (EmotiwError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    counts = data.counts
    print(f"trained {args.classifier} ({params.to_dict()}) on {counts.rows_used} clips of split "
          f"{args.split!r}: {counts.faceless_dropped} faceless dropped, {counts.errors_excluded} failed "
          f"excluded, {counts.unlabelled_excluded} unlabelled excluded; per class {counts.per_class}")
    print(f"model written to {folder}")
    return 0


if __name__ == "__main__":
    configure_logging()
    sys.exit(run())
