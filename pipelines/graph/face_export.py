"""Export the faces of labelled clips as an image folder with a Parquet manifest (``jobs.faces``).

The faces are exactly those the extraction describes: the same decoding, frame sampling,
detector settings, face choice and crop or alignment (``iter_clip_faces``). Each is written
losslessly as ``<Class>/<clip_id>_<frame_index>[_<face_index>].png`` (the face index only when
every face of a frame is kept), which is the layout torchvision's ``ImageFolder`` and
``jobs.finetune`` read. The manifest has one row per image and one row per clip that gave
none (faceless, unlabelled or failed), so no clip is lost silently.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared
from PIL import Image

from common.stores import storage
from common.tables.parquet_io import read_columns, read_parquet, shard_paths, write_parquet
from common.stores.publishing import publish, staging_dir
from common.tables.shards import ShardWriter, read_shards, settle_table, write_rows
from pipelines.extraction.clip_records import ClipRef
from pipelines.extraction.settings import ExtractionConfig
from pipelines.graph.lost_clips import NO_RESULT_ERROR, clips_without_rows
from pipelines.graph.run_summary import RunSummary, status_counts
from pipelines.graph.runner import run_to_completion
from pipelines.graph.shared_models import acquire_shared

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.parquet"
SHARDS_DIR = "_manifest_shards"
MANIFEST_ROWS_PER_SHARD = 4096


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


class FaceWriter:
    """Holds the loaded detector; writes one clip's faces under ``root`` and returns its manifest rows."""

    def __init__(self, config: ExtractionConfig, root: str) -> None:
        from featurizers.detection.detect import FaceDetector
        from featurizers.embedding.embed import select_device

        self.config = config
        self.root = str(root)  # a folder, or a prefix in a bucket
        self.detector = FaceDetector(config.detector, select_device(config.device), backend=config.backend,
                                     mode=config.detection)
        self.align = config.layout.aligns_faces

    def export(self, ref: ClipRef) -> list[dict[str, Any]]:
        from pipelines.extraction.clip_describer import iter_clip_faces

        if ref.problem is not None:
            return [clip_only_row(ref, "error", ref.problem)]
        if ref.label is None:
            return [clip_only_row(ref, "skipped", "unlabelled clip: only labelled clips are exported")]
        rows: list[dict[str, Any]] = []
        folder = storage.join(self.root, ref.label)
        try:
            for chunk, faces in iter_clip_faces(ref.path, self.config.sampling, self.detector, self.align,
                                                detect_every=self.config.detection.detect_every):
                for image, position, face_index, box in zip(faces.images, faces.frame_positions,
                                                            faces.face_indices, faces.boxes):
                    frame_index = int(chunk.frame_indices[position])
                    name = face_file_name(ref.clip_id, frame_index, face_index if self.align else None)
                    _save_png(image, storage.join(folder, name))
                    rows.append({"clip_id": ref.clip_id, "split": ref.split, "label": ref.label,
                                 "frame_index": frame_index, "face_index": int(face_index),
                                 "box": [float(v) for v in box[:4]], "path": f"{ref.label}/{name}",
                                 "status": "ok", "error": None})
        except Exception as exc:  # one bad clip must not stop the job; its images so far are removed
            log.warning("clip %s failed: %s", ref.clip_id, exc)
            for row in rows:
                storage.remove(storage.join(self.root, *row["path"].split("/")))
            return [clip_only_row(ref, "error", f"{type(exc).__name__}: {exc}")]
        return rows or [clip_only_row(ref, "faceless", None)]


def _save_png(image: np.ndarray, url: str) -> None:
    """A face as a lossless PNG: a file on disk (its class folder made here, so a class with no face
    gets none), one whole object in a bucket."""
    picture = Image.fromarray(np.ascontiguousarray(image))
    if storage.is_remote(url):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", compress_level=1)
        storage.write_bytes(url, buffer.getvalue())
        return
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    picture.save(url, format="PNG", compress_level=1)


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
    """Write each bundle's manifest rows as Parquet shards (nothing emitted: see write_steps)."""

    def __init__(self, shards_dir: str) -> None:
        self._shards_dir = shards_dir
        self._writer: ShardWriter | None = None

    def start_bundle(self) -> None:
        self._writer = ShardWriter(self._shards_dir, manifest_schema(), flush_rows=MANIFEST_ROWS_PER_SHARD)

    def process(self, rows: list[dict[str, Any]]) -> Iterator[str]:
        assert self._writer is not None
        self._writer.add(rows)
        return iter(())

    def finish_bundle(self) -> None:
        assert self._writer is not None
        self._writer.close()


def run_face_export(refs: list[ClipRef], config: ExtractionConfig, output: str | os.PathLike[str],
                    options: PipelineOptions) -> RunSummary:
    """Export every clip's faces on the configured Beam runner, then publish the folder atomically.

    Workers write images into a staging folder beside ``output``; the manifest shards are merged
    into ``manifest.parquet`` (sorted by clip, frame, face), a clip the runner returned nothing
    for gets an error row, and only then is the folder renamed to ``output``.
    """
    staging = staging_dir(output)  # a folder, or a prefix in a bucket
    shards = storage.join(staging, SHARDS_DIR)
    if not storage.is_remote(shards):
        os.mkdir(shards)
    runner = str(options.view_as(StandardOptions).runner)
    log.info("exporting the faces of %d clips on %s", len(refs), runner)
    started = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    _ = (pipeline
         | "ListClips" >> beam.Create(refs)
         | "RedistributeClips" >> beam.Reshuffle()
         | "ExportFaces" >> beam.ParDo(ExportFacesFn(config, staging, len(refs)))
         | "WriteManifestShards" >> beam.ParDo(WriteManifestShardsFn(shards)))
    run_to_completion(pipeline)
    seen = read_columns(shards, ["clip_id"])["clip_id"]
    lost = clips_without_rows([r.clip_id for r in refs], seen)
    if lost:
        by_id = {r.clip_id: r for r in refs}
        write_rows([clip_only_row(by_id[c], "error", NO_RESULT_ERROR) for c in lost], shards, manifest_schema(),
                   "lost-clips")
    table = read_shards(shards)
    assert table is not None, "every clip has a manifest row by now"
    # A retried bundle's rows: each clip keeps the images of its winning attempt.
    table = settle_table(table, ["clip_id"], one_row_per_key=False).cast(manifest_schema())
    table = table.sort_by([("clip_id", "ascending"), ("frame_index", "ascending"), ("face_index", "ascending")])
    write_parquet(table, storage.join(staging, MANIFEST_FILE))
    for path in shard_paths(shards):
        storage.remove(path)
    if not storage.is_remote(shards):  # a prefix in a bucket goes with its last object
        os.rmdir(shards)
    clip_status: dict[str, str] = {}
    failures: dict[str, str] = {}
    for clip_id, status, error in zip(*(table.column(c).to_pylist() for c in ("clip_id", "status", "error"))):
        clip_status[clip_id] = status
        if status == "error":
            failures[clip_id] = error
    images = int(sum(s == "ok" for s in table.column("status").to_pylist()))
    summary = RunSummary(
        clips=len(refs), produced=("face images", images),
        counts=status_counts(clip_status.values(), ("faceless", "skipped", "error")),
        labels={"skipped": "skipped (unlabelled)", "error": "failed"},
        seconds=time.perf_counter() - started, failures=failures)
    publish(staging, output, summary.to_dict())
    return summary


def read_manifest(folder: str | os.PathLike[str]) -> pa.Table | None:
    """The manifest of an exported face folder, or None when there is none."""
    url = storage.join(str(folder), MANIFEST_FILE)
    return read_parquet(url) if storage.exists(url) else None


__all__ = ["MANIFEST_FILE", "FaceWriter", "face_file_name", "manifest_schema",
           "read_manifest", "run_face_export"]
