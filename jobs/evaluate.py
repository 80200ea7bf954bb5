"""Evaluate a trained model on one split of descriptor tables.

    python -m jobs.evaluate --model models/afew_b0 --features out/afew_b0 --split val --output reports/afew_b0

Writes ``metrics.json`` (accuracy on clips with faces and on all clips, counts, per-class
report, confusion matrices), ``confusion_matrix.png`` and ``predictions.parquet``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from classifiers.descriptors import check_same_identity, load_descriptors, select_split, warn_if_runtimes_differ
from common.errors import EmotiwError, OutputPathError
from jobs.job_setup import check_output_folder, configure_logging, parse_job_args

if TYPE_CHECKING:
    from classifiers.evaluation import EvaluationSet
    from classifiers.model_io import TrainedModel

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion_matrix.png"
PREDICTIONS_FILE = "predictions.parquet"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder written by jobs.train")
    parser.add_argument("--features", required=True, help="descriptor table (.parquet) or a folder of them")
    parser.add_argument("--split", default="val", help="split to evaluate, or 'all' (default: val)")
    parser.add_argument("--output", required=True, help="report folder to write")
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    """Evaluate one model on one split and write the report; returns the process exit code."""
    parser = build_parser()
    args, _ = parse_job_args(parser, argv, beam=False)
    try:
        check_output_folder(args.output)
    except OutputPathError as exc:
        parser.error(str(exc))
    # scikit-learn, skops and matplotlib take seconds to import: only once the command line is read.
    from classifiers.evaluation import class_scores, evaluation_metrics, evaluation_set
    from classifiers.model_io import load_model

    try:
        model = load_model(args.model)
        descriptors = load_descriptors(args.features)
        check_same_identity(model.provenance.identity(), descriptors.provenance,
                            expected_what=f"model {args.model}", found_what=f"descriptors {args.features}",
                            hint="evaluate on descriptors made by the model's featurizer, or retrain the model")
        warn_if_runtimes_differ(model.provenance.descriptor_provenance, descriptors.provenance,
                                trained_what=f"model {args.model}", found_what=f"descriptors {args.features}")
        rows = evaluation_set(select_split(descriptors, args.split), tuple(model.provenance.classes))
        predicted = model.pipeline.predict(rows.X)
        scores, score_kind = class_scores(model.pipeline, rows.X)
        metrics = evaluation_metrics(rows.y, predicted, rows.has_face, tuple(model.provenance.classes))
        report = {"model": str(args.model), "features": list(descriptors.sources), "split": args.split,
                  "classifier": model.provenance.classifier, "featurizer": model.provenance.featurizer,
                  "score_kind": score_kind, "counts": rows.counts.to_dict(), **metrics}
        write_report(Path(args.output), report, rows, predicted, scores, model)
    except (EmotiwError, OSError) as exc:
        logger.error("%s", exc)
        return 1
    print(summary(report))
    print(f"report written to {args.output}")
    return 0


def write_report(folder: Path, report: dict[str, Any], rows: EvaluationSet, predicted: np.ndarray,
                 scores: np.ndarray, model: TrainedModel) -> None:
    """metrics.json, the confusion-matrix PNG and per-clip predictions, in ``folder``."""
    from classifiers.evaluation import plot_confusion_matrices

    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).write_text(json.dumps(report, indent=2) + "\n")
    classes = tuple(model.provenance.classes)
    plot_confusion_matrices(
        {f"clips with faces ({_percent(report['accuracy_with_faces'])})":
             np.array(report["with_faces"]["confusion_matrix"]["matrix"]),
         f"all clips ({_percent(report['accuracy_all'])})":
             np.array(report["all_clips"]["confusion_matrix"]["matrix"])},
        classes, folder / CONFUSION_FILE,
        title=f"{model.provenance.classifier} on {model.provenance.featurizer}, split {report['split']}")
    names = np.array(classes, dtype=object)
    columns: dict[str, Any] = {
        "clip_id": pa.array(rows.clip_ids.tolist(), pa.string()),
        "label": pa.array(names[rows.y].tolist(), pa.string()),
        "predicted_label": pa.array(names[predicted].tolist(), pa.string()),
        "has_face": pa.array(rows.has_face.tolist(), pa.bool_()),
    }
    for column, class_index in enumerate(model.pipeline.classes_):
        columns[f"score_{classes[class_index]}"] = pa.array(scores[:, column], pa.float64())
    pq.write_table(pa.table(columns), folder / PREDICTIONS_FILE)


def summary(report: dict[str, Any]) -> str:
    """Human-readable lines with both accuracy figures and the row counts behind them."""
    counts, faces, everything = report["counts"], report["with_faces"], report["all_clips"]
    return "\n".join([
        f"{report['classifier']} on {report['featurizer']}, split {report['split']!r}",
        f"accuracy on clips with faces: {_percent(faces['accuracy'])} ({faces['correct']}/{faces['n']})",
        f"accuracy on all clips:        {_percent(everything['accuracy'])} ({everything['correct']}/{everything['n']}, "
        f"{counts['faceless']} faceless as zero rows)",
        f"excluded: {counts['errors_excluded']} failed, {counts['unlabelled_excluded']} unlabelled",
    ])


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


if __name__ == "__main__":
    configure_logging()
    sys.exit(run())
