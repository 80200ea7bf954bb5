"""Images per second of ``jobs.finetune`` in each phase, on the CPU or a GPU, at the base's full input size.

    python benchmarks/benchmark_finetune_speed.py --device cuda [--faces 2000 --batch-size 64 --precision auto]
    OMP_NUM_THREADS=2 python benchmarks/benchmark_finetune_speed.py --device cpu --faces 96 --batch-size 16

Writes ``--faces`` synthetic faces (``scripts/synthetic_faces.py``, 128x144 PNG crops, three
classes) once, then runs the job itself (one head epoch, one full epoch, validation on a tenth
of the clips, a checkpoint after each epoch) and prints the speeds it recorded in
``featurizer.json``, with the device, precision, batch size and torch version, as JSON
(``--save``). On a GPU, ``--precision auto`` is float16 mixed precision; compare with
``--precision float32``.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from synthetic_faces import face_folder, make_identities  # noqa: E402

from jobs import finetune  # noqa: E402
from jobs.job_setup import configure_logging  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotiw_finetune_speed"))
    parser.add_argument("--faces", type=int, default=600, help="about this many faces (whole identities)")
    parser.add_argument("--base", default="effnet_lite0_imagenet")
    parser.add_argument("--weights", help="the base's weights (HSEmotion bases)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    per_identity = 3 * 10  # three classes, ten faces each
    identities = max(2, round(args.faces / per_identity))
    images = args.work / f"faces_{identities}"
    if not images.exists():
        face_folder(images, make_identities(identities, 0, "sp"), 10, seed=0)
    output = args.work / "model"
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(finetune.staging_folder(output), ignore_errors=True)
    command = ["--images", str(images), "--base", args.base, "--output", str(output), "--head-epochs", "1",
               "--full-epochs", "1", "--batch-size", str(args.batch_size), "--device", args.device,
               "--precision", args.precision]
    if args.weights:
        command += ["--weights", args.weights]
    started = time.perf_counter()
    code = finetune.run(command)
    if code != 0:
        raise SystemExit(f"jobs.finetune failed with exit code {code}")
    training = json.loads((output / "featurizer.json").read_text())["training"]
    import torch

    summary = {
        "command": " ".join(["python benchmarks/benchmark_finetune_speed.py", *(argv or sys.argv[1:])]),
        "faces": training["train_images"] + training["val_images_count"], "train_images": training["train_images"],
        "input_size": json.loads((output / "featurizer.json").read_text())["input_size"],
        "base": args.base, "batch_size": args.batch_size, "device": training["device"],
        "precision": training["precision"],
        "head_images_per_second": round(training["head_images_per_second"], 1),
        "full_images_per_second": round(training["full_images_per_second"], 1),
        "job_seconds": round(time.perf_counter() - started, 1),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(), "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary, indent=2))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
