"""What each part of the fine-tuning recipe is worth, on the synthetic task with held-out identities.

    OMP_NUM_THREADS=1 python benchmarks/benchmark_finetune_recipe.py [--variants baseline,augment,...]
        [--input-size 64 --train-identities 10 --test-identities 6 --per-class 6] [--save FILE]

Faces come from ``scripts/synthetic_faces.py`` (classes Happy, Neutral, Surprise as geometric
changes of mouth and eyes on pseudo-identities, random pose); the test faces show identities
never seen in training. Each variant fine-tunes the EfficientNet-Lite0 ImageNet base with
``featurizers.finetuning.training.finetune`` (the code path of ``jobs.finetune``) at a reduced
input size, validating on clips (identity x class) held out of the training identities, and
keeping the best validation epoch as the job does. After every epoch it also scores the test
identities, so the learning curve shows what happens at the switch from the head phase to
the full phase. Reported per variant:

- ``test_accuracy_head``: the fine-tuned network's own class scores on the test identities;
- ``test_accuracy_centroid`` and ``test_accuracy_svc``: nearest class centroid and LinearSVC on
  L2-normalised features (the pipeline's descriptors are built from these features), fitted on
  the training faces; the base's figures come first, as ``base``;
- ``switch``: validation and test accuracy and training loss at the last head epoch and the
  first full epoch; ``switch_shock``: loss and accuracy on the training faces of the model that
  ends the head phase, with batch norm as the head phase used it and as the first full-phase
  step uses it (shuffled batches of the training batch size);
- seconds and images per second per epoch of each phase.

This replaces the learning check that ran for minutes in the test suite
(``tests/featurizers/finetuning/test_finetune_learns.py`` keeps a short one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from synthetic_faces import CLASSES, face_folder, make_identities  # noqa: E402

from featurizers.embedding.embed import load_network, preprocess_faces  # noqa: E402
from featurizers.embedding.registry import get_featurizer_spec  # noqa: E402
from featurizers.finetuning.image_folders import class_weights, list_image_folder, load_rgb, split_by_group  # noqa: E402
from featurizers.finetuning.settings import FinetuneSettings  # noqa: E402
from featurizers.finetuning.training import EpochRecord, attach_new_head, choose_precision, finetune  # noqa: E402
from jobs.job_setup import configure_logging  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    # The recipe before issue 18: no augmentation, batch norm as in the paper, no warm-up.
    "baseline": dict(augment=False, batch_norm="paper", warmup_epochs=0.0),
    "augment": dict(augment=True, batch_norm="paper", warmup_epochs=0.0),
    "warmup": dict(augment=False, batch_norm="paper", warmup_epochs=1.0),
    "frozen_bn": dict(augment=False, batch_norm="frozen", warmup_epochs=1.0),
    "batch_bn": dict(augment=False, batch_norm="batch", warmup_epochs=0.0),
    "batch_bn_warmup": dict(augment=False, batch_norm="batch", warmup_epochs=1.0),
    # Today's defaults: augmentation and per-batch statistics in both phases.
    "augment_batch_bn": dict(augment=True, batch_norm="batch", warmup_epochs=0.0),
    "augment_batch_bn_warmup": dict(augment=True, batch_norm="batch", warmup_epochs=1.0),
    "augment_batch_bn_mixup": dict(augment=True, batch_norm="batch", warmup_epochs=0.0, mixup=0.2),
}


def _faces(images: list, spec: Any) -> torch.Tensor:
    return torch.from_numpy(preprocess_faces([load_rgb(i.path) for i in images], spec))


def _scores(model: Any, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised pooled features, class scores) in eval mode."""
    from sklearn.preprocessing import normalize

    model.eval()
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(batch), pre_logits=True)
        logits = model.get_classifier()(pooled)
    return normalize(pooled.numpy()), logits.numpy()


def _probe_accuracies(features_train: np.ndarray, y_train: np.ndarray, features_test: np.ndarray,
                      y_test: np.ndarray) -> dict[str, float]:
    from sklearn.neighbors import NearestCentroid
    from sklearn.svm import LinearSVC

    centroid = NearestCentroid().fit(features_train, y_train).score(features_test, y_test)
    svc = LinearSVC(C=1.0, max_iter=5000).fit(features_train, y_train).score(features_test, y_test)
    return {"test_accuracy_centroid": round(float(centroid), 4), "test_accuracy_svc": round(float(svc), 4)}


def _switch_shock(model: Any, x: torch.Tensor, y: np.ndarray, settings: FinetuneSettings) -> dict[str, float]:
    """Loss and accuracy on the training faces of the model that ends the head phase, as the head
    phase evaluates it (batch norm's running statistics) and as the first full-phase step sees it
    (each batch normalised by its own statistics, or still the running ones when frozen)."""
    from featurizers.finetuning.sam import frozen_batch_norm_statistics

    order = torch.as_tensor(np.random.default_rng(0).permutation(len(x)))  # mixed batches, as in training
    x, labels = x[order], torch.as_tensor(y)[order]
    figures = {}
    for name, per_batch in (("running_statistics", False), ("full_phase", settings.batch_norm != "frozen")):
        model.train(per_batch)
        losses, correct = [], 0
        with torch.no_grad(), frozen_batch_norm_statistics(model):
            for start in range(0, len(x), settings.batch_size):
                logits = model(x[start : start + settings.batch_size])
                target = labels[start : start + settings.batch_size]
                losses.append(float(torch.nn.functional.cross_entropy(logits, target, reduction="sum")))
                correct += int((logits.argmax(1) == target).sum())
        figures[f"loss_{name}"] = round(sum(losses) / len(x), 4)
        figures[f"accuracy_{name}"] = round(correct / len(x), 4)
    model.eval()
    return figures


def run_variant(name: str, overrides: dict[str, Any], spec: Any, data: dict[str, Any], args: argparse.Namespace,
                x_train: torch.Tensor, x_test: torch.Tensor) -> dict[str, Any]:
    settings = FinetuneSettings(head_epochs=args.head_epochs, full_epochs=args.full_epochs, head_lr=args.head_lr,
                                full_lr=args.full_lr, batch_size=args.batch_size, seed=args.seed, **overrides)
    model = attach_new_head(load_network(spec), len(CLASSES), settings.seed)
    test_curve: list[float] = []

    shock: dict[str, float] = {}

    def on_epoch(record: EpochRecord) -> None:
        _, logits = _scores(model, x_test)
        test_curve.append(round(float((logits.argmax(1) == data["y_test"]).mean()), 4))
        if record.epoch == settings.head_epochs and settings.full_epochs:
            shock.update(_switch_shock(model, x_train, data["y_train"], settings))

    started = time.perf_counter()
    result = finetune(model, spec, data["fit"], data["val"], data["weights"], settings, torch.device("cpu"),
                      precision=choose_precision("float32", torch.device("cpu")), on_epoch=on_epoch)
    seconds = time.perf_counter() - started
    features_train, _ = _scores(result.model, x_train)
    features_test, logits = _scores(result.model, x_test)
    history = result.history
    last_head = args.head_epochs - 1
    summary = {
        "settings": overrides,
        "best_epoch": result.best_epoch,
        "test_accuracy_head": round(float((logits.argmax(1) == data["y_test"]).mean()), 4),
        **_probe_accuracies(features_train, data["y_train"], features_test, data["y_test"]),
        "curve": {"val_accuracy": [round(r.val_accuracy, 4) for r in history], "test_accuracy": test_curve,
                  "train_loss": [round(r.train_loss, 4) for r in history],
                  "train_accuracy": [round(r.train_accuracy, 4) for r in history]},
        "switch_shock": shock,
        "switch": None if not 0 <= last_head < len(history) - 1 else {
            "val_accuracy": [round(history[last_head].val_accuracy, 4), round(history[last_head + 1].val_accuracy, 4)],
            "test_accuracy": test_curve[last_head : last_head + 2],
            "train_loss": [round(history[last_head].train_loss, 4), round(history[last_head + 1].train_loss, 4)]},
        "seconds_per_epoch": {phase: round(float(np.mean([r.seconds for r in history if r.phase == phase])), 2)
                              for phase in ("head", "full") if any(r.phase == phase for r in history)},
        "images_per_second": {phase: round(result.phase_speed(phase) or 0.0, 2) for phase in ("head", "full")},
        "seconds": round(seconds, 1),
    }
    print(f"{name:22s} head {summary['test_accuracy_head']:.3f}  centroid {summary['test_accuracy_centroid']:.3f}  "
          f"svc {summary['test_accuracy_svc']:.3f}  best epoch {result.best_epoch}  switch {summary['switch']}  "
          f"test curve {test_curve}  {summary['seconds_per_epoch']} s/epoch", flush=True)
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotiw_finetune_recipe"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--input-size", type=int, default=64, help="the base's input size replaced by this")
    parser.add_argument("--train-identities", type=int, default=10)
    parser.add_argument("--test-identities", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=6, help="faces per identity and class")
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--full-epochs", type=int, default=6)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--full-lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the faces stay the same)")
    parser.add_argument("--save", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_recipe.json")
    args = parser.parse_args(argv)
    configure_logging()
    # Lite0's pooled features have dead (all-zero) channels at small inputs; NearestCentroid warns of them.
    warnings.filterwarnings("ignore", module="sklearn.neighbors")
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")

    started = time.perf_counter()
    train_root, test_root = args.work / f"train_{args.train_identities}x{args.per_class}", \
        args.work / f"test_{args.test_identities}x{args.per_class}"
    if not train_root.exists():
        face_folder(train_root, make_identities(args.train_identities, 0, "tr"), args.per_class, seed=0)
    if not test_root.exists():
        face_folder(test_root, make_identities(args.test_identities, 1, "te"), args.per_class, seed=1)
    train = list_image_folder(train_root).images
    test = list_image_folder(test_root).images
    fit, val = split_by_group(train, 0.15, seed=0)
    data = {"fit": fit, "val": val, "weights": class_weights([i.label for i in fit], len(CLASSES)),
            "y_train": np.array([i.label for i in train]), "y_test": np.array([i.label for i in test])}
    spec = replace(get_featurizer_spec("effnet_lite0_imagenet"), input_size=args.input_size)
    x_train, x_test = _faces(train, spec), _faces(test, spec)
    base_train, _ = _scores(load_network(spec), x_train)
    base_test, _ = _scores(load_network(spec), x_test)
    results: dict[str, Any] = {"base": _probe_accuracies(base_train, data["y_train"], base_test, data["y_test"])}
    print(f"{'base':22s} centroid {results['base']['test_accuracy_centroid']:.3f}  "
          f"svc {results['base']['test_accuracy_svc']:.3f}  (faces ready in {time.perf_counter() - started:.0f} s)",
          flush=True)
    summary = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/benchmark_finetune_recipe.py " + " ".join(argv or sys.argv[1:]),
        "task": {"classes": list(CLASSES), "face_size": "128x144", "input_size": args.input_size,
                 "train_identities": args.train_identities, "test_identities": args.test_identities,
                 "per_class": args.per_class, "fit_faces": len(fit), "val_faces": len(val), "test_faces": len(test)},
        "recipe": {"head_epochs": args.head_epochs, "full_epochs": args.full_epochs, "head_lr": args.head_lr,
                   "full_lr": args.full_lr, "batch_size": args.batch_size, "seed": args.seed},
        "results": results,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "platform": platform.platform()},
    }
    for name in names:
        results[name] = run_variant(name, VARIANTS[name], spec, data, args, x_train, x_test)
        results[name]["load_average_1min"] = round(os.getloadavg()[0], 2)
        if args.save:  # after every variant, so that a stopped run keeps what it measured
            args.save.parent.mkdir(parents=True, exist_ok=True)
            args.save.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
