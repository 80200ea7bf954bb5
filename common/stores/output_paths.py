"""Whether an output path can be written, checked before a job reads its first clip: a local folder
(:func:`check_output_folder`) or a bucket prefix (:func:`check_bucket_output`, which asks the store)."""

from __future__ import annotations

import os
from pathlib import Path

from common.stores import storage
from common.errors import OutputPathError


def check_output_folder(path: str | os.PathLike[str], flag: str = "--output", *,
                        replaced_whole: bool = False) -> None:
    """Raise :class:`OutputPathError` unless ``path`` can be written as a folder.

    It must not be an existing file, nor lie under one, and this user must be able to write in
    the folder that receives it: the output itself when it exists and is written into, else its
    nearest existing parent (always the parent when ``replaced_whole``: the extraction job
    stages a sibling folder and renames it into place). The permission test is ``os.access``,
    which also reports a read-only file system; for root, permission bits do not stop a write,
    and ``os.access`` says so. A URL (``s3://...``) is left to :func:`check_bucket_output`.
    """
    if "://" in str(path):
        return
    target = Path(path).absolute()
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{flag} {path} is an existing file; it must be a folder (or a path to create one)")
    where = target if target.exists() and not replaced_whole else target.parent
    while not where.exists():
        where = where.parent
    if not where.is_dir():
        raise OutputPathError(f"{flag} {path} cannot be created: {where} is a file, not a folder")
    if not os.access(where, os.W_OK | os.X_OK):
        raise OutputPathError(f"{flag} {path} cannot be written: no permission to write in {where} "
                              "(or its file system is read-only)")


def check_output(path: str | os.PathLike[str], flag: str = "--output", *, replaced_whole: bool = False) -> None:
    """:func:`check_output_folder` for a local path, :func:`check_bucket_output` for a URL."""
    if storage.is_remote(path):
        check_bucket_output(str(path), flag)
    else:
        check_output_folder(path, flag, replaced_whole=replaced_whole)


def check_bucket_output(url: str, flag: str = "--output") -> None:
    """Raise :class:`OutputPathError` unless ``url``'s store is supported and its bucket exists.

    One request to the store (its credentials and endpoint from the environment, as for the
    writes), so a typo in the bucket's name or a store that cannot be reached stops the job
    before its first clip rather than when it publishes.
    """
    try:
        fs, path = storage.filesystem(url)
    except (ImportError, ValueError) as exc:  # an unknown scheme, or its client is not installed
        raise OutputPathError(f"{flag} {url}: cannot write there ({exc})") from None
    bucket = path.split("/", 1)[0]
    try:
        found = fs.exists(bucket)
    except OSError as exc:  # refused credentials, a store that cannot be reached
        raise OutputPathError(f"{flag} {url}: cannot reach bucket {bucket} ({exc})") from None
    if not found:
        raise OutputPathError(f"{flag} {url}: there is no bucket {bucket!r} (buckets are not created by the jobs)")
