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

Several stations (watch processes on one PC or on PCs sharing the inbox) score each part
once: a part is claimed before it is scored (defect_studio.deploy.claim: an O_EXCL claim
file in ``INBOX/.ds-claims/``, a heartbeat per station, takeover of a dead station's part,
a part that killed two stations is rejected). Stations that share ``--out`` append to its
one ``results.jsonl`` / ``rejected.jsonl`` under a lock (``out/.results.lock``), each line
naming its ``station``; the ledger is re-read before each part, so a part scored by any
station is never scored again.

``--move-to`` copies the part beside its target under a hidden temporary name, checks the
copy (size and sha256 of what was scored), gives it its name, and only then removes the
original: a full disk leaves the original in the inbox and a warning, never a truncated or
empty copy under a real name.

``stop()`` (and the CLI's SIGINT/SIGTERM handler) only sets a flag: the loop looks at it
between parts and while it sleeps, so a signal can never deadlock the watcher.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import queue
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.deploy.claim import ClaimError, Claims, file_lock
from defect_studio.errors import UserError
from defect_studio.inference.results import ResultsTable, ResultsWriter
from defect_studio.io.atomic import sha256_file

log = logging.getLogger("defect_studio.watch")

RESULTS_FILE = "results.jsonl"
REJECTED_FILE = "rejected.jsonl"
OVERLAY_DIR = "overlays"
LOCK_FILE = ".results.lock"
RESCAN_DEFAULT_S = 10.0
TEMP_MARK = ".dstmp-"  # temporary copies in --move-to: hidden, never a real-looking part
# names that writers use while a file is still being written, and hidden files
_PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart", "~")


class WatchError(UserError):
    """A watch folder, output folder or move-to folder that cannot be used."""


def _check_writable(what: str, folder: Path) -> None:
    """WatchError now when nothing can be written into ``folder`` (a read-only share),
    rather than at the first part."""
    probe = folder / f".ds-write-test-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"x")
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise WatchError(f"cannot write into {what} {folder}: {e.strerror or e}") from None


@dataclass
class _Pending:
    size: int
    mtime_ns: int
    stable_since: float


def _file_key(path: Path) -> str:
    return f"{path.name}:{sha256_file(path)}"


def _candidate(name: str) -> bool:
    """A file name the watcher scores (an image, not hidden, not being written)."""
    from defect_studio.io.images import IMAGE_EXTENSIONS

    low = name.lower()
    return (not name.startswith(".") and not low.endswith(_PARTIAL_SUFFIXES)
            and ".dstmp-" not in name and os.path.splitext(low)[1] in IMAGE_EXTENSIONS)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Watcher:
    """Scores the images that land in ``folder`` with ``predictor`` (see module docstring).

    ``run()`` blocks until ``stop()`` (from another thread or a signal handler);
    ``scan_once()`` processes what is ready now, for tests and one-shot use.
    """

    def __init__(self, folder: str | os.PathLike, predictor: Any, out_dir: str | os.PathLike,
                 move_to: str | os.PathLike | None = None, *, settle_s: float = 1.0,
                 poll_s: float = 0.25, rescan_s: float = RESCAN_DEFAULT_S, overlays: bool = True,
                 station: str | None = None, lease_s: float = 30.0) -> None:
        self.folder = Path(folder).absolute()
        if not self.folder.is_dir():
            raise WatchError(f"the watch folder {self.folder} does not exist or is not a folder")
        self._folder_real = self.folder.resolve()
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
            _check_writable(what, p)
        self.predictor = predictor
        self.settle_s, self.poll_s, self.rescan_s = float(settle_s), float(poll_s), float(rescan_s)
        self.overlays = overlays
        self.results_path = self.out / RESULTS_FILE
        self.rejected_path = self.out / REJECTED_FILE
        self.done: set[str] = set()
        self.counts = {"OK": 0, "NG": 0, "rejected": 0}
        self._pending: dict[Path, _Pending] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # handled files by name: (size, mtime) then
        self._events: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._stop = False  # a plain flag: safe to set from a signal handler
        self._ledger_pos: dict[Path, int] = {}
        self._lock_path = self.out / LOCK_FILE
        # the claims on the inbox's parts (several stations); an inbox this station cannot
        # write into (read-only share, no --move-to) is watched by it alone
        try:
            self.claims: Claims | None = Claims(self.folder, station, lease_s)
        except ClaimError as e:
            if self.move_to is not None:
                raise WatchError(str(e)) from None
            log.warning("%s: scoring without claims (one station only on this inbox)", e)
            self.claims = None
        self.station = self.claims.station if self.claims else (station or "")
        with file_lock(self._lock_path):
            self._refresh_ledger()
            # the ledger's two JSON-lines files, appended to and fsync'd row by row (a line
            # cut off by a crash is ended first); overlays unique against those already there
            self._results = ResultsWriter(self.out, RESULTS_FILE, overlay_dir=OVERLAY_DIR,
                                          append=True, durable=True)
            self._rejected = ResultsTable(self.rejected_path, append=True, durable=True)
        if self.move_to is not None:
            self._remove_stale_temps()

    # -- the ledger ------------------------------------------------------------------
    def _refresh_ledger(self) -> None:
        """Read what was appended to the ledger since the last look (by any station)."""
        for path in (self.results_path, self.rejected_path):
            pos = self._ledger_pos.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # whole lines only: a line being written waits
            self._ledger_pos[path] = pos + end
            for line in data[:end].splitlines():
                try:
                    entry = json.loads(line)
                except (ValueError, RecursionError):  # a line cut off by a crash
                    continue
                if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                    self.done.add(entry["key"])

    def _append(self, table: ResultsTable, entry: dict[str, Any]) -> None:
        if self.station:
            entry["station"] = self.station
        with file_lock(self._lock_path):
            table._end_cut_off_line()  # another station's line cut off by its crash
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
        # straight from the listing (no path resolving per file: a watcher beside 20,000
        # handled files stays idle); files handled and unchanged are skipped by stat alone
        seen, pending = self._seen, self._pending
        for entry in entries:
            name = entry.name
            if not _candidate(name):
                continue
            try:
                s = entry.stat()
            except OSError:
                continue
            if seen.get(name) != (s.st_size, s.st_mtime_ns):
                p = Path(entry.path)
                if p not in pending:
                    pending[p] = _Pending(-1, -1, time.monotonic())

    def _collect(self) -> None:
        while True:
            try:
                p = self._events.get_nowait()
            except queue.Empty:
                return
            if p in self._pending or not _candidate(p.name):
                continue
            if p.parent != self.folder and p.parent.resolve() != self._folder_real:
                continue
            try:
                s = p.stat()
            except OSError:
                continue
            if self._seen.get(p.name) == (s.st_size, s.st_mtime_ns):
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
            if self._stop:
                break
            del self._pending[p]
            try:
                self._handle(p)
            except OSError as e:  # the output or claim folder went away (a share dropped):
                # this part is looked at again at the next rescan; the watcher goes on
                log.warning("could not handle %s: %s", p.name, e.strerror or e)
            handled += 1
        return handled

    def _handle(self, path: Path) -> None:
        try:
            s = path.stat()
        except OSError as e:
            log.warning("cannot read %s: %s", path, e)
            return
        claim = None
        if self.claims is not None:
            claim = self.claims.claim(path, s)
            if claim is None:
                if self.claims.is_done(path, s):
                    self._seen[path.name] = (s.st_size, s.st_mtime_ns)
                # else another station scores it now: looked at again at the next rescan,
                # and taken over if that station dies
                return
        self._seen[path.name] = (s.st_size, s.st_mtime_ns)
        try:
            moved = self._handle_claimed(path, claim)
        except BaseException:
            if claim is not None:
                claim.release()
            raise
        if claim is not None:
            if moved is None:
                claim.release()
            else:
                claim.finish(forget=moved)

    def _handle_claimed(self, path: Path, claim: Any) -> bool | None:
        """Score (or reject) one part this station holds; True when it left the inbox,
        None when it could not be read or moved (the claim is given back: the ledger keeps
        it from being scored again, and the move is tried again)."""
        try:
            key = _file_key(path)
        except OSError as e:
            if not path.exists():
                return True  # taken away meanwhile: nothing to do
            log.warning("cannot read %s: %s", path, e)
            return None
        with file_lock(self._lock_path):
            self._refresh_ledger()
        if key in self.done:
            return self._move(path, key)  # scored before a crash or restart: move it only
        if claim is not None and claim.give_up:
            return self._reject(path, key, claim, f"a station stopped {claim.tries - 1} times "
                                "while scoring this part (it may crash the scorer); not tried "
                                "again")
        from defect_studio.io.images import read_image

        try:
            image = read_image(path)
            pred = self.predictor.predict(image)
        except Exception as e:  # noqa: BLE001 - one part never ends the watcher: ONNX
            # Runtime and OpenVINO raise their own types (not RuntimeError)
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return self._reject(path, key, claim, why[:500])
        if claim is not None and not claim.still_mine():
            log.warning("%s was taken over by another station while this one scored it "
                        "(stalled longer than the lease): its result is left to that station",
                        path.name)
            return False
        decision = "NG" if pred.is_ng else "OK"
        overlay = ""
        if pred.is_ng and self.overlays:
            overlay = self._write_overlay(path, image, pred, key)
        self._append(self._results.table, {
            "file": str(path), "time": _now(), "score": round(float(pred.score), 6),
            "decision": decision, "run_id": self.predictor.run_id,
            "threshold": float(self.predictor.threshold), "overlay": overlay, "key": key,
        })
        self.counts[decision] += 1
        log.info("%s %s %.4f", decision, path.name, pred.score)
        return self._move(path, key)

    def _reject(self, path: Path, key: str, claim: Any, why: str) -> bool | None:
        log.warning("rejected %s: %s", path.name, why)
        self._append(self._rejected, {"file": str(path), "time": _now(), "error": why,
                                      "key": key})
        self.counts["rejected"] += 1
        return self._move(path, key)

    def _write_overlay(self, path: Path, image: Any, pred: Any, key: str) -> str:
        # overlays/<stem>_<hash>_overlay.png (unique across stations); "" (and a warning in
        # the log) when it cannot be made
        name = f"{path.stem}_{key.rpartition(':')[2][:8]}{path.suffix}"
        return self._results.write_overlay(name, image, pred.heatmap, pred.score, True)

    def _move(self, path: Path, key: str) -> bool | None:
        """Copy the part into --move-to, check the copy, then remove the original. True when
        the part left the inbox, False without --move-to; None on a failure (a full disk):
        the original stays, and no file under a real name is left half-written."""
        if self.move_to is None:
            return False
        digest = key.rpartition(":")[2]
        tmp = self.move_to / f".{path.name[:100]}{TEMP_MARK}{os.getpid()}"
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                h = hashlib.sha256()
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if h.hexdigest() != digest or sha256_file(tmp) != digest:
                raise OSError(errno.EIO, "the copy differs from the scored file")
            target = self._place(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            log.warning("could not move %s to %s (%s): it stays in the inbox", path.name,
                        self.move_to, why)
            return None
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("copied %s to %s but cannot remove the original: %s", path.name,
                        target, e.strerror or e)
            return None
        return True

    def _place(self, tmp: Path, path: Path) -> Path:
        """Give the checked copy a free name in --move-to (name, then name_2 ...), without
        ever replacing a file there (another station may place one at the same time)."""
        i = 1
        while True:
            name = path.name if i == 1 else f"{path.stem}_{i}{path.suffix}"
            target = self.move_to / name
            try:
                os.link(tmp, target)  # fails when the name is taken: never overwrites
            except FileExistsError:
                i += 1
                continue
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if target.exists():  # no hard links on this file system
                    i += 1
                    continue
                os.replace(tmp, target)
                return target
            tmp.unlink()
            return target

    def _remove_stale_temps(self) -> None:
        """Temporary copies left by stations that died while copying."""
        from defect_studio.deploy.claim import pid_alive

        with contextlib.suppress(OSError):
            for e in os.scandir(self.move_to):
                if not (e.name.startswith(".") and TEMP_MARK in e.name):
                    continue
                pid = e.name.rpartition(TEMP_MARK)[2]
                with contextlib.suppress(OSError):
                    # another PC's station may be copying (its pid means nothing here):
                    # only copies an hour old whose pid is gone on this host
                    old = time.time() - e.stat(follow_symlinks=False).st_mtime > 3600
                    if pid.isdigit() and old and not pid_alive(int(pid)):
                        os.unlink(e.path)

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
        if self.claims is not None:
            self.claims.start_heartbeat()
        try:
            if self.claims is not None:
                self.claims.prune()  # done marks of parts no longer in the inbox
            self._rescan()  # what arrived while the watcher was down
            last_scan = time.monotonic()
            while not self._stop:
                self.scan_once()
                if time.monotonic() - last_scan >= self.rescan_s:
                    self._rescan()
                    last_scan = time.monotonic()
                self._sleep(self.poll_s)
        finally:
            observer.stop()
            observer.join(timeout=5)
            if self.claims is not None:
                self.claims.close()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop:
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def stop(self) -> None:
        """Ask run() to return (after the part being scored): only sets a flag, so it is
        safe from a signal handler and from any thread."""
        self._stop = True
