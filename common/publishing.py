"""Publishing a job's output whole: workers write into ``<output>.incomplete-<id>/``, and only when every
clip has its row does that folder become ``<output>``, so an interrupted run never leaves a table that
looks whole. ``<output>`` may be an object-store URL (``s3://bucket/prefix``): the shards are then
written to ``<output>.incomplete-<id>/`` in the bucket, and publishing copies them under ``<output>``
(object stores have no rename: a reader may see a mix while the copy runs, never a half file).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from common import storage

SUMMARY_FILE = "_summary.json"  # leading underscore: pyarrow and pandas skip it when reading


def staging_dir(output: str | os.PathLike[str]) -> str:
    if storage.is_remote(output):  # prefixes need no creating
        return f"{str(output).rstrip('/')}.incomplete-{uuid.uuid4().hex[:8]}"
    target = Path(output)
    staging = target.with_name(f"{target.name}.incomplete-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    return str(staging)


def publish(staging: str | os.PathLike[str], output: str | os.PathLike[str],
            summary: dict[str, Any] | None = None) -> str:
    """Atomically replace ``output`` by the finished staging folder (on a bucket: see the module doc)."""
    if storage.is_remote(output):
        return _publish_remote(str(staging), str(output), summary)
    staging, target = Path(staging), Path(output)
    if summary is not None:
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    if target.exists():
        if target.is_file():
            raise FileExistsError(f"{target} is a file; --output must be a folder")
        old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)
    return str(target)


def _publish_remote(staging: str, output: str, summary: dict[str, Any] | None) -> str:
    """Copy the staged objects under ``output`` (server side), drop what the last run left, clean up."""
    fs, target = storage.filesystem(output)
    _, source = storage.filesystem(staging)
    target, source = target.rstrip("/"), source.rstrip("/")
    if summary is not None:
        storage.write_bytes(storage.join(staging, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True).encode())
    fs.invalidate_cache()
    old = set(fs.find(target)) if fs.exists(target) else set()
    new = set()
    for path in fs.find(source):
        destination = f"{target}/{path[len(source) + 1:]}"
        fs.copy(path, destination)
        new.add(destination)
    for path in sorted(old - new):
        fs.rm_file(path)
    fs.rm(source, recursive=True)
    return output
