"""Local folders and object stores (``s3://``, ``gs://``) behind a few small functions, via fsspec.

Object stores are reached with the standard environment of their clients: for S3 the AWS
credentials chain, ``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL`` (MinIO, Ceph, moto...); for
GCS the Google application credentials (``gcsfs`` must then be installed). A plain path, or a
``file://`` URL, stays on the local disk and uses the operating system directly.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

COPY_BLOCK_BYTES = 8 * 2**20
"""Read size while streaming an object to a worker's temp folder: bounded memory per video."""


def is_remote(url: str | os.PathLike[str]) -> bool:
    """True for ``scheme://`` URLs other than ``file://``."""
    text = str(url)
    return "://" in text and not text.startswith("file://")


def filesystem(url: str | os.PathLike[str]) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path it understands (bucket/key for object stores)."""
    import fsspec  # imported here: local-only jobs need not pay for it

    return fsspec.core.url_to_fs(str(url))


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base/part/...`` for paths and URLs alike (never backslashes inside a URL)."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *parts])
    return str(Path(base, *parts))


def exists(url: str) -> bool:
    if not is_remote(url):
        return os.path.exists(url)
    fs, path = filesystem(url)
    return bool(fs.exists(path))


def read_bytes(url: str) -> bytes:
    if not is_remote(url):
        return Path(url).read_bytes()
    fs, path = filesystem(url)
    return bytes(fs.cat_file(path))


def write_bytes(url: str, data: bytes, *, exclusive: bool = False) -> None:
    """Write a whole small file; readers see the old content or the new, never half.

    ``exclusive``: fail with FileExistsError when the file exists. On the local disk that is
    ``O_EXCL``; on S3 a conditional PUT (``If-None-Match: *``), atomic on the server.
    """
    if is_remote(url):
        fs, path = filesystem(url)
        fs.pipe_file(path, data, mode="create" if exclusive else "overwrite")
        return
    target = Path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        # Written beside, then linked: a reader never finds the lock empty, and link() fails when it exists.
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_bytes(data)
        try:
            os.link(tmp, target)
        finally:
            tmp.unlink()
        return
    write_atomically(target, lambda tmp: tmp.write_bytes(data))


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden file beside ``path``, then rename it into place.

    Readers see the old file or the new one, never half of one; a failed write leaves nothing.
    (A plain unique name rather than ``mkstemp``, whose 0600 mode would make the file private.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove(url: str) -> None:
    """Delete a file; one already gone is not an error."""
    if not is_remote(url):
        Path(url).unlink(missing_ok=True)
        return
    fs, path = filesystem(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def list_dir(url: str) -> list[str]:
    """Names directly under a folder or prefix (files and sub-folders); empty when it does not exist."""
    if not is_remote(url):
        return sorted(os.listdir(url)) if os.path.isdir(url) else []
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    return sorted(PurePosixPath(e).name for e in entries)


def glob_files(folder: str, pattern: str) -> list[str]:
    """Files matching ``pattern`` directly in ``folder``, as URLs (or paths) like ``folder``."""
    if not is_remote(folder):
        return sorted(str(p) for p in Path(folder).glob(pattern))
    fs, path = filesystem(folder)
    protocol = str(folder).split("://", 1)[0]
    fs.invalidate_cache(path)
    return sorted(f"{protocol}://{p}" for p in fs.glob(f"{path.rstrip('/')}/{pattern}"))


@dataclass(frozen=True)
class ListedFile:
    """A file of an archive as its store lists it; ``key`` is its path relative to the archive root."""

    key: str
    url: str
    size_bytes: int
    mtime_ns: int


def list_files(root: str | os.PathLike[str], suffixes: frozenset[str]) -> list[ListedFile]:
    """Every file under ``root`` whose suffix (lower-cased) is in ``suffixes``, hidden ones skipped.

    Size and modification time come from the listing itself (``os.scandir`` here, the object
    store's LIST there): nothing is opened or downloaded just to be stat'ed. Raises
    FileNotFoundError when ``root`` does not exist.
    """
    if is_remote(root):
        return _list_remote(str(root), suffixes)
    base = Path(root).absolute()
    if base.is_file():
        stat = base.stat()
        return [ListedFile(base.name, str(base), stat.st_size, stat.st_mtime_ns)]
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no such folder")
    found: list[ListedFile] = []
    for folder, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or PurePosixPath(name).suffix.lower() not in suffixes:
                continue
            path = os.path.join(folder, name)
            try:
                stat = os.stat(path)
            except OSError:  # vanished between listing and stat: next night will see it
                continue
            found.append(ListedFile(Path(path).relative_to(base).as_posix(), path, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda f: f.key)


def _list_remote(root: str, suffixes: frozenset[str]) -> list[ListedFile]:
    fs, path = filesystem(root)
    protocol = root.split("://", 1)[0]
    base = path.rstrip("/")
    entries = fs.find(base, detail=True)
    if not entries:
        if not fs.exists(base):
            raise FileNotFoundError(f"{root}: no such bucket or prefix")
        return []
    found = []
    for name, info in entries.items():
        if info.get("type", "file") != "file":
            continue
        key = name[len(base) + 1:] if name != base else PurePosixPath(name).name
        parts = PurePosixPath(key).parts
        if PurePosixPath(key).suffix.lower() not in suffixes or any(p.startswith(".") for p in parts):
            continue
        found.append(ListedFile(key, f"{protocol}://{name}", int(info["size"]), modified_ns(info)))
    return sorted(found, key=lambda f: f.key)


def modified_ns(info: dict[str, Any]) -> int:
    """Last-modified time of an object-store listing entry (S3 ``LastModified``, GCS ``updated``)."""
    for field in ("LastModified", "updated", "mtime", "last_modified"):
        value = info.get(field)
        if value is not None:
            if isinstance(value, (int, float)):
                return int(value * 1e9)
            return int(pd.Timestamp(value).value)
    raise ValueError(f"the store's listing gives no modification time for {info.get('name')}")


@contextmanager
def local_copy(url: str) -> Iterator[str]:
    """A local path for ``url``: itself when local, else a streamed copy in the temp folder.

    The copy is written in blocks of :data:`COPY_BLOCK_BYTES` (never the whole video in
    memory) and deleted when the block exits, whatever happens inside.
    """
    if not is_remote(url):
        yield url
        return
    fs, path = filesystem(url)
    fd, tmp = tempfile.mkstemp(prefix="emotiw-", suffix=PurePosixPath(path).suffix)
    try:
        with os.fdopen(fd, "wb") as out, fs.open(path, "rb", block_size=COPY_BLOCK_BYTES) as source:
            shutil.copyfileobj(source, out, COPY_BLOCK_BYTES)
        yield tmp
    finally:
        os.unlink(tmp)
