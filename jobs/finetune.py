"""Fine-tune a featurizer on a labelled face-image folder into a new featurizer folder.

    python -m jobs.finetune --images faces/afew_train --base effnet_lite0_imagenet --output models/ft_afew
    python -m jobs.extract --dataset afew --data-root /data/AFEW --featurizer models/ft_afew

``--images`` is an image folder ``<Class>/<image>`` (as ``jobs.faces`` writes it, with its
``manifest.parquet``, or any ImageFolder-style set such as AffectNet). ``--base`` is a registry
featurizer (an HSEmotion one with ``--weights``) or an earlier fine-tuned folder. The output
folder holds ``featurizer.json``, ``weights.safetensors``, ``history.json`` and
``learning_curve.png``, and works as ``--featurizer`` wherever a registry name does.

While it runs, ``<output>.incomplete/`` holds a checkpoint after every epoch (and the history
so far); the same command with ``--resume`` continues a run that was killed.
Exit codes: 0 done, 2 usage or data errors (nothing written).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from common.errors import EmotiwError
from featurizers.embedding.registry import DEFAULT_FEATURIZER, FEATURIZERS, get_featurizer_spec, resolve_weights_path
from featurizers.finetuning.settings import BATCH_NORM_MODES, PRECISIONS, SETTING_FLAGS, FinetuneSettings
from jobs.job_setup import check_output_folder, configure_logging, parse_job_args

if TYPE_CHECKING:  # torch, timm and matplotlib load once a run starts, not for --help
    from featurizers.embedding.finetuned import FinetunedDescription
    from featurizers.finetuning.image_folders import LabelledImage
    from featurizers.finetuning.training import FinetuneResult

log = logging.getLogger("jobs.finetune")
HISTORY_FILE = "history.json"
CURVE_FILE = "learning_curve.png"


def build_parser() -> argparse.ArgumentParser:
    defaults = FinetuneSettings()
    parser = argparse.ArgumentParser(prog="python -m jobs.finetune", description=__doc__.split("\n")[0])
    parser.add_argument("--images", required=True, type=Path, help="image folder <Class>/<image> (e.g. from jobs.faces)")
    parser.add_argument("--base", default=DEFAULT_FEATURIZER, metavar="NAME_OR_FOLDER",
                        help=f"featurizer to start from: {', '.join(sorted(FEATURIZERS))}, or a fine-tuned folder")
    parser.add_argument("--weights", help="the base's weights file or folder (HSEmotion checkpoints)")
    parser.add_argument("--output", required=True, help="featurizer folder to write (local)")
    val = parser.add_mutually_exclusive_group()
    val.add_argument("--val-fraction", type=float, default=0.1,
                     help="share of the images held out for validation, whole clips at a time (default 0.1)")
    val.add_argument("--val-images", type=Path, help="a separate validation image folder with the same classes")
    parser.add_argument("--head-epochs", type=int, default=defaults.head_epochs)
    parser.add_argument("--head-lr", type=float, default=defaults.head_lr)
    parser.add_argument("--full-epochs", type=int, default=defaults.full_epochs)
    parser.add_argument("--full-lr", type=float, default=defaults.full_lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--rho", type=float, default=defaults.rho, help="SAM neighbourhood radius")
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    a = defaults.augmentation
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=defaults.augment,
                        help=f"vary the training faces: flip, zoom +-{a.max_scale * 100:g} %%, shift +-{a.max_shift * 100:g} "
                             f"%%, rotation +-{a.max_rotation:g} degrees, brightness and contrast "
                             f"+-{a.max_brightness * 100:g} %% (default on)")
    parser.add_argument("--mixup", type=float, default=defaults.mixup, metavar="ALPHA",
                        help="mixup of faces and labels, Beta(ALPHA, ALPHA) weights, e.g. 0.2 (default 0: off)")
    parser.add_argument("--cutmix", type=float, default=defaults.cutmix, metavar="ALPHA",
                        help="cutmix (a box of another face pasted in), e.g. 1.0 (default 0: off)")
    parser.add_argument("--batch-norm", choices=BATCH_NORM_MODES, default=defaults.batch_norm,
                        help="batch-norm statistics: each batch's own in both phases, running ones measured on the "
                             "faces first (batch); the base's in the head phase, each batch's in the full phase "
                             f"(paper); the base's throughout (frozen). Default {defaults.batch_norm}")
    parser.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs,
                        help="full phase: the learning rate rises linearly from 0 over these epochs "
                             f"(default {defaults.warmup_epochs:g}: off)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: float16 mixed precision on a GPU, float32 on the CPU")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in <output>.incomplete/ (the same command otherwise)")
    return parser


def settings_from_args(args: argparse.Namespace) -> FinetuneSettings:
    """The recipe of the command line; ValueError names the flag of a bad value."""
    return FinetuneSettings(
        head_epochs=args.head_epochs, head_lr=args.head_lr, full_epochs=args.full_epochs, full_lr=args.full_lr,
        batch_size=args.batch_size, rho=args.rho, label_smoothing=args.label_smoothing, augment=args.augment,
        mixup=args.mixup, cutmix=args.cutmix, batch_norm=args.batch_norm,
        warmup_epochs=args.warmup_epochs, seed=args.seed)


def staging_folder(output: Path) -> Path:
    """Where a run keeps its checkpoint and builds the folder: fixed, so that ``--resume`` finds it."""
    return output.with_name(f"{output.name}.incomplete")


def _list_digest(images: list[LabelledImage]) -> str:
    lines = "\n".join(f"{i.path}\t{i.label}" for i in images)
    return hashlib.sha256(lines.encode()).hexdigest()


def _clip_map(images: Path) -> dict[str, str] | None:
    """Image path (relative to the folder) -> clip id, from ``jobs.faces``' manifest when there is one."""
    from pipelines.graph.face_export import read_manifest

    manifest = read_manifest(images)
    if manifest is None:
        return None
    rows = manifest.filter(manifest.column("status").to_numpy(zero_copy_only=False) == "ok")
    return dict(zip(rows.column("path").to_pylist(), rows.column("clip_id").to_pylist()))


def write_learning_curve(result: FinetuneResult, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(figure)
    epochs = [r.epoch for r in result.history]
    switch = next((r.epoch - 0.5 for r in result.history if r.phase == "full"), None)
    for axis, (what, train_key, val_key) in zip(
            figure.subplots(1, 2), [("loss", "train_loss", "val_loss"), ("accuracy", "train_accuracy", "val_accuracy")]):
        axis.plot(epochs, [getattr(r, train_key) for r in result.history], "o-", label="train")
        axis.plot(epochs, [getattr(r, val_key) for r in result.history], "s-", label="validation")
        if switch is not None:
            axis.axvline(switch, color="grey", linestyle=":", label="head -> full")
        axis.axvline(result.best_epoch, color="green", alpha=0.3, label="kept")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(what)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def run(argv: Sequence[str] | None = None) -> int:
    """Fine-tune and write the featurizer folder; returns the exit code."""
    args, _ = parse_job_args(build_parser(), argv, beam=False)
    try:  # the flags first, before anything heavy loads
        settings = settings_from_args(args)
        if "://" in str(args.output):
            raise ValueError(f"--output {args.output}: fine-tuning writes a local folder; copy it to a bucket after")
        check_output_folder(args.output, replaced_whole=True)  # staged beside it, then swapped in
        args.output = Path(args.output)  # a Path only now: Path("s3://b/x") would be the folder "s3:/b/x"
    except (EmotiwError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from common.stores.publishing import remove_leftovers

    remove_leftovers(args.output)  # what a run that died while swapping its folder in left (.old-*), a day on
    import torch

    from featurizers.embedding.checkpoints import checkpoint_sha256
    from featurizers.embedding.embed import load_network
    from featurizers.embedding.finetuned import FinetunedDescription
    from featurizers.finetuning.image_folders import class_weights, list_image_folder, split_by_group
    from featurizers.finetuning.training import attach_new_head, choose_precision, finetune
    from featurizers.finetuning.training_state import TrainingState, save_training_state

    try:
        device = _device(args.device)
        precision = choose_precision(args.precision, device)
        spec = get_featurizer_spec(args.base)
        base_weights = resolve_weights_path(spec, args.weights)
        listing = list_image_folder(args.images, clip_of=_clip_map(args.images))
        if args.val_images is not None:
            train = listing.images
            val_listing = list_image_folder(args.val_images, classes=listing.classes, clip_of=_clip_map(args.val_images))
            val, skipped = val_listing.images, {**listing.skipped, **val_listing.skipped}
        else:
            train, val = split_by_group(listing.images, args.val_fraction, args.seed)
            skipped = listing.skipped
        if not train or not val:
            raise EmotiwError(f"{len(train)} training and {len(val)} validation images: need both")
        weights = class_weights([i.label for i in train], len(listing.classes), listing.classes)
        fingerprint = {"settings": asdict(settings), "base": spec.name, "base_weights_sha256":
                       checkpoint_sha256(base_weights), "classes": list(listing.classes),
                       "train_images": _list_digest(train), "val_images": _list_digest(val)}
        staging = staging_folder(args.output)
        resume = _resumable_state(staging, fingerprint, args.resume, settings)
    except (EmotiwError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("%d training and %d validation images (%d clips held out), %d classes %s, %d skipped; base %s "
             "on %s (%s)", len(train), len(val), len({i.group for i in val}), len(listing.classes),
             list(listing.classes), len(skipped), spec.name, device, precision.name)
    log.info("class weights %s", dict(zip(listing.classes, [round(float(w), 3) for w in weights])))

    def save_state(state: TrainingState) -> None:
        _write_json(staging / HISTORY_FILE, {"finished": False, "epochs": state.history,
                                             "best_epoch": state.best_epoch, "settings": asdict(settings)})
        save_training_state(staging, state, fingerprint)  # last: its presence says the epoch is saved

    started = time.perf_counter()
    model = attach_new_head(load_network(spec, args.weights), len(listing.classes), settings.seed)
    global_pool = model.global_pool.pool_type
    result = finetune(model, spec, train, val, weights, settings, device, precision=precision, resume=resume,
                      save_state=save_state)
    skipped.update(result.unreadable)
    seconds = time.perf_counter() - started
    training = {
        "images": str(args.images.absolute()), "val_images": str(args.val_images.absolute()) if args.val_images else None,
        "train_images": len(train), "val_images_count": len(val), "skipped_images": len(skipped),
        "class_counts": {c: sum(i.label == k for i in train) for k, c in enumerate(listing.classes)},
        "class_weights": dict(zip(listing.classes, [float(w) for w in weights])),
        "settings": asdict(settings), "val_fraction": None if args.val_images else args.val_fraction,
        "best_epoch": result.best_epoch, "best_val_accuracy": result.best.val_accuracy,
        "head_images_per_second": result.phase_speed("head"), "full_images_per_second": result.phase_speed("full"),
        "seconds": round(seconds, 1), "resumed_after_epoch": result.resumed_after, "device": str(device),
        "precision": precision.name, "torch": torch.__version__, "machine": platform.machine(),
    }
    description = FinetunedDescription(
        architecture=spec.architecture, global_pool=global_pool, input_size=spec.input_size, mean=spec.mean,
        std=spec.std, feature_dim=spec.feature_dim, classes=listing.classes, base_featurizer=spec.name,
        base_weights_sha256=fingerprint["base_weights_sha256"], weights_sha256="", training=training)
    publish_folder(staging, args.output, result, description, skipped, settings)
    print(f"best validation accuracy {result.best.val_accuracy:.3f} at epoch {result.best_epoch} "
          f"({result.best.phase} phase); {len(skipped)} images skipped; {seconds:.0f} s -> {args.output}")
    for path, why in sorted(skipped.items()):
        print(f"  skipped: {path}: {why}", file=sys.stderr)
    return 0


def _device(requested: str) -> Any:
    from featurizers.embedding.embed import select_device

    try:
        return select_device(requested)
    except RuntimeError as exc:  # torch's own words for a string that names no device
        raise ValueError(f"--device {requested!r}: {exc}; expected auto, cpu, cuda or cuda:N") from None


STAGED_FILES = {"checkpoint.pt", "checkpoint.pt.tmp", HISTORY_FILE, f"{HISTORY_FILE}.tmp", CURVE_FILE,
                "featurizer.json", "weights.safetensors"}


def _resumable_state(staging: Path, fingerprint: dict[str, Any], resume: bool, settings: FinetuneSettings) -> Any:
    """The checkpoint to continue from (None to start), after checking it belongs to this command.

    Without ``--resume`` a checkpoint is never thrown away silently: the run stops and says so.
    A staging folder without a checkpoint (a run killed in its first epoch) is cleared.
    """
    from featurizers.finetuning.training_state import ResumeMismatchError, differences, load_training_state

    found = load_training_state(staging) if staging.is_dir() else None
    if found is None:
        if resume:
            log.info("--resume: no checkpoint in %s; starting from the first epoch", staging)
        if staging.exists():
            strangers = sorted(p.name for p in staging.iterdir() if p.name not in STAGED_FILES)
            if strangers:
                raise EmotiwError(f"{staging} holds files that jobs.finetune did not write ({strangers[:3]}); "
                                  "move them away or choose another --output")
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return None
    state, saved = found
    if not resume:
        raise EmotiwError(f"{staging} holds the checkpoint of an unfinished run ({state.epochs_done} of "
                          f"{settings.total_epochs} epochs done); pass --resume to continue it, or delete the "
                          "folder to start again")
    changed = differences(saved, fingerprint)
    if changed:
        raise ResumeMismatchError(f"--resume: the checkpoint in {staging} was made with other "
                                  f"{', '.join(sorted({_flag_of(key) for key in changed}))}; run the same command "
                                  "as the interrupted run, or delete the folder to start again")
    return state


def _flag_of(key: str) -> str:
    """The command-line flag behind a fingerprint key."""
    top, _, rest = key.partition(".")
    if top == "settings":
        return SETTING_FLAGS.get(rest.split(".")[0], rest)
    return {"base": "--base", "base_weights_sha256": "--base/--weights", "classes": "--images (classes)",
            "train_images": "training images (--images, --val-fraction, --seed)",
            "val_images": "validation images (--val-images, --val-fraction, --seed)"}.get(top, top)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)


def publish_folder(staging: Path, output: Path, result: FinetuneResult, description: FinetunedDescription,
                   skipped: dict[str, str], settings: FinetuneSettings) -> None:
    """Write the featurizer folder in the staging folder, drop the checkpoint, and rename it into place."""
    from common.stores.publishing import publish
    from featurizers.embedding.finetuned import save_featurizer_folder
    from featurizers.finetuning.training_state import CHECKPOINT_FILE

    save_featurizer_folder(staging, result.model, description)
    history = {"epochs": [r.to_dict() for r in result.history], "best_epoch": result.best_epoch,
               "resumed_after_epoch": result.resumed_after, "settings": asdict(settings), "skipped": skipped}
    _write_json(staging / HISTORY_FILE, history)
    write_learning_curve(result, staging / CURVE_FILE)
    (staging / CHECKPOINT_FILE).unlink(missing_ok=True)
    publish(staging, output)


if __name__ == "__main__":
    configure_logging()
    sys.exit(run())
