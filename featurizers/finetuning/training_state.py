"""What a fine-tuning run needs to continue after an epoch, and its file (``checkpoint.pt``).

A killed run resumed from the last checkpoint ends with the same weights as a run never
interrupted: the file holds the network, the best weights so far, the optimiser's state (Adam's
moments under SAM), the loss scaler's, the state of every random generator the run draws from
(Python's, NumPy's, torch's on the CPU and on each GPU), the history and the images found
unreadable. The file is written to a temporary name, flushed to disk and renamed, so a kill
while it is written leaves the previous checkpoint whole.

It is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts
only, no code is unpickled.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.errors import CheckpointFormatError, EmotiwError

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_NAME = "emotiw-video fine-tuning checkpoint"
FORMAT_VERSION = 1


class ResumeMismatchError(EmotiwError, ValueError):
    """A checkpoint was made by a run with other data or other settings than the one resuming it."""


@dataclass
class TrainingState:
    """Everything a run holds between two epochs."""

    epochs_done: int
    phase: str
    """The phase of the optimiser state (``head`` or ``full``)."""
    model: dict[str, torch.Tensor]
    best_model: dict[str, torch.Tensor] | None
    """The best weights so far; None when they are ``model`` (the last epoch was the best)."""
    best_epoch: int
    best_accuracy: float
    optimiser: dict[str, Any]
    scaler: dict[str, Any]
    random: dict[str, Any]
    history: list[dict[str, Any]]
    unreadable: dict[str, str]


def capture_random_state(rng: np.random.Generator) -> dict[str, Any]:
    """The state of every random generator a run may draw from."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": rng.bit_generator.state,
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Put the generators back as :func:`capture_random_state` found them (GPUs only where there are some)."""
    random.setstate(state["python"])
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(folder: str | os.PathLike[str], state: TrainingState,
                        fingerprint: dict[str, Any]) -> Path:
    """Write ``folder/checkpoint.pt`` atomically; ``fingerprint`` says which data and settings it belongs to."""
    path = Path(folder) / CHECKPOINT_FILE
    temporary = path.with_name(f"{CHECKPOINT_FILE}.tmp")
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "fingerprint": fingerprint,
               **{f.name: getattr(state, f.name) for f in fields(state)}}
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_training_state(folder: str | os.PathLike[str]) -> tuple[TrainingState, dict[str, Any]] | None:
    """The checkpoint in ``folder`` and its fingerprint, or None when there is none."""
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file raises many types (pickle, zip, runtime)
        raise CheckpointFormatError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:200]}); "
                                    "delete the folder to start again") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME \
            or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointFormatError(f"{path}: not a {FORMAT_NAME} of version {FORMAT_VERSION}")
    try:
        state = TrainingState(**{f.name: payload[f.name] for f in fields(TrainingState)})
    except KeyError as exc:
        raise CheckpointFormatError(f"{path}: missing entry {exc}") from None
    return state, payload["fingerprint"]


def differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two fingerprints (nested dicts compared key by key)."""
    found = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key}")
    return found
