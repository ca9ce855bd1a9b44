"""The watch folder for the line: score every image that lands in a folder, once.

``Watcher(folder, predictor, out_dir)`` listens with watchdog (and rescans the folder
now and then, for network shares that send no events). A file is scored when it is
completely written: its size and modification time have not changed for ``settle_s``
and it can be opened. Each part gets one JSON line in ``out/results.jsonl``::

    {"file", "time", "score", "decision", "run_id", "threshold", "overlay", "key"}

and NG parts an overlay PNG in ``out/overlays/``. A file that cannot be scored is
logged and gets one line in ``out/rejected.jsonl``; it never stops the watcher.

The two JSON-lines files are the ledger: ``key`` is the file name plus the sha256 of
its bytes, and a key that is in either file is never scored again, across restarts.
Files that arrived while the watcher was down are found by the scan at start. With
``move_to`` scored (and rejected) files are moved there afterwards; a crash between
scoring and moving is finished at the next start (the key is in the ledger).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.errors import UserError
from defect_studio.inference.results import ResultsTable, ResultsWriter

log = logging.getLogger("defect_studio.watch")

RESULTS_FILE = "results.jsonl"
REJECTED_FILE = "rejected.jsonl"
OVERLAY_DIR = "overlays"
# names that writers use while a file is still being written, and hidden files
_PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", "~")


class WatchError(UserError):
    """A watch folder, output folder or move-to folder that cannot be used."""


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    stable_since: float


def _file_key(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{path.name}:{h.hexdigest()}"


def _candidate(path: Path) -> bool:
    from defect_studio.io.images import is_image_file

    name = path.name
    return (not name.startswith(".") and not name.lower().endswith(_PARTIAL_SUFFIXES)
            and ".dstmp-" not in name and is_image_file(path))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Watcher:
    """Scores the images that land in ``folder`` with ``predictor`` (see module docstring).

    ``run()`` blocks until ``stop()`` (from another thread or a signal handler);
    ``scan_once()`` processes what is ready now, for tests and one-shot use.
    """

    def __init__(self, folder: str | os.PathLike, predictor: Any, out_dir: str | os.PathLike,
                 move_to: str | os.PathLike | None = None, *, settle_s: float = 1.0,
                 poll_s: float = 0.25, rescan_s: float = 10.0, overlays: bool = True) -> None:
        self.folder = Path(folder).absolute()
        if not self.folder.is_dir():
            raise WatchError(f"the watch folder {self.folder} does not exist or is not a folder")
        self.out = Path(out_dir)
        self.move_to = Path(move_to) if move_to is not None else None
        for what, p in (("--out", self.out), ("--move-to", self.move_to)):
            if p is None:
                continue
            if p.exists() and not p.is_dir():
                raise WatchError(f"{what} {p} is a file; give a folder")
            if p.resolve() == self.folder.resolve():
                raise WatchError(f"{what} must not be the watch folder itself")
            try:
                p.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WatchError(f"cannot create {what} folder {p}: {e.strerror or e}") from None
        self.predictor = predictor
        self.settle_s, self.poll_s, self.rescan_s = float(settle_s), float(poll_s), float(rescan_s)
        self.overlays = overlays
        self.results_path = self.out / RESULTS_FILE
        self.rejected_path = self.out / REJECTED_FILE
        self.done: set[str] = set()
        self.counts = {"OK": 0, "NG": 0, "rejected": 0}
        self._pending: dict[Path, _Pending] = {}
        self._seen: dict[Path, tuple[int, int]] = {}  # handled files: (size, mtime) then
        self._events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._load_ledger()
        # the ledger's two JSON-lines files, appended to and fsync'd row by row (a line cut
        # off by a crash is ended first); overlays unique against those already written
        self._results = ResultsWriter(self.out, RESULTS_FILE, overlay_dir=OVERLAY_DIR,
                                      append=True, durable=True)
        self._rejected = ResultsTable(self.rejected_path, append=True, durable=True)

    # -- the ledger ------------------------------------------------------------------
    def _load_ledger(self) -> None:
        for path in (self.results_path, self.rejected_path):
            if not path.is_file():
                continue
            with open(path, "rb") as f:
                data = f.read()
            for line in data.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line cut off by a crash: that part is scored again
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    self.done.add(entry["key"])

    def _append(self, table: ResultsTable, entry: dict[str, Any]) -> None:
        table.add(entry)
        self.done.add(entry["key"])

    # -- finding files ---------------------------------------------------------------
    def notice(self, path: str | os.PathLike) -> None:
        """A file event (thread-safe): check the file at the next poll."""
        self._events.put(Path(path))

    def _rescan(self) -> None:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as e:
            log.warning("cannot list the watch folder %s: %s", self.folder, e)
            return
        for entry in entries:
            self._events.put(Path(entry.path))

    def _collect(self) -> None:
        while True:
            try:
                p = self._events.get_nowait()
            except queue.Empty:
                return
            if p.parent.resolve() != self.folder.resolve() or not _candidate(p):
                continue
            if p in self._pending:
                continue
            try:
                s = p.stat()
            except OSError:
                continue
            if self._seen.get(p) == (s.st_size, s.st_mtime_ns):
                continue  # handled already and unchanged: do not hash it again
            self._pending[p] = _Pending(-1, -1, time.monotonic())

    def _ready(self) -> list[Path]:
        """Files whose size and time have been still for settle_s (and can be opened)."""
        now = time.monotonic()
        ready = []
        for p, st in list(self._pending.items()):
            try:
                s = p.stat()
            except OSError:  # gone (moved away by someone else) or not readable yet
                if not p.exists():
                    del self._pending[p]
                continue
            if (s.st_size, s.st_mtime_ns) != (st.size, st.mtime_ns):
                st.size, st.mtime_ns, st.stable_since = s.st_size, s.st_mtime_ns, now
                continue
            if s.st_size > 0 and now - st.stable_since >= self.settle_s:
                try:
                    with open(p, "rb"):
                        pass
                except OSError:  # held exclusively by the writer (Windows)
                    continue
                ready.append(p)
        return ready

    # -- scoring ---------------------------------------------------------------------
    def scan_once(self) -> int:
        """Process the files that are ready now; returns how many were handled."""
        self._collect()
        handled = 0
        for p in sorted(self._ready()):
            del self._pending[p]
            self._handle(p)
            handled += 1
        return handled

    def _handle(self, path: Path) -> None:
        try:
            s = path.stat()
            self._seen[path] = (s.st_size, s.st_mtime_ns)
            key = _file_key(path)
        except OSError as e:
            log.warning("cannot read %s: %s", path, e)
            return
        if key in self.done:
            self._move(path)  # scored before a crash or restart: finish the move only
            return
        from defect_studio.io.images import read_image

        try:
            image = read_image(path)
            pred = self.predictor.predict(image)
        except (UserError, ValueError, OSError, RuntimeError, MemoryError) as e:
            log.warning("rejected %s: %s", path.name, e)
            self._append(self._rejected, {"file": str(path), "time": _now(),
                                              "error": str(e), "key": key})
            self.counts["rejected"] += 1
            self._move(path)
            return
        decision = "NG" if pred.is_ng else "OK"
        overlay = ""
        if pred.is_ng and self.overlays:
            overlay = self._write_overlay(path, image, pred)
        self._append(self._results.table, {
            "file": str(path), "time": _now(), "score": round(float(pred.score), 6),
            "decision": decision, "run_id": self.predictor.run_id,
            "threshold": float(self.predictor.threshold), "overlay": overlay, "key": key,
        })
        self.counts[decision] += 1
        log.info("%s %s %.4f", decision, path.name, pred.score)
        self._move(path)

    def _write_overlay(self, path: Path, image: Any, pred: Any) -> str:
        # overlays/<stem>_overlay.png; "" (and a warning in the log) when it cannot be made
        return self._results.write_overlay(path, image, pred.heatmap, pred.score, True)

    def _move(self, path: Path) -> None:
        if self.move_to is None:
            return
        target = self.move_to / path.name
        i = 2
        while target.exists():
            target = self.move_to / f"{path.stem}_{i}{path.suffix}"
            i += 1
        try:
            shutil.move(str(path), str(target))
        except OSError as e:
            log.warning("could not move %s to %s: %s", path, self.move_to, e)

    # -- running ---------------------------------------------------------------------
    def run(self) -> None:
        """Watch until stop(): watchdog events plus a rescan every rescan_s."""
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.is_directory:
                    return
                for attr in ("dest_path", "src_path"):
                    p = getattr(event, attr, "")
                    if p:
                        watcher.notice(os.fsdecode(p))

        observer = Observer()
        observer.schedule(_Handler(), str(self.folder), recursive=False)
        observer.start()
        try:
            self._rescan()  # what arrived while the watcher was down
            last_scan = time.monotonic()
            while not self._stop.is_set():
                self.scan_once()
                if time.monotonic() - last_scan >= self.rescan_s:
                    self._rescan()
                    last_scan = time.monotonic()
                self._stop.wait(self.poll_s)
        finally:
            observer.stop()
            observer.join(timeout=5)

    def stop(self) -> None:
        self._stop.set()
