"""The project store: images, labels, masks, splits, settings and predictions.

A project is a folder (see docs/ARCHITECTURE.md, "Project on disk"): an SQLite
database in WAL mode plus masks/, images/, runs/ and cache/. One process at a time
opens it for writing (an OS lock on project.lock); any number may open it read-only
at the same time, e.g. the training process while the GUI is open. Within one process
there is one SQLite connection per project: a read-only open of a project the process
has open already is a view of that connection (core/project/handles.py explains why).

Durability: every call that returns has its change on disk. Masks are written to a
temp file, fsynced and renamed before the database row that points at them is
committed; multi-row changes are single transactions.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import numpy as np

from defect_studio import notices
from defect_studio.errors import ImageReadError, MaskError, ProjectError
from defect_studio.io import images as imio
from defect_studio.io.atomic import atomic_write_bytes, remove_stale_temps
from defect_studio.project import diskfull, handles, safety
from defect_studio.project import runs as runs_mod
from defect_studio.project.boxes import BoxesMixin
from defect_studio.project.lock import ProjectLock
from defect_studio.project.records import COLUMNS as _COLUMNS
from defect_studio.project.records import ImageRecord
from defect_studio.project.records import record_from_row as _record
from defect_studio.project.runs import RunInfo
from defect_studio.project.schema import SCHEMA_VERSION, check_version, migrate, read_version
from defect_studio.project.splits import normalise_ratios, plan_splits

LABELS = ("unlabeled", "ok", "defective")
LABEL_SOURCES = ("import", "user", "prediction")  # "prediction" = an accepted model decision
SPLITS = ("train", "val", "test")

DB_NAME = "project.sqlite"
LOCK_NAME = "project.lock"
ACTIVE_RUN_KEY = "active_run"


def is_project(root: str | os.PathLike) -> bool:
    """True when `root` is a folder with a project database."""
    return (Path(root) / DB_NAME).is_file()


def _check_choice(value: object, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ProjectError(f"unknown {what} {value!r}; use one of {', '.join(choices)}")


def _release_handles(shared: handles.SharedDb, lock: ProjectLock | None,
                     writer: bool) -> None:
    # weakref.finalize of a Project (close() runs it too): its share of the connection,
    # then its write lock, so a Project dropped without close() frees both
    try:
        handles.release_later(shared, writer)
    finally:
        if lock is not None:
            lock.release()


def _raise_database_error(e: BaseException, db_path: Path) -> None:
    """Turn SQLite's errors while opening into ProjectError / DamagedProjectError (a full
    disk said as such, not as "disk I/O error")."""
    if isinstance(e, (sqlite3.OperationalError, OSError)) and \
            diskfull.is_disk_full(e, db_path.parent):
        raise ProjectError(f"project database '{db_path}' cannot be opened: "
                           f"{diskfull.storage_reason(e, db_path.parent)}. Free some disk "
                           "space and try again") from None
    if isinstance(e, sqlite3.OperationalError):
        raise ProjectError(f"project database '{db_path}' cannot be opened: {e}") from None
    if isinstance(e, sqlite3.DatabaseError):
        raise safety.DamagedProjectError(safety.damaged_message(db_path, str(e))) from None


class Project(BoxesMixin):
    """An open project folder. Use Project.create / open / open_or_create, then close()
    (or a `with` block)."""

    def __init__(self, root: Path, shared: handles.SharedDb, lock: ProjectLock | None,
                 readonly: bool):
        # internal: use the class methods
        self.root = root
        self.db_path = root / DB_NAME
        self.images_dir = root / "images"
        self.masks_dir = root / "masks"
        self.runs_dir = root / "runs"
        self.cache_dir = root / "cache"
        self.readonly = readonly
        self._shared = shared  # this process's one connection to the database
        self._closed = False
        self._lock = lock
        self._mutex = shared.mutex  # the GUI reads from worker threads too
        self._tx_depth = 0
        self._taken_names: set[str] | None = None  # lower-case names in images/
        self._new_files: list[Path] = []  # copies made in the open transaction
        self._after_commit: list[Path] = []  # files to delete once the transaction is in
        self._finalizer = weakref.finalize(self, _release_handles, shared, lock, not readonly)
        self.orphans_moved: list[str] = []  # set by open-for-writing (safety.move_orphans)
        self.orphans_dir: Path | None = None  # where they went (PROJECT/orphans/<time>)
        self._changes_at_open = 0  # db.total_changes after opening: close() backs up changes

    @property
    def _db(self) -> sqlite3.Connection | None:
        return None if self._closed else self._shared.db

    @property
    def orphans_message(self) -> str | None:
        """One line saying which files this open moved to orphans/, None if none."""
        if not self.orphans_moved:
            return None
        n = len(self.orphans_moved)
        where = self.orphans_dir or (self.root / safety.ORPHANS_DIR)
        shown = ", ".join(self.orphans_moved[:3]) + (f" and {n - 3} more" if n > 3 else "")
        return (f"moved {n} file{'s' if n != 1 else ''} that no image of project "
                f"'{self.root.name}' uses ({shown}; left by an import that was cut short) "
                f"to {where}; nothing was deleted")

    # --- opening and closing ---------------------------------------------------------

    @classmethod
    def create(cls, root: str | os.PathLike, *, exist_ok: bool = False) -> Project:
        """Make a new project in `root` (created if missing) and open it for writing."""
        root = Path(root).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise ProjectError(f"cannot create a project at '{root}': it is a file")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProjectError(f"cannot create project folder '{root}': "
                               f"{diskfull.storage_reason(e, root)}") from None
        lock = ProjectLock(root / LOCK_NAME, root)
        lock.acquire()
        try:
            exists = (root / DB_NAME).exists()
            if exists and not exist_ok:
                raise ProjectError(
                    f"'{root}' is already a Defect Studio project; open it instead"
                )
            project = cls._connect(root, lock, readonly=False, new=not exists)
        except BaseException:
            lock.release()
            raise
        if project.get_setting("created") is None:
            project.set_setting(
                "created", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            )
        return project

    @classmethod
    def open(cls, root: str | os.PathLike, *, readonly: bool = False) -> Project:
        """Open an existing project.

        ProjectError if `root` is not a project (or is damaged, or of a newer schema);
        ProjectInUseError when readonly=False and another process has it open for
        writing. Read-only opens take no lock and work while a writer is active; in a
        process that has the project open already they share its connection.
        """
        root = Path(root).expanduser().absolute()
        if not root.is_dir():
            raise ProjectError(f"project folder '{root}' does not exist")
        if not (root / DB_NAME).is_file():
            raise ProjectError(
                f"'{root}' is not a Defect Studio project (no {DB_NAME} in it); "
                "create one with `defect-studio import` or `defect-studio demo`"
            )
        if readonly:
            return cls._connect(root, None, readonly=True)
        lock = ProjectLock(root / LOCK_NAME, root)
        lock.acquire()
        try:
            return cls._connect(root, lock, readonly=False)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> Project:
        """Open the project in `root` for writing, creating it if there is none."""
        if is_project(root):
            return cls.open(root)
        return cls.create(root, exist_ok=True)

    @classmethod
    def _connect(cls, root: Path, lock: ProjectLock | None, readonly: bool,
                 new: bool = False) -> Project:
        db_path = root / DB_NAME
        with handles.registry_lock():
            shared = handles.lookup(db_path)
            if readonly and shared is not None:
                # this process has it open already: a read-only view of that connection
                shared.users += 1
                return cls(root, shared, None, readonly=True)
            if shared is None and not new:
                # an empty or foreign file is damaged, never a new project. The plain
                # read is safe only here: this process holds no connection to the file
                # (a registered one would lose its locks when the descriptor closes)
                new = safety.check_header(db_path, allow_empty=not readonly)
            if readonly:
                db = cls._connect_readonly(root, db_path)
                shared = handles.register(db_path, db, writable=False)
            else:
                shared = cls._connect_writer(root, db_path, shared, new)
            shared.users += 1
            shared.writer = shared.writer or not readonly
            project = cls(root, shared, lock, readonly)
            if not readonly:
                try:
                    with shared.mutex:
                        project._prepare_writer(new)
                except BaseException as e:
                    project._finalizer.detach()
                    handles.release(shared, writer=True)
                    if isinstance(e, (OSError, sqlite3.OperationalError)):
                        raise ProjectError(f"cannot open project '{root}' for writing: "
                                           f"{diskfull.storage_reason(e, root)}") from None
                    raise
        if project.orphans_moved:
            notices.tell(project.orphans_message)
        return project

    @staticmethod
    def _connect_readonly(root: Path, db_path: Path) -> sqlite3.Connection:
        db = None
        try:
            uri = f"file:{quote(db_path.as_posix())}?mode=ro"
            if not os.access(root, os.W_OK) and not (root / (DB_NAME + "-wal")).exists():
                # read-only media: WAL readers cannot create their -shm file; nobody
                # can write there either, so the file may be treated as immutable
                uri += "&immutable=1"
            db = sqlite3.connect(uri, uri=True, isolation_level=None,
                                 check_same_thread=False, timeout=30)
            db.execute("PRAGMA query_only = ON")
            version = read_version(db)
            check_version(version, db_path)
            if version < SCHEMA_VERSION:
                raise ProjectError(
                    f"project '{root}' has an older format (schema {version}); "
                    "open it once for writing (in the app) to upgrade it"
                )
            db.execute("PRAGMA foreign_keys = ON")
        except BaseException as e:
            if db is not None:
                db.close()
            _raise_database_error(e, db_path)
            raise
        return db

    @staticmethod
    def _setup_writer_db(db: sqlite3.Connection, root: Path, db_path: Path,
                         new: bool) -> None:
        if not new:  # checked before anything (even the journal mode) is written
            safety.quick_check(db, db_path)
            if not safety.has_tables(db) and not safety.nothing_to_lose(root):
                raise safety.DamagedProjectError(
                    safety.damaged_message(db_path, "it holds no tables"))
        db.execute("PRAGMA journal_mode = WAL")
        # FULL, not NORMAL: with WAL, NORMAL already survives a killed process
        # (SIGKILL, crash), but can lose the last commits on power loss or an OS
        # crash. A label the user saw saved must stay saved, and a commit here is
        # one key press, so one fsync per commit costs nothing noticeable.
        db.execute("PRAGMA synchronous = FULL")
        migrate(db, db_path)
        db.execute("PRAGMA foreign_keys = ON")

    @classmethod
    def _connect_writer(cls, root: Path, db_path: Path, shared: handles.SharedDb | None,
                        new: bool) -> handles.SharedDb:
        """The writer's connection (under the registry lock): a new one; the read-write
        connection of this process's views (left by a writer that closed); or a new one
        that replaces the read-only connection of the views."""
        if shared is not None and shared.writable:
            with shared.mutex:
                try:
                    shared.db.execute("PRAGMA query_only = OFF")
                    cls._setup_writer_db(shared.db, root, db_path, new)
                except BaseException as e:
                    try:
                        shared.db.execute("PRAGMA query_only = ON")
                    except sqlite3.Error:
                        pass
                    _raise_database_error(e, db_path)
                    raise
            return shared
        db = None
        try:
            db = sqlite3.connect(db_path, isolation_level=None,
                                 check_same_thread=False, timeout=30)
            cls._setup_writer_db(db, root, db_path, new)
        except BaseException as e:
            if db is not None:
                db.close()
            _raise_database_error(e, db_path)
            raise
        if shared is None:
            return handles.register(db_path, db, writable=True)
        with shared.mutex:  # the views move to the read-write connection
            old, shared.db, shared.writable = shared.db, db, True
            try:
                old.close()
            except sqlite3.Error:
                pass
        return shared

    def _prepare_writer(self, new: bool) -> None:
        db = self._conn()
        for d in (self.images_dir, self.masks_dir, self.runs_dir, self.cache_dir):
            d.mkdir(exist_ok=True)
        # leftovers of writes cut short by a crash; never mistaken for masks/images
        remove_stale_temps(self.masks_dir)
        remove_stale_temps(self.images_dir)
        # copies of an import killed before its commit: moved aside, never deleted,
        # and said (orphans_message; the CLI and the app show it)
        self.orphans_moved, self.orphans_dir = safety.move_orphans_to(self.root, db)
        if not new:  # the state before this session's changes
            safety.make_backup(db, self.root)
        self._changes_at_open = db.total_changes

    def close(self) -> None:
        """Close the project (idempotent): release the write lock, and the database
        connection unless another Project of this process (a read-only view) still
        uses it. A writable project that changed since it was opened leaves a backup of
        its final state."""
        with self._mutex:
            if self._closed:
                return
            db = self._shared.db
            if not self.readonly and db.total_changes > self._changes_at_open:
                safety.make_backup(db, self.root, min_age_s=safety.BACKUP_CLOSE_GAP_S)
            self._closed = True
        # outside the mutex: the registry lock comes first (core/project/handles.py)
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "writable"
        return f"<Project {str(self.root)!r} {mode}{' closed' if self.closed else ''}>"

    # --- internals -------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise ProjectError(f"project '{self.root}' is closed")
        return self._db

    def _require_writable(self) -> None:
        if self.readonly:
            raise ProjectError(
                f"project '{self.root}' is open read-only; close it in the other program "
                "and open it for writing to change it"
            )
        self._conn()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Nested uses (inside batch()) become savepoints, so a call
        that fails inside a batch undoes its own changes and the batch can go on.
        Image copies made inside a transaction that is undone are deleted again."""
        self._require_writable()
        with self._mutex:
            db = self._conn()
            outer = self._tx_depth == 0
            name = f"sp{self._tx_depth}"
            mark, after_mark = len(self._new_files), len(self._after_commit)
            db.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {name}")
            self._tx_depth += 1
            try:
                try:
                    yield db
                finally:
                    self._tx_depth -= 1
                db.execute("COMMIT" if outer else f"RELEASE {name}")
            except BaseException as exc:
                if db.in_transaction:  # SQLite may have rolled back by itself (disk full)
                    if outer:
                        db.execute("ROLLBACK")
                    else:
                        db.execute(f"ROLLBACK TO {name}")
                        db.execute(f"RELEASE {name}")
                self._discard_new_files(mark)
                del self._after_commit[after_mark:]
                if isinstance(exc, sqlite3.DatabaseError) and \
                        not isinstance(exc, sqlite3.OperationalError):
                    raise safety.DamagedProjectError(
                        safety.damaged_message(self.db_path, str(exc))) from exc
                if outer and isinstance(exc, (OSError, sqlite3.OperationalError)):
                    # disk full, folder not writable...: a message, and nothing half-saved
                    reason = diskfull.storage_reason(exc, self.root)
                    raise ProjectError(
                        f"cannot save to project '{self.root}': {reason}; nothing was changed"
                    ) from exc
                raise
            else:
                if outer:
                    for path in self._after_commit:
                        try:
                            path.unlink(missing_ok=True)
                        except OSError:  # an unused file left behind; the change is in
                            pass
            finally:
                if outer:
                    self._new_files.clear()
                    self._after_commit.clear()

    def _discard_new_files(self, mark: int) -> None:
        for path in self._new_files[mark:]:
            try:
                path.unlink()
            except OSError:
                pass
            if self._taken_names is not None and path.parent == self.images_dir:
                self._taken_names.discard(path.name.lower())
        del self._new_files[mark:]

    @contextmanager
    def batch(self) -> Iterator[Project]:
        """Group many writes (an import) into one transaction: much faster, and all or
        nothing. If the block raises, image copies and masks of images added in it are
        deleted again; a call that fails inside it (caught there) undoes only itself."""
        with self._tx():
            yield self

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn SQLite's "malformed" errors into DamagedProjectError (what to do)."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError):
                if diskfull.is_disk_full(e, self.root):
                    raise ProjectError(f"cannot read project '{self.root}': "
                                       f"{diskfull.storage_reason(e, self.root)}. Free some "
                                       "disk space and try again") from None
                raise
            raise safety.DamagedProjectError(
                safety.damaged_message(self.db_path, str(e))) from None

    def _query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._mutex, self._reading():
            return self._conn().execute(sql, tuple(params)).fetchall()

    # --- images ----------------------------------------------------------------------

    def add_image(
        self,
        src: str | os.PathLike,
        *,
        copy: bool = True,
        label: str = "unlabeled",
        source: str = "import",
        split: str | None = None,
        mask: np.ndarray | None = None,
        mask_rough: bool = False,
    ) -> ImageRecord:
        """Add an image file. See docs/ARCHITECTURE.md.

        copy=True copies the file into images/ under a unique name; copy=False keeps an
        absolute reference. A file already inside the project folder is recorded where
        it is (relative path), never copied. The same content (sha1) imported twice
        returns the existing record unchanged. A given split is pinned. A mask with any
        defect pixel makes the label "defective".
        """
        self._require_writable()
        _check_choice(label, LABELS, "label")
        _check_choice(source, LABEL_SOURCES, "label source")
        if split is not None:
            _check_choice(split, SPLITS, "split")
        src = Path(src)
        if handles.holds(src):  # reading it would close a descriptor SQLite's locks are on
            raise ProjectError(f"'{src}' is a project database (open in this program), "
                               "not an image")
        data = imio.read_bytes(src)
        img = imio.decode_image(data, str(src))
        meta = imio.meta_of(img)
        defect = None
        if mask is not None:
            defect = self._as_defect_mask(mask, meta.height, meta.width, f"mask for '{src}'")
        digest = hashlib.sha1(data).hexdigest()
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM images WHERE hash = ?",
                             (digest,)).fetchone()
            if row is not None:
                return _record(row)
            rel = self._relative(src)
            if rel is not None:
                path = rel
            elif copy:
                path = self._copy_in(src, data)
            else:
                path = src.expanduser().resolve().as_posix()
            if db.execute("SELECT 1 FROM images WHERE path = ?", (path,)).fetchone():
                raise ProjectError(
                    f"'{path}' is already in the project with different content (the file "
                    "changed since it was imported)"
                )
            if defect is not None and defect.any():
                label = "defective"
            cur = db.execute(
                "INSERT INTO images (path, hash, width, height, channels, bit_depth, split, "
                "split_pinned, label, label_source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, digest, meta.width, meta.height, meta.channels, meta.bit_depth, split,
                 int(split is not None), label, source),
            )
            image_id = int(cur.lastrowid)
            if defect is not None:
                # the id of a row that is rolled back is handed out again: drop its mask
                self._new_files.append(self.mask_path(image_id))
                self._write_mask(db, image_id, defect, mask_rough, source)
            row = db.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?",
                             (image_id,)).fetchone()
        return _record(row)

    def _relative(self, src: Path) -> str | None:
        """Posix path of `src` relative to the project root, None if outside it."""
        try:
            return src.expanduser().resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return None

    def _copy_in(self, src: Path, data: bytes) -> str:
        self.images_dir.mkdir(exist_ok=True)
        if self._taken_names is None:  # listed once: only this process writes images/
            self._taken_names = {p.lower() for p in os.listdir(self.images_dir)}
        stem, suffix = src.stem or "image", src.suffix.lower() or ".png"
        n = 0
        name = f"{stem}{suffix}"
        # case-insensitive: a project copied to Windows/macOS must keep distinct names
        while name.lower() in self._taken_names or self._query(
            "SELECT 1 FROM images WHERE path = ?", (f"images/{name}",)
        ):
            n += 1
            name = f"{stem}_{n}{suffix}"
        atomic_write_bytes(self.images_dir / name, data)
        self._taken_names.add(name.lower())
        self._new_files.append(self.images_dir / name)
        return f"images/{name}"

    def image(self, image_id: int) -> ImageRecord:
        """The record of an image; ProjectError if there is none with that id."""
        rows = self._query(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (int(image_id),))
        if not rows:
            raise ProjectError(f"there is no image with id {image_id} in this project")
        return _record(rows[0])

    def images(self, *, split: str | None = None, label: str | None = None,
               has_mask: bool | None = None) -> list[ImageRecord]:
        """Images ordered by id, optionally filtered (None = any)."""
        where, params = [], []
        if split is not None:
            _check_choice(split, SPLITS, "split")
            where.append("split = ?")
            params.append(split)
        if label is not None:
            _check_choice(label, LABELS, "label")
            where.append("label = ?")
            params.append(label)
        if has_mask is not None:
            where.append("has_mask = ?")
            params.append(int(bool(has_mask)))
        sql = f"SELECT {_COLUMNS} FROM images"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_record(r) for r in self._query(sql + " ORDER BY id", params)]

    def find_image(self, path_or_name: str | os.PathLike) -> ImageRecord | None:
        """The image stored at this path, or None.

        A path (project-relative or absolute, with a folder in it) matches only the image
        stored at exactly that file. A bare file name matches the one image of that name;
        ProjectError when several images share it.
        """
        text = os.fspath(path_or_name)
        posix = text.replace("\\", "/")
        rows = self._query(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (posix,))
        if rows:
            return _record(rows[0])
        p = Path(text).expanduser()
        if p.is_absolute() or "/" in posix:
            full = p if p.is_absolute() else self.root / p
            rel = self._relative(full)
            key = rel if rel is not None else full.resolve().as_posix()
            rows = self._query(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (key,))
            if not rows and not p.is_absolute():  # relative to the working folder
                rel = self._relative(p)
                key = rel if rel is not None else p.resolve().as_posix()
                rows = self._query(f"SELECT {_COLUMNS} FROM images WHERE path = ?", (key,))
            return _record(rows[0]) if rows else None
        pattern = "%/" + posix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            f"SELECT {_COLUMNS} FROM images WHERE path LIKE ? ESCAPE '\\' ORDER BY id",
            (pattern,))
        rows = [r for r in rows if PurePosixPath(r[1]).name == posix]  # LIKE ignores case
        if len(rows) > 1:
            raise ProjectError(
                f"the name '{posix}' matches {len(rows)} images (ids "
                f"{', '.join(str(r[0]) for r in rows[:10])}); give the path or the id"
            )
        return _record(rows[0]) if rows else None

    def image_path(self, rec: ImageRecord) -> Path:
        """Absolute path of the image file."""
        p = Path(rec.path)
        return p if p.is_absolute() else self.root / rec.path

    def read_image(self, rec: ImageRecord) -> np.ndarray:
        """The image's pixels (defect_studio.io.images.read_image); ImageReadError if unreadable."""
        return imio.read_image(self.image_path(rec))

    # --- labels ----------------------------------------------------------------------

    def set_label(self, image_id: int, label: str, source: str = "user") -> ImageRecord:
        """Set an image-level label; returns the updated record."""
        self.set_labels([(image_id, label)], source=source)
        return self.image(image_id)

    def set_labels(self, items: list[tuple[int, str]], source: str = "user") -> None:
        """Set many labels in one transaction (all or none).

        A mask with defect pixels means "defective": labelling such an image otherwise
        is refused (ProjectError) until the mask is deleted, so labels and masks never
        contradict each other.
        """
        _check_choice(source, LABEL_SOURCES, "label source")
        items = [(int(i), lab) for i, lab in items]
        for _, lab in items:
            _check_choice(lab, LABELS, "label")
        with self._tx() as db:
            for image_id, lab in items:
                row = db.execute("SELECT mask_pixels, has_mask, path FROM images WHERE id = ?",
                                 (image_id,)).fetchone()
                if row is None:
                    raise ProjectError(f"there is no image with id {image_id} in this project")
                if row[0] > 0 and lab != "defective":
                    raise ProjectError(
                        f"'{PurePosixPath(row[2]).name}' (image {image_id}) has a defect mask, "
                        f"so it cannot be labelled '{lab}'; delete its mask first"
                    )
                if row[1] and row[0] == 0 and lab == "defective":
                    # a clean (all-zero) mask says "no defect anywhere": it cannot stay
                    # on a defective image, where it would train as a defect-free part
                    self._drop_mask(db, image_id)

                if lab != "defective" and self._has_boxes(db, image_id):
                    raise ProjectError(f"'{PurePosixPath(row[2]).name}' (image {image_id}) has "
                                       f"defect boxes, so it cannot be labelled '{lab}'; "
                                       "delete its boxes first")
            db.executemany(
                "UPDATE images SET label = ?, label_source = ? WHERE id = ?",
                [(lab, source, image_id) for image_id, lab in items],
            )

    # --- masks -----------------------------------------------------------------------

    def mask_path(self, image_id: int) -> Path:
        """Where the mask of an image is (or would be) stored."""
        return self.masks_dir / f"{int(image_id)}.png"

    @staticmethod
    def _as_defect_mask(mask: np.ndarray, height: int, width: int, what: str) -> np.ndarray:
        m = np.asarray(mask)
        if m.ndim == 3 and m.shape[2] == 1:
            m = m[:, :, 0]
        imio.check_mask_shape(m, (height, width), what=what)
        return m != 0

    def _write_mask(self, db: sqlite3.Connection, image_id: int, defect: np.ndarray,
                    rough: bool, source: str) -> None:
        path = self.mask_path(image_id)
        # a delete_mask earlier in this batch must not remove the new file at commit
        self._after_commit = [p for p in self._after_commit if p != path]
        # the file first: a committed row must never point at a missing or partial PNG
        pixels = int(np.count_nonzero(defect))
        if not pixels:
            label = db.execute("SELECT label FROM images WHERE id = ?", (image_id,)).fetchone()
            if label is not None and label[0] == "defective":
                # clearing the mask of a defective image deletes it: an empty mask there
                # would say "no defect anywhere" and contradict the label
                self._drop_mask(db, image_id)
                return
        imio.write_png_atomic(path, defect.astype(np.uint8) * 255)
        db.execute(
            "UPDATE images SET has_mask = 1, mask_rough = ?, mask_pixels = ? WHERE id = ?",
            (int(bool(rough)), pixels, image_id),
        )
        if pixels:
            db.execute(
                "UPDATE images SET label = 'defective', label_source = ? WHERE id = ?",
                (source, image_id),
            )

    def save_mask(self, image_id: int, mask: np.ndarray, *, rough: bool = False,
                  source: str = "user") -> ImageRecord:
        """Store the pixel mask of an image (nonzero = defect); returns the updated record.

        MaskError unless the mask is HxW of the image's size. Any defect pixel sets the
        label "defective"; an all-zero mask keeps the label (a "clean" mask) except on a
        defective image, where it deletes the mask (labels and masks never contradict).
        """
        _check_choice(source, LABEL_SOURCES, "label source")
        rec = self.image(image_id)
        defect = self._as_defect_mask(mask, rec.height, rec.width,
                                      f"mask for image {rec.id} ('{rec.name}')")
        with self._tx() as db:
            self._write_mask(db, rec.id, defect, rough, source)
        return self.image(image_id)

    def load_mask(self, image_id: int) -> np.ndarray | None:
        """The mask as uint8 HxW (0 / 255), None if the image has none."""
        rec = self.image(image_id)
        if not rec.has_mask:
            return None
        path = self.mask_path(rec.id)
        try:
            m = imio.read_image(path)
        except ImageReadError as e:
            raise MaskError(
                f"the mask of image {rec.id} ('{rec.name}') cannot be read ({e}); "
                "paint it again or delete it"
            ) from None
        if m.ndim == 3:
            m = m.max(axis=2)
        imio.check_mask_shape(m, (rec.height, rec.width), what=f"mask file '{path}'")
        return np.where(m > 0, 255, 0).astype(np.uint8)

    def delete_mask(self, image_id: int) -> ImageRecord:
        """Remove an image's mask (its label stays); returns the updated record."""
        rec = self.image(image_id)
        with self._tx() as db:
            self._drop_mask(db, rec.id)
        return self.image(image_id)

    def _drop_mask(self, db: sqlite3.Connection, image_id: int) -> None:
        db.execute(
            "UPDATE images SET has_mask = 0, mask_rough = 0, mask_pixels = 0 WHERE id = ?",
            (image_id,),
        )
        # the file goes after the commit (of the whole batch, inside one): a crash in
        # between leaves an unused file, never a row pointing at a missing one
        path = self.mask_path(image_id)
        if path not in self._after_commit:
            self._after_commit.append(path)

    # --- splits ----------------------------------------------------------------------

    def set_split(self, image_id: int, split: str | None, *, pinned: bool = True) -> ImageRecord:
        """Put an image in a split by hand (pinned: re-splitting leaves it there)."""
        if split is not None:
            _check_choice(split, SPLITS, "split")
        rec = self.image(image_id)
        with self._tx() as db:
            db.execute("UPDATE images SET split = ?, split_pinned = ? WHERE id = ?",
                       (split, int(bool(pinned) and split is not None), rec.id))
        return self.image(image_id)

    def assign_splits(self, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15),
                      seed: int = 0, *, only_unassigned: bool = True) -> dict:
        """Assign train/val/test splits, stratified by label and seeded.

        only_unassigned=True places only images without a split, topping up each split
        towards the ratios; False re-deals every unpinned image. Pinned images never
        move. Each split with a positive ratio gets at least one image of each labelled
        group as far as there are enough (3 defectives: one per split; 2: train and val).
        Returns how many images this call put into each split: {"train", "val", "test"}.
        """
        ratios = normalise_ratios(ratios)
        with self._tx() as db:
            rows = db.execute("SELECT id, label, split, split_pinned FROM images").fetchall()
            changes = plan_splits(rows, ratios, seed, only_unassigned=only_unassigned)
            db.executemany("UPDATE images SET split = ? WHERE id = ?", changes)
        assigned = {s: 0 for s in SPLITS}
        for s, _ in changes:
            assigned[s] += 1
        return assigned

    # --- counts and settings ---------------------------------------------------------

    def counts(self) -> dict:
        """{"images", "ok", "defective", "unlabeled", "masked", "defective_masked",
        "splits": {...}, "unassigned"}."""
        with self._mutex, self._reading():
            db = self._conn()
            total = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            by_label = dict(db.execute("SELECT label, COUNT(*) FROM images GROUP BY label"))
            by_split = dict(db.execute(
                "SELECT split, COUNT(*) FROM images WHERE split IS NOT NULL GROUP BY split"))
            masked = db.execute("SELECT COUNT(*) FROM images WHERE has_mask = 1").fetchone()[0]
            # "masked" counts clean (all-zero) masks of OK images too; this counts the
            # defective images a segmentation loss can use
            masked_def = db.execute(
                "SELECT COUNT(*) FROM images WHERE has_mask = 1 AND label = 'defective'"
            ).fetchone()[0]
        splits = {s: int(by_split.get(s, 0)) for s in SPLITS}
        return {
            "images": int(total),
            **{lab: int(by_label.get(lab, 0)) for lab in ("ok", "defective", "unlabeled")},
            "masked": int(masked),
            "defective_masked": int(masked_def),
            "splits": splits,
            "unassigned": int(total) - sum(splits.values()),
        }

    def get_setting(self, key: str, default: object = None) -> object:
        """A stored setting (JSON value), or `default` when not set."""
        rows = self._query("SELECT value FROM settings WHERE key = ?", (key,))
        if not rows:
            return default
        try:
            return json.loads(rows[0][0])
        except ValueError:
            return default

    def set_setting(self, key: str, value: object) -> None:
        """Store a JSON-serialisable value under `key`."""
        try:
            text = json.dumps(value)
        except (TypeError, ValueError) as e:
            raise ProjectError(f"setting '{key}' cannot be stored: {e}") from None
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, text))

    def delete_setting(self, key: str) -> None:
        """Forget a setting (get_setting returns the default again)."""
        with self._tx() as db:
            db.execute("DELETE FROM settings WHERE key = ?", (key,))

    # --- predictions -----------------------------------------------------------------

    def save_predictions(self, run_id: str, rows: list[tuple[int, float, bool]]) -> None:
        """Replace the stored predictions of a run with `rows` (image_id, score, is_ng)."""
        data = [(run_id, int(i), float(score), int(bool(ng))) for i, score, ng in rows]
        bad = [i for _, i, score, _ in data if not math.isfinite(score)]
        if bad:
            raise ProjectError(
                f"predictions of run '{run_id}' have no valid score for images "
                f"{', '.join(map(str, bad[:10]))}; nothing was saved"
            )
        with self._tx() as db:
            db.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
            try:
                db.executemany(
                    "INSERT INTO predictions (run_id, image_id, score, is_ng) "
                    "VALUES (?, ?, ?, ?)", data)
            except sqlite3.IntegrityError:
                raise ProjectError(
                    f"predictions of run '{run_id}' name images that are not in the project "
                    "(or an image twice)"
                ) from None

    def predictions(self, run_id: str) -> dict[int, tuple[float, bool]]:
        """The stored predictions of a run: image_id -> (score, is_ng)."""
        rows = self._query(
            "SELECT image_id, score, is_ng FROM predictions WHERE run_id = ?", (run_id,))
        return {int(i): (float(s), bool(ng)) for i, s, ng in rows}

    # --- runs ------------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        """The training runs of this project, oldest first."""
        return runs_mod.list_runs(self.runs_dir)

    def run_dir(self, run_id: str) -> Path:
        """The folder of a run (which may not exist yet); ProjectError for a bad id."""
        if not isinstance(run_id, str) or not runs_mod.valid_run_id(run_id):
            raise ProjectError(
                f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-'"
            )
        return self.runs_dir / run_id

    def run(self, run_id: str) -> RunInfo:
        """One run; ProjectError if it does not exist."""
        path = self.run_dir(run_id)
        if not path.is_dir():
            known = ", ".join(r.id for r in self.runs()[-5:]) or "none"
            raise ProjectError(f"there is no run '{run_id}' in this project (latest: {known})")
        return runs_mod.read_run(path)

    def active_run(self) -> str | None:
        """The run used for review and prediction; None if unset or its folder is gone."""
        run_id = self.get_setting(ACTIVE_RUN_KEY)
        if not isinstance(run_id, str) or not runs_mod.valid_run_id(run_id):
            return None
        return run_id if (self.runs_dir / run_id).is_dir() else None

    def set_active_run(self, run_id: str | None) -> None:
        """Make an existing run the active one (None clears it)."""
        if run_id is None:
            self.delete_setting(ACTIVE_RUN_KEY)
            return
        self.run(run_id)  # must name an existing run folder
        self.set_setting(ACTIVE_RUN_KEY, run_id)

