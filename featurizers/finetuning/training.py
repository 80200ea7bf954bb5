"""Fine-tune a featurizer on labelled faces: the recipe of the paper's section 3.2 and the author's notebook.

A new head with one output per class is trained first alone (the network frozen, default 3
epochs at lr 1e-3), then with the whole network (default 6 epochs at lr 1e-4), each step by
sharpness-aware minimisation over Adam, on a class-weighted cross-entropy (optionally with
label smoothing). Faces are preprocessed exactly as the featurizer does at extraction time
(``preprocess_faces`` with the featurizer's spec). After every epoch the validation images are
scored and the weights of the best validation accuracy are kept.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from featurizers.embed import preprocess_faces
from featurizers.finetuning.image_folders import LabelledImage, load_rgb
from featurizers.finetuning.sam import SharpnessAware, frozen_batch_norm_statistics
from featurizers.finetuning.settings import FinetuneSettings
from featurizers.registry import FeaturizerSpec

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 30.0


@dataclass
class EpochRecord:
    phase: str
    epoch: int
    """Counted over both phases, from 1."""
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 2)}


@dataclass
class FinetuneResult:
    model: nn.Module
    """The network with the best validation accuracy's weights, in eval mode."""
    history: list[EpochRecord]
    best_epoch: int
    unreadable: dict[str, str] = field(default_factory=dict)
    """Images that passed the listing's check but failed to load during training."""

    @property
    def best(self) -> EpochRecord:
        return self.history[self.best_epoch - 1]

    def phase_speed(self, phase: str) -> float | None:
        """Training images per second over the epochs of one phase."""
        records = [r for r in self.history if r.phase == phase]
        seconds = sum(r.seconds for r in records)
        return sum(r.images for r in records) / seconds if seconds > 0 else None


def attach_new_head(model: nn.Module, n_classes: int, seed: int) -> nn.Module:
    """Replace the network's head by a freshly initialised Linear with one output per class (pooling kept)."""
    torch.manual_seed(seed)
    head = nn.Linear(model.num_features, n_classes)  # type: ignore[arg-type]
    model.classifier = head  # type: ignore[assignment]
    model.num_classes = n_classes  # type: ignore[assignment]
    return model


def augment_face(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild augmentation of one RGB uint8 face: flip, a slightly smaller square-ish crop, brightness/contrast."""
    if rng.random() < 0.5:
        face = face[:, ::-1]
    h, w = face.shape[:2]
    scale = rng.uniform(0.85, 1.0)
    ch, cw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    face = face[top : top + ch, left : left + cw].astype(np.float32)
    contrast, brightness = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
    face = (face - face.mean()) * contrast + face.mean() * brightness
    return np.clip(face, 0, 255).round().astype(np.uint8)


class _Batches:
    """Loads, optionally augments and preprocesses images in batches; files that fail are skipped and recorded."""

    def __init__(self, spec: FeaturizerSpec, settings: FinetuneSettings, unreadable: dict[str, str]) -> None:
        self.spec = spec
        self.settings = settings
        self.unreadable = unreadable

    def __call__(self, images: list[LabelledImage], rng: np.random.Generator | None,
                 augment: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = rng.permutation(len(images)) if rng is not None else np.arange(len(images))
        size = self.settings.batch_size
        for start in range(0, len(order), size):
            faces, labels = [], []
            for index in order[start : start + size]:
                image = images[index]
                if image.path in self.unreadable:
                    continue
                try:
                    face = load_rgb(image.path)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:
                    self.unreadable[image.path] = f"{type(exc).__name__}: {str(exc)[:120]}"
                    log.warning("skipped %s: %s", image.path, self.unreadable[image.path])
                    continue
                faces.append(augment_face(face, rng) if augment and rng is not None else face)
                labels.append(image.label)
            if faces:
                yield torch.from_numpy(preprocess_faces(faces, self.spec)), torch.tensor(labels, dtype=torch.int64)


def _pooled(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


def evaluate(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], loss_fn: nn.Module,
             device: torch.device) -> tuple[float, float]:
    """Mean loss and accuracy of the model (eval mode) over the batches."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.inference_mode():
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            count += len(y)
    return (total_loss / count, correct / count) if count else (math.nan, math.nan)


def finetune(
    model: nn.Module,
    spec: FeaturizerSpec,
    train: list[LabelledImage],
    val: list[LabelledImage],
    weights: np.ndarray,
    settings: FinetuneSettings,
    device: torch.device,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FinetuneResult:
    """Train ``model`` (with its new head attached) and return it holding the best-validation weights."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = model.to(device)
    head: Any = model.get_classifier()  # type: ignore[operator]
    loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(weights, dtype=torch.float32, device=device),
                                  label_smoothing=settings.label_smoothing)
    unreadable: dict[str, str] = {}
    batches = _Batches(spec, settings, unreadable)
    phases = [("head", settings.head_epochs, settings.head_lr), ("full", settings.full_epochs, settings.full_lr)]
    history: list[EpochRecord] = []
    best_accuracy, best_state, best_epoch = -1.0, None, 0
    epoch = 0
    for phase, epochs, lr in phases:
        if epochs == 0:
            continue
        whole = phase == "full"
        for p in model.parameters():
            p.requires_grad_(whole)
        for p in head.parameters():
            p.requires_grad_(True)
        trained = model.parameters() if whole else head.parameters()
        optimiser = SharpnessAware([p for p in trained if p.requires_grad], torch.optim.Adam, rho=settings.rho, lr=lr)
        phase_started = time.perf_counter()
        for phase_epoch in range(1, epochs + 1):
            epoch += 1
            started = time.perf_counter()
            last_report = started
            total_loss, correct, count = 0.0, 0, 0
            # The head phase keeps the network as it is (eval mode: batch-norm statistics untouched);
            # only the head learns, so the network runs once per batch without gradients.
            model.train(whole)
            for x, y in batches(train, rng, settings.augment):
                x, y = x.to(device), y.to(device)
                if whole:
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    loss.backward()
                    optimiser.climb()
                    optimiser.zero_grad()
                    with frozen_batch_norm_statistics(model):
                        loss_fn(model(x), y).backward()
                else:
                    with torch.no_grad():
                        pooled = _pooled(model, x)
                    logits = head(pooled)
                    loss = loss_fn(logits, y)
                    loss.backward()
                    optimiser.climb()
                    optimiser.zero_grad()
                    loss_fn(head(pooled), y).backward()
                optimiser.step()
                optimiser.zero_grad()
                total_loss += float(loss.detach()) * len(y)
                correct += int((logits.detach().argmax(1) == y).sum())
                count += len(y)
                if time.perf_counter() - last_report > PROGRESS_EVERY_S:
                    last_report = time.perf_counter()
                    log.info("%s epoch %d: %d of %d images, %.1f images/s", phase, phase_epoch, count, len(train),
                             count / (last_report - started))
            train_seconds = time.perf_counter() - started
            val_loss, val_accuracy = evaluate(model, batches(val, None, False), loss_fn, device)
            record = EpochRecord(phase, epoch, total_loss / max(count, 1), correct / max(count, 1),
                                 val_loss, val_accuracy, count, train_seconds)
            history.append(record)
            if val_accuracy > best_accuracy:
                best_accuracy, best_epoch = val_accuracy, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            left = (time.perf_counter() - phase_started) / phase_epoch * (epochs - phase_epoch)
            log.info("%s %d/%d: loss %.4f, accuracy %.3f; val loss %.4f, accuracy %.3f; %.1f images/s; "
                     "%.0f s, about %.0f s left in this phase%s", phase, phase_epoch, epochs, record.train_loss,
                     record.train_accuracy, val_loss, val_accuracy, record.images_per_second,
                     time.perf_counter() - started, left,
                     " (then the full phase)" if not whole and settings.full_epochs else "")
            if on_epoch is not None:
                on_epoch(record)
    assert best_state is not None
    model.load_state_dict(best_state)
    for p in model.parameters():
        p.requires_grad_(True)
    return FinetuneResult(model.eval(), history, best_epoch, unreadable)
