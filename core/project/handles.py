"""One SQLite connection per project database per process.

Why: on POSIX, closing *any* descriptor of a file drops every fcntl lock the process
holds on that file, SQLite's included. A plain open()+close() of project.sqlite (or its
-wal/-shm) in a process that has a connection to it silently unlocks that connection;
the next process that closes its own connection then believes it is the last one and
checkpoints and deletes the WAL the first connection still appends to (issue 16: labels
written afterwards went into a deleted file). SQLite itself never closes a locked
descriptor of a file it has open, so the rules here are:

- this registry knows every project database this process has a connection to, keyed by
  the file's identity (device, inode: the thing POSIX locks belong to; a symlink, a
  second path or a hard link to the same file finds the same entry);
- nothing opens such a file outside SQLite while it is registered (`holds`), and the
  plain read of a database header happens only under the registry lock, when this
  process holds no connection to that file;
- a second Project on a database this process already has open shares its connection
  (`SharedDb`) instead of opening another.

Lock order: the registry lock first, then a SharedDb's mutex; a thread that holds a
mutex never waits for the registry lock (Project.close lets go of its mutex first, and a
Project collected by the garbage collector while the registry is busy defers its
release to the registry's next use).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_registry_lock = threading.RLock()
_open: dict[tuple[int, int], SharedDb] = {}
# releases of Projects collected by the garbage collector while the registry was busy
_pending: deque = deque()

_SIDE_FILES = ("-wal", "-shm", "-journal")


class SharedDb:
    """The one connection of this process to a project database, and its users."""

    def __init__(self, key: tuple[int, int], path: Path, db: sqlite3.Connection,
                 writable: bool):
        self.key = key
        self.path = path
        self.db = db
        self.writable = writable  # opened read-write (not mode=ro)
        self.mutex = threading.RLock()  # every use of `db` holds it (the GUI reads from threads)
        self.users = 0
        self.writer = False  # a writable Project uses it now

    def __repr__(self) -> str:
        return (f"<SharedDb {str(self.path)!r} users={self.users} writer={self.writer} "
                f"{'rw' if self.writable else 'ro'}>")


def file_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of a file, None if it does not exist. A stat opens no descriptor."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@contextmanager
def registry_lock() -> Iterator[None]:
    """Held while a connection is looked up, opened, registered or released."""
    with _registry_lock:
        try:
            yield
        finally:
            _run_pending()


def lookup(db_path: str | os.PathLike) -> SharedDb | None:
    """The shared connection of this process to this database file, if any."""
    key = file_key(db_path)
    if key is None:
        return None
    with _registry_lock:
        return _open.get(key)


def holds(path: str | os.PathLike) -> bool:
    """True when this process has an SQLite connection to `path`, or `path` is the
    -wal/-shm/-journal of such a database: then it must not be opened outside SQLite."""
    text = os.fspath(path)
    candidates = [text]
    for suffix in _SIDE_FILES:
        if text.endswith(suffix):
            candidates.append(text[: -len(suffix)])
    with _registry_lock:
        if not _open:
            return False
        return any(lookup(c) is not None for c in candidates)


def register(db_path: Path, db: sqlite3.Connection, *, writable: bool) -> SharedDb:
    """Record a new connection (call under registry_lock, right after connecting)."""
    key = file_key(db_path)
    if key is None:  # cannot happen after a successful connect; keep a unique key anyway
        key = (-1, id(db))
    entry = SharedDb(key, db_path, db, writable)
    _open[key] = entry
    return entry


def open_count() -> int:
    """How many project databases this process has a connection to (for tests)."""
    with _registry_lock:
        return len(_open)


def release(entry: SharedDb, *, writer: bool) -> None:
    """One user of `entry` is done. The writer leaving a connection that views still use
    turns it query-only (the write lock goes with the writer); the last user closes it."""
    with registry_lock():
        _release_locked(entry, writer)


def release_later(entry: SharedDb, writer: bool) -> None:
    """For weakref.finalize: release now when the registry is free, else at its next use
    (the collector may run in a thread that holds a mutex the registry holder waits for)."""
    if _registry_lock.acquire(blocking=False):
        try:
            _release_locked(entry, writer)
            _run_pending()
        finally:
            _registry_lock.release()
    else:
        _pending.append((entry, writer))


def _release_locked(entry: SharedDb, writer: bool) -> None:
    entry.users -= 1
    if writer:
        entry.writer = False
    if entry.users > 0:
        if writer:
            with entry.mutex:
                try:  # the views go on reading; nothing writes through it any more
                    entry.db.execute("PRAGMA query_only = ON")
                except sqlite3.Error:
                    pass
        return
    if _open.get(entry.key) is entry:
        del _open[entry.key]
    with entry.mutex:
        try:
            entry.db.close()
        except sqlite3.Error:
            pass


def _run_pending() -> None:
    while _pending:
        try:
            entry, writer = _pending.popleft()
        except IndexError:
            return
        _release_locked(entry, writer)
