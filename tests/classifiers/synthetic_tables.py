"""Synthetic descriptor tables written with the project's own Parquet schema (test helpers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.tables.schema import DescriptorLayout, descriptor_table_schema

CLASSES = ("Angry", "Happy", "Sad")
FEATURE_DIM = 2  # AFEW layout: 4 blocks x 2 = 8 values per clip


def provenance(featurizer: str = "synthetic_b0", feature_dim: int = FEATURE_DIM,
               classes: tuple[str, ...] = CLASSES, weights_sha256: str = "ab" * 32) -> dict[str, Any]:
    """What the extraction job writes into the schema metadata."""
    return {"project_version": "0.1.0", "featurizer": featurizer, "weights_sha256": weights_sha256,
            "layout": DescriptorLayout("afew", feature_dim).to_dict(), "detector": {"min_face_size": 32},
            "frames": {"step": 1}, "dataset": "afew", "classes": list(classes)}


def separable_rows(split: str, per_class: int, *, seed: int = 0, prefix: str = "",
                   feature_dim: int = FEATURE_DIM, classes: tuple[str, ...] = CLASSES) -> list[dict[str, Any]]:
    """Clips whose class k puts its mass on coordinates k, k + n_classes, ...: trivially separable."""
    rng = np.random.default_rng(seed)
    length = 4 * feature_dim
    rows = []
    for k, label in enumerate(classes):
        for i in range(per_class):
            descriptor = rng.uniform(0.0, 0.2, size=length)
            # the class signal sits on every len(classes)-th coordinate, so random forests
            # (which look at a few coordinates per split) find it as easily as the SVMs
            descriptor[np.arange(length) % len(classes) == k] += 5.0
            rows.append(clip_row(f"{prefix}{split}_{label}_{i}", split, label, descriptor))
    return rows


def clip_row(clip_id: str, split: str | None, label: str | None, descriptor: np.ndarray | None = None, *,
             length: int = 4 * FEATURE_DIM, status: str = "ok", featurizer: str = "synthetic_b0") -> dict[str, Any]:
    """One table row; no descriptor means a faceless (or failed) clip with a zero vector."""
    has_face = descriptor is not None
    values = np.zeros(length, np.float32) if descriptor is None else np.asarray(descriptor, np.float32)
    if status == "ok" and not has_face:
        status = "faceless"
    return {"clip_id": clip_id, "path": f"/videos/{clip_id}.avi", "dataset": "afew", "split": split,
            "label": label, "label_index": CLASSES.index(label) if label in CLASSES else None,
            "n_frames": 10, "n_face_frames": 10 if has_face else 0, "n_faces": 10 if has_face else 0,
            "has_face": has_face, "descriptor": values.tolist(), "featurizer": featurizer, "status": status,
            "error": "decode failed" if status == "error" else None, "max_faces_in_frame": 1 if has_face else 0,
            "fps": 25.0, "n_segments": 1, "n_corrupt_frames": 0}


def write_table(path: Path, rows: list[dict[str, Any]], prov: dict[str, Any] | None = None) -> Path:
    prov = provenance() if prov is None else prov
    layout = DescriptorLayout(prov["layout"]["aggregation"], prov["layout"]["feature_dim"])
    schema = descriptor_table_schema(layout, prov)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def standard_rows() -> list[dict[str, Any]]:
    """Train: 8 clips per class, 2 faceless, 1 failed. Val: 5 per class, 3 faceless (all Sad), 1 failed."""
    return (separable_rows("train", 8, seed=1)
            + [clip_row("train_faceless_0", "train", "Angry"), clip_row("train_faceless_1", "train", "Happy"),
               clip_row("train_failed", "train", "Sad", status="error")]
            + separable_rows("val", 5, seed=2)
            + [clip_row(f"val_faceless_{i}", "val", "Sad") for i in range(3)]
            + [clip_row("val_failed", "val", "Happy", status="error")])
