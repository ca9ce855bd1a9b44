"""Crash-safe file writes: a reader sees either the old file or the complete new one.

The recipe: write a temp file in the same folder (so the rename stays on one file
system), flush and fsync it, os.replace it over the target, then fsync the folder so
the rename itself is on disk. Temp files carry TEMP_MARKER in their name, so code
that lists a folder (masks, images, runs) can skip and clean up leftovers of a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TEMP_MARKER = ".dstmp-"


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_temp_name(name: str) -> bool:
    """True for the name of a temp file left by an interrupted atomic write."""
    return TEMP_MARKER in name


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename) to disk. A no-op where folders cannot be opened."""
    if os.name == "nt":  # Windows cannot open a directory for fsync; NTFS journals renames
        return
    fd = os.open(os.fspath(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(f)`` on a temp file beside `path`, then make it `path` atomically
    and durably (fsync file, rename, fsync folder); returns the path. On any error the
    temp file is removed and the old file, if any, is left as it was."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    # "." prefix keeps the temp file out of casual listings and globs like "*.png"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARKER}", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                # mkstemp makes 0600 files; project files should be readable like others
                try:
                    mode = path.stat().st_mode & 0o777
                except OSError:
                    mode = 0o644
                os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically and durably; returns the path."""
    return atomic_write(path, lambda f: f.write(data))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as pretty JSON atomically (see atomic_write_bytes)."""
    # allow_nan: metrics can be undefined (AUC of one class); Python's json reads NaN back
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=True, default=_json_default)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays show up in metrics; Paths in configs
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Delete temp files of interrupted atomic writes in `folder`; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n = 0
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and is_temp_name(entry.name):
            try:
                os.unlink(entry.path)
                n += 1
            except OSError:
                pass
    return n
