"""The whole fine-tuning chain on a synthetic expression task: faces, finetune, extract, train, evaluate.

    python benchmarks/benchmark_finetune.py [--work /tmp/ft_bench] [--train-identities 8 --val-identities 4]

Makes AFEW-layout clips with ``scripts/synthetic_faces.py`` (classes Happy, Neutral and
Surprise as geometric changes of the mouth and eyes; pseudo-identities from scikit-image's
public-domain faces; ``Val_AFEW`` holds identities never seen in training), then runs the
README's five commands through the jobs' own ``run`` functions:

1. ``jobs.faces`` on ``Train_AFEW``;
2. ``jobs.finetune`` from ``effnet_lite0_imagenet`` (clip-grouped validation inside train);
3. ``jobs.extract`` of train and val with the base and with the fine-tuned folder;
4. ``jobs.train`` (LinearSVC) on train for each;
5. ``jobs.evaluate`` on val (held-out identities) for each.

Prints the clip-classifier accuracy of base and fine-tuned featurizer on the held-out
identities, and the fine-tuning speed (images per second, head phase and full phase), and
writes them as JSON (``--save``, default ``benchmarks/results/finetune.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from synthetic_faces import CLASSES, afew_videos, make_identities  # noqa: E402

from featurizers.embedding.registry import DEFAULT_FEATURIZER  # noqa: E402
from jobs import evaluate, extract, faces, finetune, train  # noqa: E402
from jobs.job_setup import configure_logging  # noqa: E402


def _step(name: str, code: int) -> None:
    if code not in (0,):
        raise SystemExit(f"{name} failed with exit code {code}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotiw_finetune_bench"))
    parser.add_argument("--train-identities", type=int, default=8)
    parser.add_argument("--val-identities", type=int, default=4)
    parser.add_argument("--clips-per-class", type=int, default=1)
    parser.add_argument("--frames", type=int, default=12, help="frames per clip (25 fps)")
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--full-epochs", type=int, default=6)
    parser.add_argument("--full-lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--save", type=Path, default=ROOT / "benchmarks" / "results" / "finetune.json")
    args = parser.parse_args(argv)
    configure_logging()
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    data = work / "afew"
    started = time.perf_counter()
    afew_videos(data, make_identities(args.train_identities, 0, "tr"), make_identities(args.val_identities, 1, "va"),
                args.clips_per_class, args.frames)
    timings = {"make_clips_s": time.perf_counter() - started}

    t = time.perf_counter()
    _step("jobs.faces", faces.run(["--dataset", "afew", "--data-root", str(data), "--split", "train",
                                   "--output", str(work / "faces")]))
    timings["faces_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _step("jobs.finetune", finetune.run(["--images", str(work / "faces"), "--base", DEFAULT_FEATURIZER,
                                         "--output", str(work / "ft"), "--head-epochs", str(args.head_epochs),
                                         "--full-epochs", str(args.full_epochs), "--full-lr", str(args.full_lr),
                                         "--batch-size", str(args.batch_size)]))
    timings["finetune_s"] = time.perf_counter() - t
    results = {}
    for label, featurizer in (("base", DEFAULT_FEATURIZER), ("finetuned", str(work / "ft"))):
        out, model, report = work / f"out_{label}", work / f"model_{label}", work / f"report_{label}"
        t = time.perf_counter()
        _step("jobs.extract", extract.run(["--dataset", "afew", "--data-root", str(data), "--featurizer", featurizer,
                                           "--output", str(out)]))
        timings[f"extract_{label}_s"] = time.perf_counter() - t
        _step("jobs.train", train.run(["--features", str(out), "--output", str(model)]))
        _step("jobs.evaluate", evaluate.run(["--model", str(model), "--features", str(out), "--split", "val",
                                             "--output", str(report)]))
        metrics = json.loads((report / "metrics.json").read_text())
        results[label] = {"accuracy_all": metrics["accuracy_all"], "accuracy_with_faces": metrics["accuracy_with_faces"]}
    description = json.loads((work / "ft" / "featurizer.json").read_text())
    training = description["training"]
    n_val_clips = len(CLASSES) * args.val_identities * args.clips_per_class
    summary = {
        "task": {"classes": list(CLASSES), "train_identities": args.train_identities,
                 "val_identities": args.val_identities, "clips_per_class": args.clips_per_class,
                 "frames_per_clip": args.frames, "frame_size": "320x256", "fps": 25, "val_clips": n_val_clips},
        "clip_accuracy_held_out_identities": results,
        "finetune": {"train_images": training["train_images"], "val_images": training["val_images_count"],
                     "best_epoch": training["best_epoch"], "best_val_accuracy": training["best_val_accuracy"],
                     "head_images_per_second": training["head_images_per_second"],
                     "full_images_per_second": training["full_images_per_second"],
                     "head_epochs": args.head_epochs, "full_epochs": args.full_epochs, "full_lr": args.full_lr,
                     "batch_size": args.batch_size},
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform(),
                    "device": training["device"], "load_average_1min": os.getloadavg()[0]},
    }
    print(f"\nclip classifier (LinearSVC) on {n_val_clips} clips of {args.val_identities} held-out identities:")
    for label, figures in results.items():
        print(f"  {label:10s} accuracy {figures['accuracy_all']:.3f}")
    print(f"fine-tuning on {training['train_images']} images: head phase "
          f"{training['head_images_per_second'] or 0:.1f} images/s, full phase {training['full_images_per_second'] or 0:.1f} "
          f"images/s ({training['device']}); timings {summary['timings_s']}")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
