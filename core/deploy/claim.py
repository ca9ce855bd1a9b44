"""Claims on the parts of a shared inbox: several ``watch`` stations, each part scored once.

Any number of watch processes, on one PC or on several PCs sharing the inbox (a network
folder), claim a part before they score it. The claims live in ``INBOX/.ds-claims/``:

- ``<h>.<n>.claim``: generation ``n`` of the claim on the part whose name, size and
  modification time hash to ``h``. A station claims a part by creating ``<h>.1.claim``
  with ``O_CREAT | O_EXCL``, which exactly one creator wins, locally, on NFS (v3 and later)
  and on SMB shares. The file holds the owner: station name, instance, host, pid.
- a station that dies while it holds a claim (``kill -9``, power loss) leaves the part to
  be reclaimed: when the owner is found dead, the next station creates ``<h>.<n+1>.claim``
  (again O_EXCL, so one reclaimer wins, and no claim is ever taken from a live owner by a
  rename race). A part whose claim was taken over ``MAX_TRIES`` times (it was being scored
  each time a station died: a part that crashes the scorer) is given up: the station that
  finds it records it as rejected instead of trying a third time.
- ``<h>.done``: the part was handled (scored or rejected); its claim files are removed.
- ``stations/<instance>.alive``: each station rewrites its heartbeat file every
  ``lease_s / 4`` seconds from a thread of its own.

An owner is dead when it runs on this host and its pid is gone (found at once), or when its
heartbeat file has not changed for ``lease_s`` seconds as seen by the observer's own
monotonic clock (works across hosts, whatever their clocks say).

A station that stalled for longer than the lease (a suspended VM) may have lost its claim:
``Claim.still_mine()`` is checked before its result is recorded, and a lost part is
dropped (the new owner scores it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defect_studio.errors import UserError

log = logging.getLogger("defect_studio.watch")

CLAIM_DIR = ".ds-claims"
STATIONS_DIR = "stations"
STALE_BEAT_S = 24 * 3600  # a heartbeat file this old belongs to a station long dead
MAX_TRIES = 2  # claims taken over after a station died while scoring: then the part is rejected
_STATION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ClaimError(UserError):
    """A claim folder that cannot be used, or a bad station name."""


def host_id() -> str:
    """This machine: host name plus the machine id where the system has one (two PCs
    cloned from one image share a host name, never a machine id)."""
    name = socket.gethostname() or "host"
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(p, encoding="ascii") as f:
                return f"{name}:{f.read(64).strip()}"
        except (OSError, UnicodeDecodeError):
            continue
    return name


def check_station_name(name: str) -> str:
    if not isinstance(name, str) or not _STATION_NAME.fullmatch(name):
        raise ClaimError(f"--station {name!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    return name


def default_station_name() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname() or "station").strip(".-_")
    return (name or "station")[:64]


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (True when it cannot be told)."""
    if os.name != "posix":
        return True  # no cheap check: the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    try:  # a killed child not yet reaped by its parent is a zombie: dead
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


@dataclass
class Claim:
    """A part this station holds: score it, then ``finish()`` (or ``release()``)."""

    claims: Claims
    path: Path
    digest: str
    generation: int
    give_up: bool = False  # taken over MAX_TRIES times: record as rejected, do not score
    _markers: list[Path] = field(default_factory=list)

    @property
    def tries(self) -> int:
        return self.generation

    @property
    def marker_name(self) -> str:
        return f"{self.digest}.{self.generation}.claim"

    def still_mine(self) -> bool:
        """False when another station took this claim over (this one stalled too long)."""
        nxt = self.claims.dir / f"{self.digest}.{self.generation + 1}.claim"
        return not nxt.exists() and not self.claims.done_path(self.digest).exists()

    def finish(self, forget: bool = False) -> None:
        """The part is handled: mark it done and remove the claim files. ``forget``: the
        part left the inbox (moved), so the done mark is not needed either."""
        done = self.claims.done_path(self.digest)
        if not forget:
            _write_new(done, {"file": self.path.name, "station": self.claims.station},
                       exclusive=False)
        for n in range(1, self.generation + 1):
            _unlink(self.claims.dir / f"{self.digest}.{n}.claim")
        if forget:
            _unlink(done)

    def release(self) -> None:
        """Give the part back unhandled (it vanished, or this station stops)."""
        _unlink(self.claims.dir / f"{self.digest}.{self.generation}.claim")


class Claims:
    """The claim folder of one inbox, as seen by one station (see the module docstring)."""

    def __init__(self, inbox: str | os.PathLike, station: str | None = None,
                 lease_s: float = 30.0) -> None:
        self.inbox = Path(inbox)
        self.dir = self.inbox / CLAIM_DIR
        self.station = check_station_name(station) if station else default_station_name()
        self.instance = f"{self.station}~{uuid.uuid4().hex[:10]}"
        self.host = host_id()
        self.pid = os.getpid()
        self.lease_s = float(lease_s)
        self._seen_beats: dict[str, tuple[Any, float]] = {}  # instance -> (beat, since)
        self._beat_stop = threading.Event()
        self._beat_thread: threading.Thread | None = None
        try:
            (self.dir / STATIONS_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ClaimError(f"cannot create the claim folder {self.dir}: "
                             f"{e.strerror or e}") from None
        self._beat_file = self.dir / STATIONS_DIR / f"{self.instance}.alive"
        self._beats = 0
        self.beat()

    # -- heartbeat ---------------------------------------------------------------------
    def beat(self) -> None:
        self._beats += 1
        try:
            with open(self._beat_file, "w", encoding="ascii") as f:
                f.write(f"{self._beats} {self.pid}\n")
        except OSError as e:
            log.warning("cannot write the heartbeat %s: %s", self._beat_file, e)

    def start_heartbeat(self) -> None:
        if self._beat_thread is not None:
            return
        period = max(0.05, self.lease_s / 4)

        def loop() -> None:
            while not self._beat_stop.wait(period):
                self.beat()

        self._beat_stop.clear()
        self._beat_thread = threading.Thread(target=loop, name="ds-heartbeat", daemon=True)
        self._beat_thread.start()

    def close(self) -> None:
        """Stop the heartbeat and remove it (a clean stop holds no claim)."""
        self._beat_stop.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=5)
            self._beat_thread = None
        _unlink(self._beat_file)

    # -- owners --------------------------------------------------------------------------
    def _read_owner(self, marker: Path) -> dict | None:
        try:
            with open(marker, encoding="utf-8") as f:
                data = json.loads(f.read(4096))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            return None
        return data if isinstance(data, dict) else None

    def _changed_within_lease(self, what: str, state: Any) -> bool:
        now = time.monotonic()
        seen = self._seen_beats.get(what)
        if seen is None or seen[0] != state:
            self._seen_beats[what] = (state, now)
            return True
        return now - seen[1] < self.lease_s

    def owner_alive(self, marker: Path) -> bool:
        owner = self._read_owner(marker)
        if owner is None:  # being written, or its writer died before writing: by its mtime
            try:
                st = marker.stat()
            except OSError:
                return True
            return self._changed_within_lease(str(marker), (st.st_size, st.st_mtime_ns))
        instance = str(owner.get("instance", ""))
        if instance == self.instance:
            return True
        pid = owner.get("pid")
        if owner.get("host") == self.host and isinstance(pid, int) and not pid_alive(pid):
            return False
        beat_file = self.dir / STATIONS_DIR / f"{instance}.alive"
        try:
            beat: Any = beat_file.read_bytes()[:64]
        except OSError:
            beat = None
        return self._changed_within_lease(instance, beat)

    # -- claiming ------------------------------------------------------------------------
    @staticmethod
    def digest(path: Path, st: os.stat_result) -> str:
        ident = f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape")
        return hashlib.sha1(ident).hexdigest()

    def done_path(self, digest: str) -> Path:
        return self.dir / f"{digest}.done"

    def is_done(self, path: Path, st: os.stat_result) -> bool:
        return self.done_path(self.digest(path, st)).exists()

    def claim(self, path: Path, st: os.stat_result) -> Claim | None:
        """This station's claim on the part ``path`` (as ``st`` describes it), or None when
        it is done or held by a live station."""
        h = self.digest(path, st)
        done = self.done_path(h)
        if done.exists():
            return None
        if not self.dir.is_dir():  # removed by someone: made again (OSError if it cannot be)
            (self.dir / STATIONS_DIR).mkdir(parents=True, exist_ok=True)
        n = 1
        while True:
            marker = self.dir / f"{h}.{n}.claim"
            owner = {"station": self.station, "instance": self.instance, "host": self.host,
                     "pid": self.pid, "file": path.name, "generation": n}
            if _write_new(marker, owner, exclusive=True):
                if done.exists():  # finished by its owner between our two looks
                    _unlink(marker)
                    return None
                return Claim(self, path, h, n, give_up=n > MAX_TRIES)
            if (self.dir / f"{h}.{n + 1}.claim").exists():
                n += 1  # taken over already: look at the newer claim
                continue
            if done.exists() or self.owner_alive(marker):
                return None
            log.warning("station of %s's claim on %s is gone: taking the part over",
                        (self._read_owner(marker) or {}).get("station", "?"), path.name)
            n += 1

    def prune(self, present: set[str] | None = None) -> int:
        """Remove done marks whose part is no longer in the inbox (returns how many) and
        heartbeat files a day old.
        ``present``: digests of the parts in the inbox now (computed when None)."""
        if present is None:
            present = set()
            with contextlib.suppress(OSError):
                for e in os.scandir(self.inbox):
                    with contextlib.suppress(OSError):
                        if e.is_file():
                            present.add(self.digest(Path(e.path), e.stat()))
        removed = 0
        with contextlib.suppress(OSError):
            for e in os.scandir(self.dir):
                if e.name.endswith(".done") and e.name[:-5] not in present:
                    _unlink(Path(e.path))
                    removed += 1
                elif (e.name.endswith(".claim") and e.name.split(".")[0] not in present
                      and not self.owner_alive(Path(e.path))):
                    # a station died after its part left the inbox (moved) but before it
                    # removed its claim: nobody will look at that part again
                    _unlink(Path(e.path))
                    removed += 1
        # heartbeats of stations killed long ago (a live one rewrites its own every few s)
        with contextlib.suppress(OSError):
            for e in os.scandir(self.dir / STATIONS_DIR):
                with contextlib.suppress(OSError):
                    if time.time() - e.stat().st_mtime > STALE_BEAT_S:
                        _unlink(Path(e.path))
        return removed


def _write_new(path: Path, data: dict, exclusive: bool) -> bool:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(data))
    return True


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (and, on NFS v4 and SMB, hosts), held
    while the block runs: the stations' appends to one results file."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.name == "posix":
            import fcntl

            fcntl.lockf(fd, fcntl.LOCK_EX)
        else:  # pragma: no cover - Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # drops the lock
