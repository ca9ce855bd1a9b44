"""Fault trial of issue 16 (part 3, item 9): a full disk is said as "disk full" wherever the
store reads or writes, never as SQLite's "disk I/O error" or as a damaged database.

Seen on a real 100 MB tmpfs filled to the last byte: `evaluate` (a read-only open, whose
-shm file could not be made) said "disk I/O error"; `label` said the project was damaged
and advised a restore. The tests raise the same errors from the same places and report the
file system as full (the tests cannot mount a small disk)."""

from __future__ import annotations

import errno
import sqlite3
from collections import namedtuple

import numpy as np
import pytest
from fault_helpers import tiny_project

from defect_studio.errors import ProjectError
from defect_studio.project import Project, diskfull, safety
from defect_studio.project.safety import DamagedProjectError

Usage = namedtuple("Usage", "total used free")


def _io_error(name: str = "SQLITE_IOERR_SHMSIZE") -> sqlite3.OperationalError:
    e = sqlite3.OperationalError("disk I/O error")
    e.sqlite_errorname = name
    return e


@pytest.fixture
def full_disk(monkeypatch):
    monkeypatch.setattr(diskfull.shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 0))


def test_read_only_open_on_a_full_disk_says_disk_full(tmp_path, monkeypatch, full_disk):
    """What `evaluate` and `info` do first: open read-only (SQLite makes its -shm file)."""
    from defect_studio.project import store

    root = tiny_project(tmp_path / "proj")

    def no_room(db):
        raise _io_error()

    monkeypatch.setattr(store, "read_version", no_room)
    with pytest.raises(ProjectError) as info:
        Project.open(root, readonly=True)
    msg = str(info.value)
    assert f"the disk holding '{root}' is full (disk I/O error, 0 bytes free)" in msg
    assert "Free some disk space" in msg and "damaged" not in msg


def test_open_for_writing_on_a_full_disk_is_not_called_damaged(tmp_path, monkeypatch,
                                                               full_disk):
    root = tiny_project(tmp_path / "proj")
    before = (root / "project.sqlite").read_bytes()

    def no_room(db, path):
        raise _io_error("SQLITE_IOERR_WRITE")

    monkeypatch.setattr(safety, "quick_check", no_room)
    with pytest.raises(ProjectError, match="is full") as info:
        Project.open(root)
    assert not isinstance(info.value, DamagedProjectError)
    assert "restore" not in str(info.value)
    assert (root / "project.sqlite").read_bytes() == before


def test_quick_check_that_cannot_run_is_no_verdict():
    class Db:
        def execute(self, sql):
            raise _io_error()

    with pytest.raises(sqlite3.OperationalError):
        safety.quick_check(Db(), "x.sqlite")


def test_writes_on_a_full_disk_say_disk_full_and_change_nothing(tmp_path, monkeypatch,
                                                                full_disk):
    import defect_studio.io.images as imio

    root = tiny_project(tmp_path / "proj")
    with Project.open(root) as p:
        rec = next(r for r in p.images() if not r.has_mask)

        def enospc(path, array):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(imio, "write_png_atomic", enospc)
        with pytest.raises(ProjectError, match=r"is full \(No space left on device"):
            p.save_mask(rec.id, np.full((16, 16), 255, np.uint8))
        assert p.image(rec.id) == rec
        # SQLite's own "database or disk is full", from a real SQLite write
        db = p._conn()
        db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
        with pytest.raises(ProjectError, match=r"is full \(database or disk is full"):
            p.set_setting("notes", "x" * 200_000)
        assert p.get_setting("notes") is None


@pytest.mark.parametrize("exc, free, full", [
    (OSError(errno.ENOSPC, "No space left on device"), 10**9, True),
    (OSError(errno.EACCES, "Permission denied"), 0, False),
    (OSError("no errno at all"), 0, False),
    (_io_error(), 10**9, False),  # an I/O error with room to spare stays an I/O error
    (_io_error(), 4096, True),
    (sqlite3.OperationalError("database is locked"), 0, False),
    (ValueError("disk I/O error"), 0, False),
])
def test_what_counts_as_disk_full(tmp_path, monkeypatch, exc, free, full):
    monkeypatch.setattr(diskfull.shutil, "disk_usage", lambda p: Usage(10**9, 0, free))
    assert diskfull.is_disk_full(exc, tmp_path / "not" / "made" / "yet") is full
    reason = diskfull.storage_reason(exc, tmp_path)
    assert ("is full" in reason) is full


def test_restore_that_cannot_write_its_copy_leaves_the_project_as_it_was(tmp_path):
    """Seen on the full tmpfs: restore ended in "unexpected error: OperationalError: disk I/O
    error". The copy is now made before the current database is moved aside, so a copy
    that fails leaves project.sqlite where it was."""
    root = tiny_project(tmp_path / "proj")
    before = (root / "project.sqlite").read_bytes()
    (root / ".project.sqlite.restoring").mkdir()  # the copy cannot be written
    with pytest.raises(ProjectError, match="cannot restore .* the project was not changed"):
        safety.restore_backup(root)
    assert (root / "project.sqlite").read_bytes() == before
    assert not list(root.glob("project.sqlite*.damaged-*"))
    with Project.open(root, readonly=True) as p:
        assert p.counts()["images"] == 4


def test_restore_on_a_full_disk_says_disk_full(tmp_path, monkeypatch, full_disk):
    root = tiny_project(tmp_path / "proj")

    def no_room(db, path):
        raise _io_error()

    monkeypatch.setattr(safety, "quick_check", no_room)
    with pytest.raises(ProjectError, match=r"is full \(disk I/O error, 0 bytes free\); the "
                                           "project was not changed"):
        safety.restore_backup(root)
    assert (root / "project.sqlite").is_file()
