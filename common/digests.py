"""File digests that tie outputs to the exact weights and models they came from.

Kept apart from the checkpoint loaders so that reading a digest never imports torch: a night
with nothing to score still checks which model file it would have used.
"""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks so a large checkpoint is never held whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
