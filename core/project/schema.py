"""The SQLite schema of a project and its migrations.

MIGRATIONS is an ordered list; migration i (0-based) turns schema version i into
version i + 1, so the current version is len(MIGRATIONS). Opening a project for
writing applies the missing ones in one transaction. A project written by a newer
Defect Studio (a version we do not know) is refused rather than guessed at.
To change the schema, append a function; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from defect_studio.errors import ProjectError


def _v1_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE images (
            id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused
            path         TEXT NOT NULL UNIQUE,
            hash         TEXT NOT NULL,
            width        INTEGER NOT NULL,
            height       INTEGER NOT NULL,
            channels     INTEGER NOT NULL,
            bit_depth    INTEGER NOT NULL,
            split        TEXT CHECK (split IN ('train', 'val', 'test')),
            split_pinned INTEGER NOT NULL DEFAULT 0,
            label        TEXT NOT NULL DEFAULT 'unlabeled'
                         CHECK (label IN ('unlabeled', 'ok', 'defective')),
            label_source TEXT NOT NULL DEFAULT 'import'
                         CHECK (label_source IN ('import', 'user', 'prediction')),
            has_mask     INTEGER NOT NULL DEFAULT 0,
            mask_rough   INTEGER NOT NULL DEFAULT 0,
            mask_pixels  INTEGER NOT NULL DEFAULT 0,  -- defect pixels in the mask
            added        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )"""
    )
    db.execute("CREATE UNIQUE INDEX images_hash ON images(hash)")
    db.execute("CREATE INDEX images_split ON images(split)")
    db.execute("CREATE INDEX images_label ON images(label)")
    db.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute(
        """
        CREATE TABLE predictions (
            run_id   TEXT NOT NULL,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            score    REAL NOT NULL,
            is_ng    INTEGER NOT NULL,
            PRIMARY KEY (run_id, image_id)
        )"""
    )


def _v2_types_and_boxes(db: sqlite3.Connection) -> None:
    """Defect types (name, colour, hotkey) and per-image boxes of a type."""
    db.execute(
        """
        CREATE TABLE defect_types (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            name     TEXT NOT NULL UNIQUE COLLATE NOCASE,
            color    TEXT NOT NULL,
            hotkey   TEXT UNIQUE,
            position INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute(
        """
        CREATE TABLE boxes (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
            type_id  INTEGER NOT NULL REFERENCES defect_types(id),
            x        REAL NOT NULL,
            y        REAL NOT NULL,
            w        REAL NOT NULL CHECK (w > 0),
            h        REAL NOT NULL CHECK (h > 0),
            source   TEXT NOT NULL DEFAULT 'user'
                     CHECK (source IN ('import', 'user', 'prediction'))
        )"""
    )
    db.execute("CREATE INDEX boxes_image ON boxes(image_id)")
    db.execute("CREATE INDEX boxes_type ON boxes(type_id)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_initial, _v2_types_and_boxes]
SCHEMA_VERSION = len(MIGRATIONS)


def read_version(db: sqlite3.Connection) -> int:
    """The schema version stored in the meta table; 0 for a database without one."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise ProjectError(
            f"the project database has an invalid schema_version {row[0]!r}") from None


def check_version(version: int, db_path: Path) -> None:
    """ProjectError when the schema is newer than this program knows."""
    if version > SCHEMA_VERSION:
        raise ProjectError(
            f"project database '{db_path}' has schema version {version}, but this Defect "
            f"Studio knows only up to version {SCHEMA_VERSION}; update Defect Studio to open it"
        )


def migrate(db: sqlite3.Connection, db_path: Path) -> int:
    """Bring the database to SCHEMA_VERSION in one transaction; returns the old version.

    `db` must be in autocommit mode (isolation_level=None) and open for writing.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        old = read_version(db)
        check_version(old, db_path)
        for step in MIGRATIONS[old:]:
            step(db)
        if old != SCHEMA_VERSION:
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return old
