"""Publishing a job's output whole: workers write into ``<output>.incomplete-<id>/``, and only when every
clip has its row does that folder become ``<output>``, so an interrupted run never leaves a table that
looks whole.

- On a local disk the finished folder and the old ``<output>`` are exchanged in one atomic step
  (:mod:`common.stores.directory_swap`): a reader finds the old complete table or the new one, never none.
- In a bucket (``s3://``, ``gs://``), which has no rename, the shards are staged under
  ``<output>.incomplete-<id>/`` and copied under ``<output>``. ``<output>/_SUCCESS`` is removed
  first and written last, and old files are deleted only once every new one is in place: a reader
  that finds ``_SUCCESS`` reads a complete table; without it the table is being replaced (or its
  run died while replacing it) and may be a mix of old and new files.

Leftovers of runs that died (``<output>.incomplete-*``, ``<output>.old-*``) older than a day are
removed by the next run writing the same output (:func:`remove_leftovers`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from common.stores import storage
from common.stores.directory_swap import replace_directory

log = logging.getLogger(__name__)

SUMMARY_FILE = "_summary.json"  # leading underscore: pyarrow and pandas skip it when reading
SUCCESS_FILE = "_SUCCESS"
"""In a bucket: present only while ``<output>`` holds one complete table (written last, removed first)."""
LEFTOVER_AGE_S = 24 * 3600.0
"""Staging and aside folders older than this were left by a run that died: a live run touches its own."""
LEFTOVER_MARKS = (".incomplete-", ".old-")


def staging_dir(output: str | os.PathLike[str]) -> str:
    """A new staging folder (or prefix) beside ``output``, after removing day-old leftovers of dead runs."""
    remove_leftovers(output)
    if storage.is_remote(output):  # prefixes need no creating
        return f"{str(output).rstrip('/')}.incomplete-{uuid.uuid4().hex[:8]}"
    target = Path(output)
    staging = target.with_name(f"{target.name}.incomplete-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    return str(staging)


def publish(staging: str | os.PathLike[str], output: str | os.PathLike[str],
            summary: dict[str, Any] | None = None) -> str:
    """Replace ``output`` by the finished staging folder (atomically on a disk; in a bucket see the module doc)."""
    if summary is not None:
        storage.write_bytes(storage.join(staging, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True).encode())
    if storage.is_remote(output):
        return _publish_remote(str(staging), str(output))
    staging, target = Path(staging), Path(output)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file; --output must be a folder")
    aside = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:8]}")
    replace_directory(staging, target, aside)
    shutil.rmtree(aside, ignore_errors=True)
    return str(target)


def _publish_remote(staging: str, output: str) -> str:
    """Copy the staged objects under ``output`` (server side) between removing and writing ``_SUCCESS``."""
    fs, target = storage.filesystem(output)
    _, source = storage.filesystem(staging)
    target, source = target.rstrip("/"), source.rstrip("/")
    fs.invalidate_cache()
    marker = f"{target}/{SUCCESS_FILE}"
    old = set(fs.find(target)) - {marker} if fs.exists(target) else set()
    storage.remove(storage.join(output, SUCCESS_FILE))  # first: from here on the table is being replaced
    new = set()
    for path in fs.find(source):
        destination = f"{target}/{path[len(source) + 1:]}"
        fs.copy(path, destination)
        new.add(destination)
    for path in sorted(old - new):  # only once every new file is in place
        fs.rm_file(path)
    record = {"published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "files": sorted(p[len(target) + 1:] for p in new)}
    storage.write_bytes(storage.join(output, SUCCESS_FILE), json.dumps(record, indent=2).encode())  # last
    fs.rm(source, recursive=True)
    return output


def is_complete(output: str | os.PathLike[str]) -> bool:
    """Whether ``output`` holds one whole published table: on a disk, that it exists (it is swapped in
    whole); in a bucket, that its ``_SUCCESS`` marker is there (absent while it is being replaced)."""
    if storage.is_remote(output):
        return storage.exists(storage.join(output, SUCCESS_FILE))
    return os.path.isdir(output)


def remove_leftovers(output: str | os.PathLike[str], max_age_s: float = LEFTOVER_AGE_S) -> list[str]:
    """Delete ``<output>.incomplete-*`` and ``<output>.old-*`` whose newest entry is older than ``max_age_s``.

    They are what runs that died left behind; each removal is logged. Returns what was removed.
    """
    cutoff = time.time() - max_age_s
    removed = []
    for leftover, newest in _leftovers(str(output).rstrip("/")):
        if newest < cutoff:
            age_h = (time.time() - newest) / 3600
            log.info("removing %s, left by a run that did not finish (last written %.0f h ago)", leftover, age_h)
            _remove_tree(leftover)
            removed.append(leftover)
    return removed


def _is_leftover(name: str, output_name: str) -> bool:
    return any(name.startswith(f"{output_name}{mark}") for mark in LEFTOVER_MARKS)


def _leftovers(output: str) -> list[tuple[str, float]]:
    """Each leftover beside ``output`` with the time (Unix seconds) of its newest entry."""
    if storage.is_remote(output):
        return _remote_leftovers(output)
    target = Path(output).absolute()
    if not target.parent.is_dir():
        return []
    found = []
    for entry in os.scandir(target.parent):
        if not _is_leftover(entry.name, target.name):
            continue
        try:
            newest = entry.stat(follow_symlinks=False).st_mtime
            if entry.is_dir(follow_symlinks=False):
                for inner in os.scandir(entry.path):
                    newest = max(newest, inner.stat(follow_symlinks=False).st_mtime)
        except FileNotFoundError:  # removed by another run meanwhile
            continue
        found.append((entry.path, newest))
    return found


def _remote_leftovers(output: str) -> list[tuple[str, float]]:
    fs, path = storage.filesystem(output)
    protocol = output.split("://", 1)[0]
    parent, name = str(PurePosixPath(path).parent), PurePosixPath(path).name
    if parent in ("", "."):  # the output is a whole bucket: nothing can lie beside it
        return []
    try:
        entries = fs.ls(parent, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not _is_leftover(PurePosixPath(entry).name, name):
            continue
        objects = fs.find(entry, detail=True)
        if objects:
            newest = max(storage.modified_ns(info) for info in objects.values()) / 1e9
            found.append((f"{protocol}://{entry.rstrip('/')}", newest))
    return found


def _remove_tree(url: str) -> None:
    if storage.is_remote(url):
        fs, path = storage.filesystem(url)
        fs.rm(path, recursive=True)
    elif os.path.isdir(url) and not os.path.islink(url):
        shutil.rmtree(url, ignore_errors=True)
    else:
        os.unlink(url)
