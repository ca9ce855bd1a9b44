"""The run's training data as it travels to a cluster node (no Ray needed here).

A bundle is a snapshot of the project database that keeps only the images with a split
(train, val, test: what a training job reads) and their boxes, with each image's path
rewritten to ``images/<sha256><ext>``, plus the files it names: the images and the masks.
Every file is addressed by the sha256 of its bytes, so a node that has an image in its
cache from an earlier run is not sent it again. Nothing else of the project travels:
no unassigned images, no predictions, no other runs, no backups.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from defect_studio.errors import ProjectError
from defect_studio.io.atomic import sha256_file

DB_NAME = "project.sqlite"
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_EXT_RE = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


@dataclass
class Bundle:
    """``files``: the bundle's relative path -> sha256; ``sources``: sha256 -> a local file
    with those bytes (what to send when the node lacks it)."""

    files: dict[str, str] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    n_images: int = 0
    n_masks: int = 0
    bytes_total: int = 0

    def add(self, rel: str | None, path: Path) -> str:
        """Add the file ``path`` as ``rel`` (None: ``images/<sha256><ext>``); its sha256."""
        sha = sha256_file(path)
        if rel is None:
            ext = path.suffix.lower()
            rel = f"images/{sha}{ext if _EXT_RE.match(ext) else '.img'}"
        self.files[rel] = sha
        if sha not in self.sources:
            self.sources[sha] = path
            self.bytes_total += path.stat().st_size
        return sha


def build_bundle(project_root: str | Path, workdir: str | Path) -> Bundle:
    """The training data of the project at ``project_root``; the database snapshot is
    written into ``workdir`` (a private temporary folder of the caller)."""
    root = Path(project_root)
    src = root / DB_NAME
    if not src.is_file():
        raise ProjectError(f"'{root}' is not a Defect Studio project (no {DB_NAME})")
    snap = Path(workdir) / DB_NAME
    try:
        source = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True)
        try:
            dest = sqlite3.connect(snap)
            try:
                source.backup(dest)  # a consistent copy while the GUI may be writing
            finally:
                dest.close()
        finally:
            source.close()
    except sqlite3.Error as e:
        raise ProjectError(f"cannot read the project database '{src}': {e}") from None

    bundle = Bundle()
    db = sqlite3.connect(snap)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("DELETE FROM images WHERE split IS NULL")
        db.execute("DELETE FROM predictions")
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'boxes'").fetchone():
            db.execute("DELETE FROM boxes WHERE image_id NOT IN (SELECT id FROM images)")
        rows = db.execute("SELECT id, path, has_mask FROM images ORDER BY id").fetchall()
        for image_id, path, has_mask in rows:
            local = Path(path) if Path(path).is_absolute() else root / path
            ext = PurePosixPath(str(path)).suffix.lower()
            ext = ext if _EXT_RE.match(ext) else ".img"
            if local.is_file():
                sha = bundle.add(None, local)
                rel = f"images/{sha}{ext}"
                bundle.n_images += 1
            else:  # the node reads a missing file, as training here would
                rel = f"images/missing-{int(image_id)}{ext}"
            db.execute("UPDATE images SET path = ? WHERE id = ?", (rel, image_id))
            mask = root / "masks" / f"{int(image_id)}.png"
            if has_mask and mask.is_file():
                bundle.add(f"masks/{int(image_id)}.png", mask)
                bundle.n_masks += 1
        db.commit()
        db.execute("VACUUM")
    finally:
        db.close()
    bundle.add(DB_NAME, snap)
    return bundle


def check_bundle_path(rel: object, run_id: str | None = None) -> str:
    """A relative path a bundle may hold: the database, ``images/NAME``, ``masks/N.png``
    or, with ``run_id``, ``runs/<run_id>/NAME``; ProjectError for anything else (``..``,
    absolute paths, other folders), so a node never writes outside its job folder."""
    if not isinstance(rel, str):
        raise ProjectError(f"bad file name in a cluster bundle: {rel!r}")
    parts = rel.split("/")
    ok = (rel == DB_NAME
          or (len(parts) == 2 and parts[0] in ("images", "masks") and _SAFE_NAME.match(parts[1])
              and parts[1] not in (".", ".."))
          or (run_id is not None and len(parts) == 3 and parts[0] == "runs"
              and parts[1] == run_id and _SAFE_NAME.match(parts[2])))
    if not ok:
        raise ProjectError(f"bad file name in a cluster bundle: {rel!r}")
    return rel
