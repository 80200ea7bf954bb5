"""Swap two paths in one atomic step: Linux ``renameat2(RENAME_EXCHANGE)``.

Replacing a folder by another with ``rename`` takes two steps (the old one aside, the new one in),
and between them the path does not exist; a crash there leaves only the old folder under its
aside name. ``RENAME_EXCHANGE`` exchanges two existing paths at once: every reader of the path
finds the old folder or the new one, never none. It is called through libc with ctypes, as the
standard library does not offer it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

AT_FDCWD = -100  # <fcntl.h>: paths relative to the working directory
RENAME_EXCHANGE = 1 << 1  # <linux/fs.h>
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP)
"""What a kernel without the call (ENOSYS) or a file system without the flag (EINVAL, e.g. some
network and FUSE file systems) answers."""

_renameat2: Any = None


def _libc_renameat2() -> Any:
    """libc's ``renameat2``, or None where libc has none (glibc before 2.28, musl, not Linux)."""
    global _renameat2
    if _renameat2 is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            function = libc.renameat2
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            function.restype = ctypes.c_int
            _renameat2 = function
        except (OSError, AttributeError):
            _renameat2 = False
    return _renameat2 or None


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Atomically exchange the two existing paths ``a`` and ``b``; True when done.

    False when this system cannot (no ``renameat2`` in libc, or the kernel or file system lacks
    ``RENAME_EXCHANGE``): nothing was changed and the caller must fall back. Other failures
    (a missing path, no permission) raise OSError.
    """
    function = _libc_renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), os.fspath(a), None, os.fspath(b))


def replace_directory(new: str | os.PathLike[str], target: str | os.PathLike[str],
                      aside: str | os.PathLike[str]) -> None:
    """Put folder ``new`` at ``target``; an existing ``target`` ends at ``aside`` (the caller deletes it).

    With ``RENAME_EXCHANGE`` the switch is one atomic step. Where the system lacks it, two renames:
    a reader may then find no ``target`` for an instant, and a crash between them leaves the old
    folder at ``aside`` (the next run's clean-up removes it).
    """
    if not os.path.lexists(target):
        os.rename(new, target)
        return
    if exchange(new, target):
        os.rename(new, aside)  # ``new`` now names the old folder
        return
    log.debug("renameat2(RENAME_EXCHANGE) unavailable here; replacing %s with two renames", target)
    os.rename(target, aside)
    os.rename(new, target)
