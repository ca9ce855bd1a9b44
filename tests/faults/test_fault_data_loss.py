"""Fault matrix, "data loss" rows: export over sources, damaged databases, backups."""

from __future__ import annotations

import sqlite3

import pytest
from fault_helpers import cli, png, tiny_project

from defect_studio.errors import UserError
from defect_studio.io.exporters import export_project
from defect_studio.project import Project, safety


def test_export_into_project_folder_is_refused_and_deletes_nothing(tmp_path):
    root = tiny_project(tmp_path / "p")
    before = sorted(p.name for p in (root / "images").iterdir())
    with Project.open(root, readonly=True) as p:
        for out in (root, root / "images", root / "sub"):
            with pytest.raises(UserError, match="inside the project folder"):
                export_project(p, "coco", out)
    assert sorted(p.name for p in (root / "images").iterdir()) == before
    assert not (root / "annotations.json").exists() and not (root / "sub").exists()


def test_export_into_a_linked_source_folder_is_refused(tmp_path):
    src = tmp_path / "src"
    root = tiny_project(tmp_path / "p", copy=False, src=src / "images")
    sizes = {f.name: f.stat().st_size for f in (src / "images").iterdir()}
    r = cli("export", "--project", str(root), "--format", "coco", "--out", str(src))
    assert r.returncode == 2, r.stderr
    assert "source image" in r.stderr and "Traceback" not in r.stderr
    assert {f.name: f.stat().st_size for f in (src / "images").iterdir()} == sizes
    # an honest folder elsewhere still works
    out = tmp_path / "out"
    with Project.open(root, readonly=True) as p:
        assert export_project(p, "coco", out)["images"] == 4


@pytest.mark.parametrize("content", [b"", b"not a database at all" * 10])
def test_zero_size_or_foreign_db_is_damaged_never_reinitialised(tmp_path, content):
    root = tiny_project(tmp_path / "p")
    (root / "project.sqlite").write_bytes(content)
    for f in ("project.sqlite-wal", "project.sqlite-shm"):
        (root / f).unlink(missing_ok=True)
    for ro in (False, True):
        with pytest.raises(safety.DamagedProjectError, match="damaged"):
            Project.open(root, readonly=ro)
    with pytest.raises(safety.DamagedProjectError):
        Project.open_or_create(root)
    r = cli("label", "--project", str(root), "--label", "ok", "img0.png")
    assert r.returncode == 2 and "damaged" in r.stderr and "restore" in r.stderr
    assert "Traceback" not in r.stderr
    assert (root / "project.sqlite").read_bytes() == content  # untouched
    assert len(list((root / "images").iterdir())) == 4  # images not orphaned or moved


def test_interrupted_create_with_nothing_in_it_may_start_again(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "project.sqlite").write_bytes(b"")
    with Project.open_or_create(root) as p:
        assert p.counts()["images"] == 0


def _corrupt_page(db_path, page: int) -> None:
    data = bytearray(db_path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    start = page_size * (page - 1)
    data[start:start + page_size] = b"\xa5" * page_size
    db_path.write_bytes(bytes(data))


def _checkpoint(root):
    db = sqlite3.connect(root / "project.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()


def test_damaged_index_is_detected_before_any_write(tmp_path):
    root = tiny_project(tmp_path / "p")
    _checkpoint(root)
    db = sqlite3.connect(root / "project.sqlite")
    rootpage = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name='images_hash'").fetchone()[0]
    db.close()
    _corrupt_page(root / "project.sqlite", rootpage)
    before = (root / "project.sqlite").read_bytes()
    src = tmp_path / "more"
    src.mkdir()
    png(src / "img0.png", seed=0)  # same content as an image already in the project
    r = cli("import", str(src), "--project", str(root))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "damaged" in r.stderr and "Traceback" not in r.stderr
    assert (root / "project.sqlite").read_bytes() == before


def test_damaged_page_on_read_is_a_message_not_a_traceback(tmp_path):
    root = tiny_project(tmp_path / "p")
    _checkpoint(root)
    db = sqlite3.connect(root / "project.sqlite")
    rootpage = db.execute("SELECT rootpage FROM sqlite_master WHERE name='images'").fetchone()[0]
    db.close()
    _corrupt_page(root / "project.sqlite", rootpage)
    r = cli("info", "--project", str(root))
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr


def test_rolling_backup_and_restore(tmp_path, monkeypatch):
    root = tiny_project(tmp_path / "p")
    backups = safety.list_backups(root)
    assert len(backups) == 1  # the final state, made when the new project was closed
    db = sqlite3.connect(backups[0])
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 4
    db.close()
    # at most one per BACKUP_EVERY_S on open; none on a close without changes
    Project.open(root).close()
    assert safety.list_backups(root) == backups
    # and the newest BACKUP_KEEP are kept
    monkeypatch.setattr(safety, "BACKUP_EVERY_S", 0)
    monkeypatch.setattr(safety, "BACKUP_KEEP", 2)
    for _ in range(3):
        Project.open(root).close()
    assert len(safety.list_backups(root)) == 2
    # damage the database, then restore from the CLI
    (root / "project.sqlite").write_bytes(b"")
    r = cli("restore", "--project", str(root))
    assert r.returncode == 0, r.stderr
    assert "restored" in r.stdout and "images" in r.stdout
    with Project.open(root) as p:
        assert p.counts()["images"] == 4
    aside = list(root.glob("project.sqlite.damaged-*"))
    assert aside and aside[0].read_bytes() == b""  # the damaged file is kept, not deleted


def test_restore_refuses_a_damaged_backup(tmp_path):
    root = tiny_project(tmp_path / "p")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"garbage" * 100)
    r = cli("restore", "--project", str(root), "--backup", str(bad))
    assert r.returncode == 2 and "damaged" in r.stderr
    with Project.open(root) as p:  # the project was left as it was
        assert p.counts()["images"] == 4


def test_restore_while_open_for_writing_is_refused(tmp_path):
    root = tiny_project(tmp_path / "p")
    with Project.open(root):
        r = cli("restore", "--project", str(root))
    assert r.returncode == 2 and "in use" in r.stderr


@pytest.mark.parametrize("backup", ["missing.sqlite", "/dev/zero", "."])
def test_restore_refuses_hostile_backup_arguments(tmp_path, backup):
    root = tiny_project(tmp_path / "p")
    r = cli("restore", "--project", str(root), "--backup", str(tmp_path / backup)
            if not backup.startswith("/") else backup)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    with Project.open(root) as p:
        assert p.counts()["images"] == 4


@pytest.mark.usefixtures("isolated_qsettings")
def test_app_opening_a_zero_size_database_says_damaged_and_keeps_it(tmp_path, qtbot, dialogs):
    from defect_studio.app.shell.window import MainWindow

    root = tiny_project(tmp_path / "p")
    (root / "project.sqlite").write_bytes(b"")
    for f in ("project.sqlite-wal", "project.sqlite-shm"):
        (root / f).unlink(missing_ok=True)
    win = MainWindow()
    qtbot.addWidget(win)
    assert not win.open_project(root)
    assert dialogs and "damaged" in dialogs[-1][1] and "defect-studio restore" in dialogs[-1][1]
    assert (root / "project.sqlite").stat().st_size == 0  # not re-initialised
    win.close()
