"""Fine-tune a featurizer on labelled faces: the recipe of the paper's section 3.2 and the author's notebook.

A new head with one output per class is trained first alone (the network frozen, default 3
epochs at lr 1e-3), then with the whole network (default 6 epochs at lr 1e-4), each step by
sharpness-aware minimisation over Adam, on a class-weighted cross-entropy (optionally with
label smoothing). Training faces are varied (``augment``: flip, small zoom, shift and
rotation, brightness and contrast; mixup or cutmix on request), then preprocessed exactly as
the featurizer does at extraction time (``preprocess_faces`` with the featurizer's spec);
validation faces are not varied. After every epoch the validation images are scored, the
weights of the best validation accuracy are kept, and the whole state can be saved
(``training_state``) so that a killed run continues where it stopped.

The switch from the head phase to the full phase keeps the head's progress: by default batch
norm normalises each batch by its own statistics in both phases (``batch_norm="batch"``), so
the features the head learnt on do not change when the whole network starts learning (in the
paper's recipe they did: the base's running statistics in the head phase, the batch's in the
full phase). A learning-rate warm-up for the full phase is available (``warmup_epochs``).

On a GPU the forward passes run in float16 under ``torch.autocast`` with a gradient scaler
(``Precision``); on the CPU in float32.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from featurizers.embedding.embed import preprocess_faces
from featurizers.embedding.registry import FeaturizerSpec
from featurizers.finetuning.augment import BatchMix, draw_jitter, draw_mix, jitter_face, mix_batch
from featurizers.finetuning.image_folders import LabelledImage, load_rgb
from featurizers.finetuning.sam import SharpnessAware, frozen_batch_norm_statistics
from featurizers.finetuning.settings import PRECISIONS, FinetuneSettings
from featurizers.finetuning.training_state import TrainingState, capture_random_state, restore_random_state

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 30.0


@dataclass
class EpochRecord:
    phase: str
    epoch: int
    """Counted over both phases, from 1."""
    train_loss: float
    train_accuracy: float
    """Against each face's own label (with mixup or cutmix: the label of the larger share)."""
    val_loss: float
    val_accuracy: float
    images: int
    seconds: float
    """Training only (validation not counted)."""
    learning_rate: float
    """At the epoch's end."""

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 2)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> EpochRecord:
        return EpochRecord(**{f.name: data[f.name] for f in fields(EpochRecord)})


@dataclass
class FinetuneResult:
    model: nn.Module
    """The network with the best validation accuracy's weights, in eval mode."""
    history: list[EpochRecord]
    best_epoch: int
    unreadable: dict[str, str] = field(default_factory=dict)
    """Images that passed the listing's check but failed to load during training."""
    resumed_after: int = 0
    """Epochs that an earlier, interrupted run had done (0 for a run from the start)."""

    @property
    def best(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]

    def phase_speed(self, phase: str) -> float | None:
        """Training images per second over the epochs of one phase."""
        records = [r for r in self.history if r.phase == phase]
        seconds = sum(r.seconds for r in records)
        return sum(r.images for r in records) / seconds if seconds > 0 else None


@dataclass(frozen=True)
class Precision:
    """The arithmetic of training: float32, or autocast to a 16-bit type (float16 with a loss scaler)."""

    name: str
    autocast_dtype: torch.dtype | None
    loss_scaling: bool

    def autocast(self, device: torch.device) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


def choose_precision(requested: str, device: torch.device) -> Precision:
    """``auto``: float16 with loss scaling on a GPU (mixed precision), float32 on the CPU."""
    if requested not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "auto":
        requested = "float16" if device.type == "cuda" else "float32"
    if requested == "float32":
        return Precision("float32", None, False)
    if requested == "float16":
        if device.type != "cuda":
            raise ValueError(f"--precision float16 needs a GPU (--device {device}); use float32 or bfloat16 on the CPU")
        return Precision("float16", torch.float16, True)
    return Precision("bfloat16", torch.bfloat16, False)  # float32's range: no loss scaling needed


def attach_new_head(model: nn.Module, n_classes: int, seed: int) -> nn.Module:
    """Replace the network's head by a freshly initialised Linear with one output per class (pooling kept)."""
    torch.manual_seed(seed)
    head = nn.Linear(model.num_features, n_classes)  # type: ignore[arg-type]
    model.classifier = head  # type: ignore[assignment]
    model.num_classes = n_classes  # type: ignore[assignment]
    return model


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    mix: BatchMix | None = None


class FaceBatches:
    """Loads, varies and preprocesses images in batches, a few batches ahead on worker threads.

    The order, and one seed per batch, are drawn from the run's generator in the calling thread;
    each batch's variations come from its own seed. So the batches, and the generator's state
    after an epoch, are the same whatever the threads' timing. Files that fail are skipped and
    recorded in ``unreadable``.
    """

    def __init__(self, spec: FeaturizerSpec, settings: FinetuneSettings, unreadable: dict[str, str],
                 threads: int | None = None, ahead: int = 2) -> None:
        self.spec = spec
        self.settings = settings
        self.unreadable = unreadable
        self.threads = threads or max(1, min(8, os.cpu_count() or 1))
        self.ahead = max(1, ahead)

    def __call__(self, images: list[LabelledImage], rng: np.random.Generator | None,
                 vary: bool = True) -> Iterator[Batch]:
        """Training batches (shuffled, varied) with ``rng``; validation batches (in order, unchanged) without;
        shuffled but unchanged ones with ``rng`` and ``vary=False``."""
        order = rng.permutation(len(images)) if rng is not None else np.arange(len(images))
        size = self.settings.batch_size
        jobs = []
        for start in range(0, len(order), size):
            seed = int(rng.integers(1 << 62)) if rng is not None and vary else None
            jobs.append(([images[i] for i in order[start : start + size]], seed))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="faces") as pool:
            pending: deque[Future[Batch | None]] = deque()
            for job in jobs:
                pending.append(pool.submit(self._prepare, *job))
                if len(pending) > self.ahead:
                    batch = pending.popleft().result()
                    if batch is not None:
                        yield batch
            while pending:
                batch = pending.popleft().result()
                if batch is not None:
                    yield batch

    def _prepare(self, images: list[LabelledImage], seed: int | None) -> Batch | None:
        rng = np.random.default_rng(seed) if seed is not None else None
        faces, labels = [], []
        for image in images:
            # Drawn before loading, so a file that fails does not shift the draws of the others.
            jitter = draw_jitter(rng, self.settings.augmentation) if rng is not None and self.settings.augment else None
            if image.path in self.unreadable:
                continue
            try:
                face = load_rgb(image.path)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                self.unreadable[image.path] = f"{type(exc).__name__}: {str(exc)[:120]}"
                log.warning("skipped %s: %s", image.path, self.unreadable[image.path])
                continue
            faces.append(jitter_face(face, jitter) if jitter is not None else face)
            labels.append(image.label)
        if not faces:
            return None
        batch = preprocess_faces(faces, self.spec)
        mix = None
        if rng is not None:
            mix = draw_mix(rng, len(faces), self.spec.input_size, self.settings.mixup, self.settings.cutmix)
            if mix is not None:
                batch = mix_batch(batch, mix)
        return Batch(torch.from_numpy(batch), torch.tensor(labels, dtype=torch.int64), mix)


def sam_update(optimiser: SharpnessAware, scaler: torch.amp.GradScaler,
               loss_at: Callable[[bool], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One sharpness-aware update; ``loss_at(perturbed)`` runs the forward pass and returns (loss, logits).

    Gradient at w, climb to w + offset, gradient there, back to w, inner step. Under a loss
    scaler the inner step is the scaler's, which skips it when the gradients overflowed (the
    weights are back at w either way). Returns the first pass's loss and logits, detached.
    """
    loss, logits = loss_at(False)
    scaler.scale(loss).backward()
    optimiser.climb()
    optimiser.zero_grad()
    perturbed_loss, _ = loss_at(True)
    scaler.scale(perturbed_loss).backward()
    optimiser.restore()
    scaler.step(optimiser.inner)
    scaler.update()
    optimiser.zero_grad()
    return loss.detach(), logits.detach()


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The learning rate's share at optimiser step ``step`` (from 0) of a linear warm-up; 1 after it."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def keep_batch_norm_statistics(model: nn.Module) -> None:
    """Batch-norm layers to eval mode: they normalise with their running statistics and leave them as
    they are, while their scales and offsets still learn. Call after ``model.train()``."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def measure_batch_norm_statistics(model: nn.Module, batches: Iterator[Batch], device: torch.device,
                                  precision: Precision) -> int:
    """Replace every batch-norm layer's running statistics by those of the batches (a plain average
    over them, without gradients); returns the number of images seen. The weights stay as they are."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average, the same weight for every batch
    model.train()
    seen = 0
    try:
        with torch.no_grad(), precision.autocast(device):
            for batch in batches:
                model(batch.images.to(device, non_blocking=True))
                seen += len(batch.labels)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()
    return seen


def evaluate(model: nn.Module, batches: Iterator[Batch], loss_fn: nn.Module, device: torch.device,
             precision: Precision) -> tuple[float, float]:
    """Mean loss and accuracy of the model (eval mode) over the batches."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for batch in batches:
            x, y = batch.images.to(device, non_blocking=True), batch.labels.to(device, non_blocking=True)
            with precision.autocast(device):
                logits = model(x)
            logits = logits.float()
            total_loss += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    return (total_loss / count, correct / count) if count else (math.nan, math.nan)


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _pooled(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _phase_optimiser(model: nn.Module, head: nn.Module, phase: str, settings: FinetuneSettings) -> SharpnessAware:
    whole = phase == "full"
    for p in model.parameters():
        p.requires_grad_(whole)
    for p in head.parameters():
        p.requires_grad_(True)
    trained = model.parameters() if whole else head.parameters()
    lr = settings.full_lr if whole else settings.head_lr
    return SharpnessAware([p for p in trained if p.requires_grad], torch.optim.Adam, rho=settings.rho, lr=lr)


def finetune(
    model: nn.Module,
    spec: FeaturizerSpec,
    train: list[LabelledImage],
    val: list[LabelledImage],
    weights: np.ndarray,
    settings: FinetuneSettings,
    device: torch.device,
    *,
    precision: Precision | None = None,
    resume: TrainingState | None = None,
    save_state: Callable[[TrainingState], None] | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` (with its new head attached) and return it holding the best-validation weights.

    ``save_state`` receives the run's state after every epoch (its tensors are the live ones:
    write or copy them before returning); a run given such a state as ``resume`` (same data,
    settings and seed) continues after its last epoch and ends with the same weights as a run
    never interrupted.
    """
    precision = precision or choose_precision("auto", device)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = model.to(device)
    head: Any = model.get_classifier()  # type: ignore[operator]
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32, device=device),
                                  label_smoothing=settings.label_smoothing)
    unreadable: dict[str, str] = dict(resume.unreadable) if resume else {}
    batches = FaceBatches(spec, settings, unreadable)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.loss_scaling)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    warmup_steps = round(settings.warmup_epochs * steps_per_epoch)
    history: list[EpochRecord] = []
    best_accuracy, best_state, best_epoch = -1.0, None, 0
    optimiser: SharpnessAware | None = None
    optimiser_phase = ""
    done = 0
    if resume is not None:
        model.load_state_dict(resume.model)
        done = resume.epochs_done
        history = [EpochRecord.from_dict(r) for r in resume.history]
        best_accuracy, best_epoch = resume.best_accuracy, resume.best_epoch
        best_state = _clone(resume.best_model if resume.best_model is not None else model.state_dict())
        optimiser_phase = resume.phase
        optimiser = _phase_optimiser(model, head, resume.phase, settings)
        optimiser.load_state_dict(resume.optimiser)
        if resume.scaler and scaler.is_enabled():  # a CPU run's scaler is off and saves nothing
            scaler.load_state_dict(resume.scaler)
        restore_random_state(resume.random, rng)
        log.info("resuming after epoch %d of %d (best so far: epoch %d, validation accuracy %.3f)",
                 done, settings.total_epochs, best_epoch, best_accuracy)
    phase_started, phase_first = time.perf_counter(), done + 1
    for epoch in range(done + 1, settings.total_epochs + 1):
        phase = settings.phase_of(epoch)
        whole = phase == "full"
        phase_epoch = epoch - (settings.head_epochs if whole else 0)
        phase_epochs = settings.full_epochs if whole else settings.head_epochs
        if optimiser is None or phase != optimiser_phase:
            optimiser, optimiser_phase = _phase_optimiser(model, head, phase, settings), phase
            phase_started, phase_first = time.perf_counter(), epoch
        if epoch == 1 and settings.batch_norm == "batch":
            # Shuffled batches of the training size, as the full phase will normalise them (a listing
            # is sorted by class: its batches would hold one class each); a generator of its own.
            order = np.random.default_rng([settings.seed, 1])
            measure_batch_norm_statistics(model, batches(train, order, vary=False), device, precision)
        # In the head phase only the head learns: the network runs once per batch without
        # gradients, normalising with batch norm's running statistics (eval mode) or, with
        # batch_norm="batch", each batch by its own statistics as the full phase will.
        per_batch_statistics = settings.batch_norm == "batch" or (whole and settings.batch_norm != "frozen")
        model.train(whole or per_batch_statistics)
        if whole and not per_batch_statistics:
            keep_batch_norm_statistics(model)
        keep_running_statistics = per_batch_statistics and not whole  # the head phase only reads them
        started = time.perf_counter()
        last_report = started
        # Sums kept on the device: reading them back every step would make a GPU wait for each one.
        total_loss, correct, count = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.int64), 0
        lr = optimiser.param_groups[0]["lr"]
        for index, batch in enumerate(batches(train, rng)):
            if whole:
                lr = settings.full_lr * warmup_factor((phase_epoch - 1) * steps_per_epoch + index, warmup_steps)
                for group in optimiser.param_groups:
                    group["lr"] = lr
            x, y = batch.images.to(device, non_blocking=True), batch.labels.to(device, non_blocking=True)
            mix = batch.mix
            y_other = y[torch.as_tensor(mix.partner, device=device)] if mix is not None else y
            if not whole:
                with torch.no_grad(), frozen_batch_norm_statistics(model) if keep_running_statistics \
                        else nullcontext(), precision.autocast(device):
                    pooled = _pooled(model, x)

            def loss_at(perturbed: bool) -> tuple[torch.Tensor, torch.Tensor]:
                keep = frozen_batch_norm_statistics(model) if perturbed and per_batch_statistics else nullcontext()
                with keep, precision.autocast(device):
                    logits = model(x) if whole else head(pooled)
                    loss = loss_fn(logits, y)
                    if mix is not None:
                        loss = mix.weight * loss + (1 - mix.weight) * loss_fn(logits, y_other)
                return loss, logits

            loss, logits = sam_update(optimiser, scaler, loss_at)
            shown = y if mix is None or mix.weight >= 0.5 else y_other
            total_loss += loss.float() * len(y)
            correct += (logits.argmax(1) == shown).sum()
            count += len(y)
            if time.perf_counter() - last_report > PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                log.info("%s epoch %d: %d of %d images, %.1f images/s", phase, phase_epoch, count, len(train),
                         count / (last_report - started))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started
        val_loss, val_accuracy = evaluate(model, batches(val, None), loss_fn, device, precision)
        record = EpochRecord(phase, epoch, float(total_loss) / max(count, 1), int(correct) / max(count, 1),
                             val_loss, val_accuracy, count, train_seconds, lr)
        history.append(record)
        if val_accuracy > best_accuracy:
            best_accuracy, best_epoch = val_accuracy, epoch
            best_state = _clone(model.state_dict())
        left = (time.perf_counter() - phase_started) / (epoch - phase_first + 1) * (phase_epochs - phase_epoch)
        log.info("%s %d/%d: loss %.4f, accuracy %.3f; val loss %.4f, accuracy %.3f; %.1f images/s; "
                 "%.0f s, about %.0f s left in this phase%s", phase, phase_epoch, phase_epochs, record.train_loss,
                 record.train_accuracy, val_loss, val_accuracy, record.images_per_second,
                 time.perf_counter() - started, left,
                 " (then the full phase)" if not whole and settings.full_epochs else "")
        if save_state is not None:
            save_state(TrainingState(
                epochs_done=epoch, phase=phase, model=model.state_dict(),
                best_model=None if best_epoch == epoch else best_state, best_epoch=best_epoch,
                best_accuracy=best_accuracy, optimiser=optimiser.state_dict(), scaler=scaler.state_dict(),
                random=capture_random_state(rng), history=[r.to_dict() for r in history],
                unreadable=dict(unreadable)))
        if on_epoch is not None:
            on_epoch(record)
    assert best_state is not None
    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return FinetuneResult(model.eval(), history, best_epoch, unreadable, done)
