"""The single-writer lock of a project folder.

An OS file lock (fcntl.flock, msvcrt on Windows) on PROJECT/project.lock. The OS
drops it when the process ends in any way, SIGKILL included, so a crashed app never
leaves a stale lock behind. The file also holds the owner's pid, for the message.
"""

from __future__ import annotations

import os
from pathlib import Path

from defect_studio.errors import ProjectError, ProjectInUseError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


_WIN_LOCK_OFFSET = 4096


class ProjectLock:
    """Exclusive, non-blocking lock on a lock file; `acquire` raises ProjectInUseError."""

    def __init__(self, path: str | os.PathLike, project: str | os.PathLike | None = None):
        self.path = Path(path)
        self.project = Path(project) if project is not None else self.path.parent
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise ProjectInUseError naming the holder's pid."""
        if self._fd is not None:
            return
        # O_CLOEXEC (Python's default) keeps child processes (training jobs) from inheriting it
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            from defect_studio.project.diskfull import is_disk_full, storage_reason

            where = self.path.parent
            advice = ("free some disk space and try again" if is_disk_full(e, where) else
                      "open it read-only or copy it to a folder you can write to")
            raise ProjectError(
                f"cannot open project '{self.project}' for writing "
                f"({storage_reason(e, where)}); {advice}"
            ) from None
        try:
            _lock(fd)
        except OSError as e:
            if fcntl is not None and not isinstance(e, BlockingIOError):
                os.close(fd)  # e.g. a network drive without lock support
                raise ProjectError(
                    f"cannot lock project '{self.project}' for writing ({e.strerror or e}); "
                    "open it read-only or copy it to a local folder"
                ) from None
            pid = _read_pid(fd)
            os.close(fd)
            if pid == os.getpid():
                where = f"already open for writing in this process (pid {pid})"
            else:
                where = f"in use by another process (pid {pid if pid else 'unknown'})"
            raise ProjectInUseError(
                f"project '{self.project}' is {where}; close it there or open read-only"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # the pid is only for the message; the lock itself is held
            pass
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent). The file stays; an unlocked file means no writer."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # Windows locks are mandatory: lock a byte past the pid so others can read it
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, 0)
        text = os.read(fd, 64).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
