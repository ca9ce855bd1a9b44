"""Say "disk full" when the disk is full.

A full disk reaches the store in several disguises: ``OSError`` ENOSPC / EDQUOT from a
mask, image or lock file; SQLite's SQLITE_FULL ("database or disk is full"); and SQLite's
SQLITE_IOERR family ("disk I/O error"), which is what a reader gets when its shared-memory
file (``project.sqlite-shm``) or a journal cannot be extended. The last one names neither
the disk nor the cause, so the free space of the project's file system decides:
below LOW_SPACE_BYTES an I/O error is reported as a full disk.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

# An SQLite I/O error with less free space than this on the project's disk is a full disk.
LOW_SPACE_BYTES = 4 << 20
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def free_bytes(where: str | os.PathLike) -> int | None:
    """Free bytes (for this user) on the file system holding `where` (its nearest existing
    folder); None when that cannot be asked."""
    p = Path(where)
    for candidate in (p, *p.parents):
        try:
            if candidate.exists():
                return shutil.disk_usage(candidate).free
        except OSError:
            return None
    return None


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def is_disk_full(exc: BaseException, where: str | os.PathLike) -> bool:
    """True when `exc` (raised while writing or reading under `where`) means the disk is
    full: ENOSPC/EDQUOT, SQLITE_FULL, or an SQLite I/O error with under LOW_SPACE_BYTES
    free on that disk."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name == "SQLITE_FULL" or "database or disk is full" in text:
        return True
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        free = free_bytes(where)
        return free is not None and free < LOW_SPACE_BYTES
    return False


def storage_reason(exc: BaseException, where: str | os.PathLike) -> str:
    """The reason to show for a failed read or write under `where`: "the disk holding
    WHERE is full (the error's text, N free)" when it is, else the error's own text (its
    strerror for an OSError)."""
    own = getattr(exc, "strerror", None) or str(exc)
    if not is_disk_full(exc, where):
        return own
    free = free_bytes(where)
    left = f", {_size(free)} free" if free is not None and free < LOW_SPACE_BYTES else ""
    return f"the disk holding '{where}' is full ({own}{left})"
