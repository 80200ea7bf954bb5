"""Whether an output path can be written, checked before a job reads its first clip."""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import OutputPathError


def check_output_folder(path: str | os.PathLike[str], flag: str = "--output", *,
                        replaced_whole: bool = False) -> None:
    """Raise :class:`OutputPathError` unless ``path`` can be written as a folder.

    It must not be an existing file, nor lie under one, and this user must be able to write in
    the folder that receives it: the output itself when it exists and is written into, else its
    nearest existing parent (always the parent when ``replaced_whole``: the extraction job
    stages a sibling folder and renames it into place). The permission test is ``os.access``,
    which also reports a read-only file system; for root, permission bits do not stop a write,
    and ``os.access`` says so. A URL (``s3://...``) is left to its storage.
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
