"""One training job on a cluster node: ``TrainWorker`` (run as a detached Ray actor).

Plain Python: the client wraps it with ``ray.remote``; tests may use it directly. The
node keeps a file cache addressed by sha256 (``DEFECT_STUDIO_CLUSTER_CACHE``, default
``~/.cache/defect_studio/cluster``): ``objects/`` holds each file once, ``jobs/<id>/``
is one job's project folder, made of links into the cache. The job runs the same
``defect_studio.training.train`` as a local run, in a thread of the actor, so that the
client can poll its events, cancel it and read its run folder while it trains.

A finished job waits for the client to fetch its run folder and ``close`` it; one whose
client never comes back ends itself after ``DEFECT_STUDIO_CLUSTER_LINGER_S`` seconds
(default a week) without a call.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from defect_studio.cluster.bundle import DB_NAME, SHA_RE, check_bundle_path
from defect_studio.errors import CancelledError, ProjectError, UserError

LINGER_S = float(os.environ.get("DEFECT_STUDIO_CLUSTER_LINGER_S", 7 * 24 * 3600))
TERMINAL = ("finished", "failed", "cancelled")
READ_LIMIT = 2 << 30  # a run folder file larger than this is not sent back


def cache_root() -> Path:
    env = os.environ.get("DEFECT_STUDIO_CLUSTER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "defect_studio" / "cluster"


class TrainWorker:
    """The node side of one cluster training job (see the module's docstring)."""

    def __init__(self, cache_dir: str | None = None) -> None:
        self.cache = Path(cache_dir) if cache_dir else cache_root()
        self.objects = self.cache / "objects"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.events: list[dict] = []
        self.state = "idle"  # idle | running | finished | failed | cancelled
        self.message = ""
        self.run_id: str | None = None
        self.job_dir: Path | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._contact = time.monotonic()
        threading.Thread(target=self._watchdog, daemon=True, name="linger").start()

    # -- about the node -------------------------------------------------------------------
    def hello(self) -> dict:
        """Version and node facts: the client refuses a node with another version."""
        from defect_studio import __version__

        self._touch()
        gpus = 0
        try:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:  # noqa: BLE001 - a node without a working torch says so later
            pass
        return {"version": __version__, "host": socket.gethostname(), "pid": os.getpid(),
                "gpus": gpus, "cache": str(self.cache), "state": self.state}

    # -- the cache ---------------------------------------------------------------------------
    def _object(self, sha: str) -> Path:
        if not isinstance(sha, str) or not SHA_RE.match(sha):
            raise ProjectError(f"bad file hash {sha!r}")
        return self.objects / sha[:2] / sha

    def missing(self, shas: list[str]) -> list[str]:
        """The hashes of ``shas`` this node's cache does not hold (what to send)."""
        self._touch()
        return [s for s in dict.fromkeys(shas) if not self._object(s).is_file()]

    def put(self, blobs: dict[str, bytes]) -> int:
        """Store files by hash; each one's bytes must hash to its name. Returns the count."""
        from defect_studio.io.atomic import atomic_write_bytes

        self._touch()
        for sha, data in blobs.items():
            target = self._object(sha)
            if hashlib.sha256(data).hexdigest() != sha:
                raise ProjectError(f"file {sha[:12]}... arrived damaged (its hash differs)")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file():
                atomic_write_bytes(target, data)
        return len(blobs)

    # -- the job -----------------------------------------------------------------------------
    def start(self, files: dict[str, str], run_id: str, config: Any, resume: bool,
              processes: int = 1) -> str:
        """Make the job's project folder from cached files and start training in a thread.

        ``files``: relative path -> sha256 (the bundle, and on resume the run folder as
        ``runs/<run_id>/NAME``); ``processes`` > 1 trains data-parallel on as many GPUs
        (defect_studio.training.distributed). Returns the job folder's path on the node.
        """
        from defect_studio.project.runs import require_run_id

        self._touch()
        with self._lock:
            if self.state != "idle":
                raise ProjectError(f"this cluster worker already ran a job ({self.state})")
            run_id = require_run_id(run_id)
            if DB_NAME not in files:
                raise ProjectError("the cluster bundle has no project database")
            job = self.cache / "jobs" / f"{run_id}-{uuid.uuid4().hex[:8]}"
            for rel, sha in files.items():
                check_bundle_path(rel, run_id)
                src = self._object(sha)
                if not src.is_file():
                    raise ProjectError(f"file {rel} ({sha[:12]}...) was not sent to the node")
                dst = job / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if rel.startswith(("runs/", DB_NAME)):
                    shutil.copyfile(src, dst)  # written to by the job: a private copy
                else:
                    try:
                        os.link(src, dst)
                    except OSError:
                        shutil.copyfile(src, dst)
            (job / "runs").mkdir(exist_ok=True)
            self.job_dir, self.run_id, self.state = job, run_id, "running"
        threading.Thread(target=self._train, args=(config, resume, processes), daemon=True,
                         name=f"train-{run_id}").start()
        return str(job)

    def _train(self, config: Any, resume: bool, processes: int = 1) -> None:
        from defect_studio.training import train

        try:
            if processes > 1:
                from defect_studio.training.distributed import train_parallel

                train_parallel(self.job_dir, None if resume else config, processes,
                               run_id=self.run_id, resume=resume, on_event=self._on_event,
                               should_stop=self._stop.is_set)
            else:
                train(self.job_dir, None if resume else config, run_id=self.run_id,
                      resume=resume, on_event=self._on_event, should_stop=self._stop.is_set)
            state, message = "finished", ""
        except CancelledError as e:
            state, message = "cancelled", str(e)
        except UserError as e:
            state, message = "failed", str(e)
        except BaseException as e:  # noqa: BLE001 - reported to the client, not lost
            traceback.print_exc(file=sys.stderr)
            state, message = "failed", f"training failed unexpectedly: {type(e).__name__}: {e}"
        with self._lock:
            self.state, self.message = state, message

    def _on_event(self, event: dict) -> None:
        with self._lock:
            self.events.append(event)

    def poll(self, since: int = 0) -> dict:
        """The events from number ``since`` on, the job's state and its last message."""
        self._touch()
        with self._lock:
            return {"events": list(self.events[max(0, int(since)):]), "state": self.state,
                    "message": self.message, "count": len(self.events)}

    def cancel(self) -> None:
        """Stop the job at its next step (its last checkpoint stays)."""
        self._touch()
        self._stop.set()

    def run_files(self) -> list[str]:
        """The names of the files in the job's run folder."""
        self._touch()
        run = self._run_dir()
        if run is None or not run.is_dir():
            return []
        return sorted(p.name for p in run.iterdir() if p.is_file() and p.name != "run.lock")

    def read(self, names: list[str]) -> dict[str, bytes]:
        """The bytes of files of the run folder (absent ones are left out)."""
        self._touch()
        run = self._run_dir()
        out: dict[str, bytes] = {}
        for name in names:
            check_bundle_path(f"runs/{self.run_id}/{name}", self.run_id)
            path = run / name if run is not None else None
            if path is not None and path.is_file() and path.stat().st_size <= READ_LIMIT:
                out[name] = path.read_bytes()
        return out

    def close(self) -> None:
        """Remove the job's folder (its cached files stay for the next run)."""
        with self._lock:
            job, self.job_dir = self.job_dir, None
            if self.state == "running":
                self._stop.set()
        if job is not None and self.state in TERMINAL:
            shutil.rmtree(job, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------
    def _run_dir(self) -> Path | None:
        if self.job_dir is None or self.run_id is None:
            return None
        return self.job_dir / "runs" / self.run_id

    def _touch(self) -> None:
        self._contact = time.monotonic()

    def _watchdog(self) -> None:
        # a job nobody asks about any more ends (a detached actor would live forever)
        while True:
            time.sleep(min(60.0, max(1.0, LINGER_S / 10)))
            if self.state in TERMINAL + ("idle",) and \
                    time.monotonic() - self._contact > LINGER_S:
                if self.job_dir is not None:
                    shutil.rmtree(self.job_dir, ignore_errors=True)
                os._exit(0)
