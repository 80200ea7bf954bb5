"""Export the faces of labelled clips as an image folder with a Parquet manifest (``jobs.faces``).

The faces are exactly those the extraction describes: the same decoding, frame sampling,
detector settings, face choice and crop or alignment (``iter_clip_faces``). Each is written
losslessly as ``<Class>/<clip_id>_<frame_index>[_<face_index>].png`` (the face index only when
every face of a frame is kept), which is the layout torchvision's ``ImageFolder`` and
``jobs.finetune`` read. The manifest has one row per image and one row per clip that gave
none (faceless, unlabelled or failed), so no clip is lost silently.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared
from PIL import Image

from common.parquet_io import publish, read_columns, shard_paths, staging_dir, write_atomically
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.runner import run_to_completion
from pipelines.graph.shared_models import acquire_shared

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.parquet"
SHARDS_DIR = "_manifest_shards"


def manifest_schema() -> pa.Schema:
    """One row per exported image (status ``ok``), or per clip that gave no image."""
    return pa.schema([
        pa.field("clip_id", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("label", pa.string()),
        pa.field("frame_index", pa.int64()),
        pa.field("face_index", pa.int64()),
        pa.field("box", pa.list_(pa.float32())),  # x1, y1, x2, y2; null on clip rows
        pa.field("path", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
    ])


def face_file_name(clip_id: str, frame_index: int, face_index: int | None) -> str:
    """``<clip_id>_<frame>[_<face>].png``; a clip id holding a path (repeated stems) is flattened."""
    stem = clip_id.replace("/", "__").replace(os.sep, "__")
    return f"{stem}_{frame_index}.png" if face_index is None else f"{stem}_{frame_index}_{face_index}.png"


def clip_only_row(ref: ClipRef, status: str, error: str | None) -> dict[str, Any]:
    return {"clip_id": ref.clip_id, "split": ref.split, "label": ref.label, "frame_index": None,
            "face_index": None, "box": None, "path": None, "status": status, "error": error}


def write_manifest_shard(rows: list[dict[str, Any]], folder: str | os.PathLike[str]) -> Path:
    """One uniquely named Parquet shard of manifest rows, renamed into place when whole."""
    table = pa.Table.from_pylist(rows, schema=manifest_schema())
    return write_atomically(Path(folder) / f"part-{uuid.uuid4().hex}.parquet", lambda tmp: pq.write_table(table, tmp))


class FaceWriter:
    """Holds the loaded detector; writes one clip's faces under ``root`` and returns its manifest rows."""

    def __init__(self, config: ExtractionConfig, root: str) -> None:
        from featurizers.detect import FaceDetector
        from featurizers.embed import select_device

        self.config = config
        self.root = Path(root)
        self.detector = FaceDetector(config.detector, select_device(config.device), backend=config.backend)
        self.align = config.layout.aligns_faces

    def export(self, ref: ClipRef) -> list[dict[str, Any]]:
        from pipelines.extraction.clip_describer import iter_clip_faces

        if ref.problem is not None:
            return [clip_only_row(ref, "error", ref.problem)]
        if ref.label is None:
            return [clip_only_row(ref, "skipped", "unlabelled clip: only labelled clips are exported")]
        rows: list[dict[str, Any]] = []
        folder = self.root / ref.label
        try:
            for chunk, faces in iter_clip_faces(ref.path, self.config.sampling, self.detector, self.align):
                for image, position, face_index, box in zip(faces.images, faces.frame_positions,
                                                            faces.face_indices, faces.boxes):
                    frame_index = int(chunk.frame_indices[position])
                    name = face_file_name(ref.clip_id, frame_index, face_index if self.align else None)
                    folder.mkdir(parents=True, exist_ok=True)  # here, so a class with no face gets no folder
                    Image.fromarray(np.ascontiguousarray(image)).save(folder / name, format="PNG", compress_level=1)
                    rows.append({"clip_id": ref.clip_id, "split": ref.split, "label": ref.label,
                                 "frame_index": frame_index, "face_index": int(face_index),
                                 "box": [float(v) for v in box[:4]], "path": f"{ref.label}/{name}",
                                 "status": "ok", "error": None})
        except Exception as exc:  # one bad clip must not stop the job; its images so far are removed
            log.warning("clip %s failed: %s", ref.clip_id, exc)
            for row in rows:
                (self.root / row["path"]).unlink(missing_ok=True)
            return [clip_only_row(ref, "error", f"{type(exc).__name__}: {exc}")]
        return rows or [clip_only_row(ref, "faceless", None)]


class ExportFacesFn(beam.DoFn):
    """Clip references to written face images; yields each clip's manifest rows as one list."""

    def __init__(self, config: ExtractionConfig, root: str, total_clips: int) -> None:
        self._config = config
        self._root = root
        self._total = total_clips
        self._shared = shared.Shared()
        self._writer: FaceWriter | None = None
        self._done = 0

    def setup(self) -> None:
        self._writer = acquire_shared(self._shared, lambda: FaceWriter(self._config, self._root))

    def process(self, ref: ClipRef) -> Iterator[list[dict[str, Any]]]:
        assert self._writer is not None, "setup() loads the detector before process()"
        started = time.perf_counter()
        rows = self._writer.export(ref)
        self._done += 1
        images = sum(r["status"] == "ok" for r in rows)
        log.info("[%d of %d clips, worker %d] %s: %s, %d face images, %.1f s", self._done, self._total,
                 os.getpid(), ref.clip_id, "ok" if images else rows[0]["status"], images,
                 time.perf_counter() - started)
        yield rows


class WriteManifestShardsFn(beam.DoFn):
    """Write each bundle's manifest rows as a Parquet shard (nothing emitted: see beam_steps)."""

    def __init__(self, shards_dir: str) -> None:
        self._shards_dir = shards_dir
        self._buffer: list[dict[str, Any]] = []

    def start_bundle(self) -> None:
        self._buffer = []

    def process(self, rows: list[dict[str, Any]]) -> Iterator[str]:
        self._buffer += rows
        return iter(())

    def finish_bundle(self) -> None:
        if self._buffer:
            write_manifest_shard(self._buffer, self._shards_dir)
        self._buffer = []


@dataclass
class FaceExportSummary:
    clips: int
    images: int
    faceless: int
    skipped: int
    error: int
    seconds: float
    failures: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.clips} clips: {self.images} face images; {self.faceless} faceless, {self.skipped} "
                f"skipped (unlabelled), {self.error} failed; {self.seconds:.1f} s")

    def to_dict(self) -> dict[str, Any]:
        return {"clips": self.clips, "images": self.images, "faceless": self.faceless, "skipped": self.skipped,
                "error": self.error, "seconds": round(self.seconds, 2), "failures": self.failures}


def run_face_export(refs: list[ClipRef], config: ExtractionConfig, output: str | os.PathLike[str],
                    options: PipelineOptions) -> FaceExportSummary:
    """Export every clip's faces on the configured Beam runner, then publish the folder atomically.

    Workers write images into a staging folder beside ``output``; the manifest shards are merged
    into ``manifest.parquet`` (sorted by clip, frame, face), a clip the runner returned nothing
    for gets an error row, and only then is the folder renamed to ``output``.
    """
    staging = Path(staging_dir(output))  # a local folder: images are written as files
    shards = staging / SHARDS_DIR
    shards.mkdir()
    runner = str(options.view_as(StandardOptions).runner)
    log.info("exporting the faces of %d clips on %s", len(refs), runner)
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "ListClips" >> beam.Create(refs)
         | "RedistributeClips" >> beam.Reshuffle()
         | "ExportFaces" >> beam.ParDo(ExportFacesFn(config, str(staging), len(refs)))
         | "WriteManifestShards" >> beam.ParDo(WriteManifestShardsFn(str(shards))))
    run_to_completion(pipeline)
    seen = set(read_columns(shards, ["clip_id"])["clip_id"])
    lost = [clip_only_row(r, "error", "no result came back from the runner") for r in refs if r.clip_id not in seen]
    if lost:
        log.error("%d clips came back without a row; recorded as errors", len(lost))
        write_manifest_shard(lost, shards)
    table = pa.concat_tables([pq.read_table(p) for p in shard_paths(shards)]).cast(manifest_schema())
    table = _drop_repeats(table.sort_by([("clip_id", "ascending"), ("frame_index", "ascending"),
                                         ("face_index", "ascending")]))
    pq.write_table(table, staging / MANIFEST_FILE)
    for path in shard_paths(shards):
        Path(path).unlink()
    shards.rmdir()
    clip_status: dict[str, str] = {}
    failures: dict[str, str] = {}
    for clip_id, status, error in zip(*(table.column(c).to_pylist() for c in ("clip_id", "status", "error"))):
        clip_status[clip_id] = status
        if status == "error":
            failures[clip_id] = error
    statuses = list(clip_status.values())
    summary = FaceExportSummary(
        clips=len(refs), images=int(sum(s == "ok" for s in table.column("status").to_pylist())),
        faceless=statuses.count("faceless"), skipped=statuses.count("skipped"), error=statuses.count("error"),
        seconds=time.perf_counter() - started, failures=failures)
    publish(staging, output, summary.to_dict())
    return summary


def _drop_repeats(table: pa.Table) -> pa.Table:
    """Rows written twice by a retried bundle (same clip, frame and face) are kept once."""
    keys = list(zip(*(table.column(c).to_pylist() for c in ("clip_id", "frame_index", "face_index", "status"))))
    seen: set[tuple] = set()
    mask = []
    for key in keys:
        mask.append(key not in seen)
        seen.add(key)
    return table.filter(pa.array(mask)) if not all(mask) else table


def read_manifest(folder: str | os.PathLike[str]) -> pa.Table | None:
    """The manifest of an exported face folder, or None when there is none."""
    path = Path(folder) / MANIFEST_FILE
    return pq.read_table(path) if path.is_file() else None


__all__ = ["MANIFEST_FILE", "FaceExportSummary", "FaceWriter", "face_file_name", "manifest_schema",
           "read_manifest", "run_face_export"]
