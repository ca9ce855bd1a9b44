"""Keeping a project's database safe: damage checks, rolling backups, restore, orphans.

- A project.sqlite that is empty, not an SQLite file, or fails `PRAGMA quick_check` is
  *damaged*: it is never re-initialised and never written to. The message says how to
  restore it (`defect-studio restore --project P`).
- Opening for writing keeps a rolling backup made with SQLite's online backup API in
  PROJECT/backups/ (at most one every BACKUP_EVERY_S, the newest BACKUP_KEEP kept), and
  closing a project that changed backs up its final state (at most one a minute).
- Files in images/ and masks/ that no database row points at (an import killed
  between the copy and the commit) are moved to PROJECT/orphans/ on the next open for
  writing, so a re-import reuses their names and nothing is deleted. The open says so
  (Project.orphans_message; the CLI prints it, the app shows it).
- Nothing here opens a database file outside SQLite while this process has an SQLite
  connection to it (core/project/handles.py: closing such a descriptor would drop
  SQLite's locks and let another process delete the WAL in use).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

from defect_studio.errors import ProjectError
from defect_studio.io.images import env_int
from defect_studio.project import handles

SQLITE_MAGIC = b"SQLite format 3\x00"
BACKUP_DIR = "backups"
ORPHANS_DIR = "orphans"
BACKUP_EVERY_S = env_int("DEFECT_STUDIO_BACKUP_EVERY_S", 30 * 60)
BACKUP_KEEP = env_int("DEFECT_STUDIO_BACKUP_KEEP", 5)
# closing a project that changed backs up its final state, at most once per this gap
BACKUP_CLOSE_GAP_S = env_int("DEFECT_STUDIO_BACKUP_CLOSE_GAP_S", 60)


class DamagedProjectError(ProjectError):
    """The project database is damaged; nothing was written to it."""


def damaged_message(db_path: Path, why: str) -> str:
    root = db_path.parent
    backups = list_backups(root)
    if backups:
        what = (f"restore the latest backup ({backups[-1].name}) with "
                f"`defect-studio restore --project \"{root}\"`")
    else:
        what = ("there is no backup in its backups/ folder: restore project.sqlite from your "
                "own backup, or import the images into a new project")
    return (f"project database '{db_path}' cannot be read: it is damaged ({why}). Nothing "
            f"was changed and it will not be written to; {what} (a restore keeps the damaged "
            "file beside it).")


def nothing_to_lose(root: Path) -> bool:
    """True when images/, masks/ and runs/ hold nothing: a project whose creation was cut
    short before its first table, which may be set up again safely."""
    for sub in ("images", "masks", "runs"):
        folder = Path(root) / sub
        if folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()):
            return False
    return True


def check_header(db_path: Path, *, allow_empty: bool = False) -> bool:
    """DamagedProjectError when the file is empty or not an SQLite database. With
    allow_empty, an empty file in a project that has nothing to lose is fine: returns
    True (treat as new).

    The header is read with a plain open() only while this process holds no SQLite
    connection to the file (checked under the registry lock, so no thread connects in
    between): closing that descriptor would drop the connection's locks. A file this
    process has open through SQLite is a database already: nothing to check."""
    with handles.registry_lock():
        if handles.holds(db_path):
            return False
        try:
            with open(db_path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise ProjectError(
                f"cannot read project database '{db_path}': {e.strerror or e}") from None
    if not head:
        if allow_empty and nothing_to_lose(db_path.parent):
            return True
        raise DamagedProjectError(damaged_message(db_path, "the file is empty (0 bytes)"))
    if head != SQLITE_MAGIC:
        raise DamagedProjectError(damaged_message(db_path, "it is not an SQLite database"))
    return False


def quick_check(db: sqlite3.Connection, db_path: Path) -> None:
    """DamagedProjectError unless `PRAGMA quick_check` says ok."""
    try:
        rows = db.execute("PRAGMA quick_check(5)").fetchall()
    except sqlite3.OperationalError:
        raise  # could not check (disk full, I/O error, locked): not a verdict on the file
    except sqlite3.DatabaseError as e:
        raise DamagedProjectError(damaged_message(db_path, str(e))) from None
    result = "; ".join(str(r[0]) for r in rows)
    if result != "ok":
        raise DamagedProjectError(damaged_message(db_path, f"integrity check: {result[:300]}"))


def has_tables(db: sqlite3.Connection) -> bool:
    return db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0


# --- backups ------------------------------------------------------------------------------


def list_backups(root: Path) -> list[Path]:
    """Backups of a project, oldest first."""
    folder = Path(root) / BACKUP_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("project-*.sqlite") if p.is_file())


def make_backup(db: sqlite3.Connection, root: Path, *,
                min_age_s: float | None = None) -> Path | None:
    """Copy the open database into backups/ with the online backup API, unless the newest
    backup is younger than min_age_s (default BACKUP_EVERY_S); keep the newest
    BACKUP_KEEP. Returns the new file, or None. A backup that cannot be written (disk
    full) is skipped silently: it must never stop the user from working."""
    folder = Path(root) / BACKUP_DIR
    existing = list_backups(root)
    min_age = BACKUP_EVERY_S if min_age_s is None else min_age_s
    if existing:
        try:
            if time.time() - existing[-1].stat().st_mtime < min_age:
                return None
        except OSError:
            pass
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    target = folder / f"project-{stamp}.sqlite"
    tmp = folder / f".project-{stamp}.sqlite.partial"
    try:
        folder.mkdir(exist_ok=True)
        dest = sqlite3.connect(tmp)
        try:
            db.backup(dest)
        finally:
            dest.close()
        os.replace(tmp, target)
    except (OSError, sqlite3.Error):
        try:
            tmp.unlink()
        except OSError:
            pass
        return None
    for old in list_backups(root)[:-BACKUP_KEEP]:
        try:
            old.unlink()
        except OSError:
            pass
    return target


def restore_backup(root: Path, backup: Path | None = None) -> dict:
    """Put a backup in place of project.sqlite (the caller holds the project lock).

    The current database (and its -wal/-shm files) is moved aside as
    project.sqlite.damaged-<time>, never deleted. ProjectError when there is no backup or
    the backup itself fails the integrity check."""
    root = Path(root)
    if handles.holds(root / "project.sqlite"):
        # moving the file and its -wal/-shm away under a live connection of this process
        # would leave it writing to files nobody else sees
        raise ProjectError(f"project '{root}' is open in this program; close it before "
                           "restoring a backup")
    backups = list_backups(root)
    if backup is None:
        if not backups:
            raise ProjectError(f"project '{root}' has no backups (folder {root / BACKUP_DIR})")
        backup = backups[-1]
    backup = Path(backup)
    if not backup.is_file():
        raise ProjectError(f"backup file '{backup}' does not exist")
    check_header(backup)
    db_path = root / "project.sqlite"
    tmp = root / ".project.sqlite.restoring"
    moved: list[tuple[Path, Path]] = []
    src = None
    try:
        src = sqlite3.connect(f"file:{backup.as_posix()}?mode=ro", uri=True)
        quick_check(src, backup)
        # the copy first: a copy that fails (disk full) leaves the project as it was
        dest = sqlite3.connect(tmp)
        try:
            src.backup(dest)
        finally:
            dest.close()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(db_path) + suffix)
            if p.exists():
                aside = root / f"project.sqlite{suffix}.damaged-{stamp}"
                os.replace(p, aside)
                moved.append((p, aside))
        os.replace(tmp, db_path)
    except (OSError, sqlite3.OperationalError) as e:
        from defect_studio.project.diskfull import storage_reason

        for p, aside in reversed(moved):  # put the current files back
            try:
                os.replace(aside, p)
            except OSError:
                pass
        for leftover in (tmp, Path(str(tmp) + "-journal")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass
        raise ProjectError(f"cannot restore '{backup}' into project '{root}': "
                           f"{storage_reason(e, root)}; the project was not changed") from None
    finally:
        if src is not None:
            src.close()
    return {"restored": str(backup), "kept_aside": [str(aside) for _, aside in moved]}


# --- orphans -------------------------------------------------------------------------------


def move_orphans(root: Path, db: sqlite3.Connection) -> list[str]:
    """Move files of images/ and masks/ without a database row to orphans/<time>/;
    returns their old project-relative paths."""
    return move_orphans_to(root, db)[0]


def move_orphans_to(root: Path, db: sqlite3.Connection) -> tuple[list[str], Path | None]:
    """move_orphans, and the folder they went to (None when nothing moved)."""
    root = Path(root)
    used_images = {r[0] for r in db.execute("SELECT path FROM images WHERE path LIKE 'images/%'")}
    used_masks = {f"masks/{r[0]}.png"
                  for r in db.execute("SELECT id FROM images WHERE has_mask = 1")}
    orphans: list[str] = []
    for sub, used in (("images", used_images), ("masks", used_masks)):
        folder = root / sub
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            rel = f"{sub}/{entry.name}"
            if rel not in used:
                orphans.append(rel)
    if not orphans:
        return [], None
    dest = root / ORPHANS_DIR / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    moved = []
    for rel in orphans:
        target = dest / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(root / rel), str(target))
            moved.append(rel)
        except OSError:
            pass
    return moved, (dest if moved else None)
