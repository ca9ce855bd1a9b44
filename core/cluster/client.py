"""The desktop side of ``train --cluster ADDRESS`` (and of re-attaching to such a run).

The run folder is made here, in the project, as for a local run; the job trains on a
cluster node (``defect_studio.cluster.worker.TrainWorker`` as a detached Ray actor named
after the project and the run, so it goes on when this process ends). This process:

1. ships the run's training data (``bundle``): the node says which sha256 it lacks, only
   those are sent;
2. follows the job: every event the node's training emits is appended to the local
   ``events.jsonl`` and handed to ``on_event`` (``--events`` prints it: the GUI's
   progress, curves, log and ETA work unchanged); at each checkpoint the checkpoint,
   config and status are fetched, so a run whose worker dies resumes from here;
3. at the end fetches the run folder (model, metrics, threshold...) and closes the job.

``RUN/cluster.json`` records where the run trains; ``train --resume RUN`` re-attaches to
a job that still lives (after the desktop closed) and fetches its result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.cluster.address import ClusterError, check_reachable, require_ray
from defect_studio.cluster.bundle import build_bundle
from defect_studio.errors import CancelledError, UserError

NAMESPACE = "defect_studio"
RECORD = "cluster.json"
SEND_BATCH_BYTES = 32 << 20
POLL_S = 0.3
SCHEDULE_TIMEOUT_S = float(os.environ.get("DEFECT_STUDIO_CLUSTER_SCHEDULE_S", 120))
CALL_TIMEOUT_S = 60.0
_NOT_FETCHED = {"events.jsonl", "run.lock", RECORD}

EventSink = Callable[[dict], None]


# -- connecting --------------------------------------------------------------------------------
def connect(address: str) -> str:
    """Join the cluster at ``address`` as a Ray driver (ClusterError when it cannot)."""
    normalised = check_reachable(address)
    require_ray()
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # ray.init sets its own SIGTERM handler (exit at once); Cancel must reach ours instead
    handlers = _signal_handlers()
    try:
        ray.init(address=normalised, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.ERROR)
    except Exception as e:  # noqa: BLE001 - Ray raises many kinds; all mean "cannot join"
        raise ClusterError(f"cannot join the Ray cluster at {address}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        _restore_signal_handlers(handlers)
    return normalised


def _signal_handlers() -> dict:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}


def _restore_signal_handlers(handlers: dict) -> None:
    import signal

    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


def actor_name(project_root: str | Path, run_id: str) -> str:
    """The job's actor name: unique per project folder and run."""
    digest = hashlib.sha256(str(Path(project_root).resolve()).encode()).hexdigest()[:12]
    return f"ds-train-{digest}-{run_id}"


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


# -- the record in the run folder ---------------------------------------------------------
def read_record(run_dir: Path) -> dict | None:
    """The run's cluster.json; None when it trained here (or the file is unreadable)."""
    try:
        record = json.loads((Path(run_dir) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("address"), str) \
            or not isinstance(record.get("actor"), str) or len(record["actor"]) > 200:
        return None
    before = record.get("events_before", 0)
    if not isinstance(before, int) or isinstance(before, bool) or not 0 <= before < 10**9:
        record["events_before"] = 0  # a damaged count: keep no earlier event rather than fail
    if not isinstance(record.get("job_dir"), str):
        record["job_dir"] = ""
    return record


def _write_record(run_dir: Path, record: dict) -> None:
    from defect_studio.io.atomic import write_json_atomic

    write_json_atomic(run_dir / RECORD, record)


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def _keep_lines(path: Path, n: int) -> None:
    """Cut events.jsonl back to its first ``n`` events (before this cluster job)."""
    from defect_studio.io.atomic import atomic_write_bytes

    if not path.is_file():
        return
    lines = [ln for ln in path.read_bytes().splitlines(keepends=True) if ln.strip()][:n]
    atomic_write_bytes(path, b"".join(lines))


# -- train on the cluster ------------------------------------------------------------------------
def train_on_cluster(project_root: str | Path, config: Any, *, address: str,
                     run_id: str | None = None, resume: bool = False, gpus: int | None = None,
                     on_event: EventSink | None = None,
                     should_stop: Callable[[], bool] | None = None) -> str:
    """Train on the cluster at ``address``; returns the run id once the run folder is here.

    Raises as a local run does: UserError (the job's error message), CancelledError;
    ClusterError for what is the cluster's: unreachable, a node that cannot take the job,
    a worker that died (the run resumes from its last checkpoint).
    """
    from defect_studio.project.runs import release_run
    from defect_studio.training.runjob import (
        RunFolder,
        check_new_run_id,
        new_run_id,
        open_run_to_resume,
    )

    root = Path(project_root)
    runs_dir = root / "runs"
    if not (root / "project.sqlite").is_file():
        raise UserError(f"'{root}' is not a Defect Studio project (no project.sqlite)")
    lock_holder = RunFolder(None)
    if resume:
        run_dir = open_run_to_resume(runs_dir, run_id, lock_holder)
        run_id = run_dir.name
    else:
        check_new_run_id(runs_dir, run_id)
        run_id = run_id or new_run_id(runs_dir, config.model)
    if gpus is not None and config is not None:
        from defect_studio.training.distributed import check_parallel

        check_parallel(config, gpus, config.model)
    normalised = connect(address)
    try:
        with tempfile.TemporaryDirectory(prefix="ds-bundle-") as tmp:
            bundle = build_bundle(root, tmp)
            job = start_job(root, config, run_id, resume=resume, gpus=gpus, address=normalised,
                            bundle=bundle, lock_holder=lock_holder, on_event=on_event)
        return job.follow(should_stop)
    finally:
        release_run(lock_holder.run_lock)
        import ray

        ray.shutdown()


def start_job(root: Path, config: Any, run_id: str, *, resume: bool, gpus: int | None,
              address: str, bundle: Any, lock_holder: Any,
              on_event: EventSink | None) -> Job:
    """Start run ``run_id``'s job on the connected cluster (one detached actor); the local
    run folder exists when it returns (its lock in ``lock_holder.run_lock``)."""
    import ray

    from defect_studio.cluster.worker import TrainWorker
    from defect_studio.project.runs import hold_run, release_run

    runs_dir = root / "runs"
    run_dir = runs_dir / run_id
    n_gpus = _choose_gpus(config, gpus, resume, run_dir)
    n_cpus = max(1, int(getattr(config, "num_threads", None) or 1)) if config else 1
    if n_gpus == 0 and gpus:  # --gpus N on CPUs: N processes
        n_cpus *= gpus
    name = actor_name(root, run_id)
    try:
        old = ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        old = None
    if old is not None:  # a dead job's leftover (e.g. a cancelled one never fetched)
        ray.kill(old)
    actor = ray.remote(TrainWorker).options(
        name=name, namespace=NAMESPACE, lifetime="detached", max_concurrency=8,
        num_cpus=n_cpus, num_gpus=n_gpus, max_restarts=0).remote()
    hello = _hello(actor, address, n_cpus, n_gpus)
    n_sent, bytes_sent = _ship(actor, bundle)
    files = dict(bundle.files)
    events_before = 0
    if resume:
        events_before = _count_lines(run_dir / "events.jsonl")
        extra = build_run_files(run_dir, run_id)
        _ship_paths(actor, extra)
        files.update({rel: sha for rel, (sha, _) in extra.items()})
    else:
        run_dir.mkdir(parents=True, exist_ok=False)
        lock_holder.run_lock = hold_run(run_dir)
    try:
        job_dir = _call(actor.start.remote(files, run_id, config, resume,
                                           max(1, int(gpus or 1))))
    except BaseException:
        ray.kill(actor)
        if not resume:
            release_run(lock_holder.run_lock)
            lock_holder.run_lock = None
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    record = {"address": address, "actor": name, "namespace": NAMESPACE,
              "node": hello.get("host"), "pid": hello.get("pid"), "job_dir": job_dir,
              "events_before": events_before, "gpus": n_gpus, "cpus": n_cpus,
              "files_in_bundle": len(bundle.files), "bytes_in_bundle": bundle.bytes_total,
              "files_sent": n_sent, "bytes_sent": bytes_sent,
              "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "state": "training"}
    _write_record(run_dir, record)
    return Job(actor, root, run_dir, record, on_event, new_run=not resume)


def attach(project_root: str | Path, run_id: str, on_event: EventSink | None = None,
           should_stop: Callable[[], bool] | None = None) -> str | None:
    """Follow run ``run_id``'s cluster job again (after this computer lost it); returns the
    run id when it ended, None when the job no longer exists on the cluster."""
    from defect_studio.project.runs import hold_run, release_run, require_run_id

    root = Path(project_root)
    run_dir = root / "runs" / require_run_id(run_id)
    record = read_record(run_dir)
    if record is None or record.get("state") == "done":
        return None
    lock = hold_run(run_dir)
    try:
        connect(record["address"])
        import ray

        try:
            actor = ray.get_actor(record["actor"], namespace=record.get("namespace", NAMESPACE))
        except ValueError:
            return None
        _keep_lines(run_dir / "events.jsonl", record["events_before"])
        return Job(actor, root, run_dir, record, on_event, new_run=False).follow(should_stop)
    finally:
        release_run(lock)
        import ray

        ray.shutdown()


def pending_runs(project_root: str | Path) -> list[str]:
    """Runs of the project whose cluster job nobody follows: started on a cluster, not
    brought home yet (cluster.json "training"), and no process of this computer holds
    them. Opening the project re-attaches them (``follow_again``). Reads files only."""
    from defect_studio.project.runs import owner_alive, valid_run_id

    runs_dir = Path(project_root) / "runs"
    try:
        dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []
    out = []
    for run_dir in dirs:
        if not valid_run_id(run_dir.name):
            continue
        record = read_record(run_dir)
        if record is not None and record.get("state") == "training" \
                and owner_alive(run_dir) is not True and not _home(run_dir):
            out.append(run_dir.name)
    return out


def _home(run_dir: Path) -> bool:
    """The run's result is here already (the desktop died after fetching it)."""
    try:
        status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(status, dict) and status.get("state") == "finished" \
        and (run_dir / "model.pt").is_file()


def follow_again(project_root: str | Path, run_id: str, on_event: EventSink | None = None,
                 should_stop: Callable[[], bool] | None = None) -> str:
    """Re-attach to run ``run_id``'s cluster job and bring its result home (``train
    --attach RUN``, and the app when a project opens). Never trains: ClusterError with
    what to do when the cluster is unreachable or the job is gone (the run is then
    marked "lost" and Resume continues it from its last checkpoint)."""
    from defect_studio.project.runs import require_run_id
    from defect_studio.training.runjob import last_epoch

    root = Path(project_root)
    run_dir = root / "runs" / require_run_id(run_id)
    if not run_dir.is_dir():
        raise UserError(f"no run '{run_id}' in {root / 'runs'}")
    record = read_record(run_dir)
    if record is None or record.get("state") not in ("training", "lost"):
        raise UserError(f"run {run_id} has no cluster job to follow (it trained on this "
                        "computer, or its result is here already)")
    address = record["address"]
    try:
        check_reachable(address)
    except ClusterError as e:
        raise ClusterError(f"cluster at {address} unreachable: the job may still run there; "
                           f"open the project again or Resume run {run_id}") from e
    if attach(root, run_id, on_event=on_event, should_stop=should_stop) is None:
        _write_record(run_dir, {**record, "state": "lost"})
        raise ClusterError(f"job lost: the cluster at {address} no longer has run {run_id}'s "
                           f"job; Resume from the last checkpoint (epoch {last_epoch(run_dir)})")
    return run_id


def build_run_files(run_dir: Path, run_id: str) -> dict[str, tuple[str, Path]]:
    """The local run folder's files for a resume on the cluster: rel -> (sha256, path)."""
    from defect_studio.cluster.bundle import _SAFE_NAME
    from defect_studio.io.atomic import is_temp_name, sha256_file

    out = {}
    for p in sorted(Path(run_dir).iterdir()):
        if p.is_file() and not p.is_symlink() and p.name not in ("run.lock", RECORD) \
                and not is_temp_name(p.name) and _SAFE_NAME.match(p.name):
            out[f"runs/{run_id}/{p.name}"] = (sha256_file(p), p)
    return out


# -- helpers -------------------------------------------------------------------------------------
def _call(ref: Any, timeout: float = CALL_TIMEOUT_S) -> Any:
    import ray

    return ray.get(ref, timeout=timeout)


def _choose_gpus(config: Any, gpus: int | None, resume: bool, run_dir: Path) -> float:
    device = getattr(config, "device", None)
    if resume:
        try:
            device = json.loads((run_dir / "config.json").read_text()).get("device", "auto")
        except (OSError, ValueError, AttributeError):
            device = "auto"
    have = cluster_gpus()
    if device == "cpu":
        return 0
    if gpus is not None:
        if gpus > have:
            raise ClusterError(f"--gpus {gpus}: the cluster has {have:g} GPU(s)")
        return gpus
    if device == "cuda" and have < 1:
        raise ClusterError("--device cuda: the cluster has no GPU; use --device auto or cpu")
    return 1 if have >= 1 else 0


def _hello(actor: Any, address: str, n_cpus: int, n_gpus: float) -> dict:
    import ray

    from defect_studio import __version__

    try:
        hello = ray.get(actor.hello.remote(), timeout=SCHEDULE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        ray.kill(actor)
        res = ray.available_resources()
        raise ClusterError(
            f"no node of the cluster at {address} could take the job within "
            f"{SCHEDULE_TIMEOUT_S:.0f} s: it asks for {n_cpus} CPU(s) and {n_gpus:g} GPU(s), "
            f"free now: {res.get('CPU', 0):g} CPU(s), {res.get('GPU', 0):g} GPU(s) (the cluster "
            "is busy or too small)") from None
    except ray.exceptions.RayError as e:
        raise ClusterError(f"the cluster could not start the training worker: "
                           f"{_first_line(e)}") from None
    if hello.get("version") != __version__:
        ray.kill(actor)
        raise ClusterError(f"the cluster's node runs Defect Studio {hello.get('version')}, this "
                           f"computer {__version__}: install the same version on both")
    return hello


def _ship(actor: Any, bundle: Any) -> tuple[int, int]:
    items = {rel: (sha, bundle.sources[sha]) for rel, sha in bundle.files.items()}
    return _ship_paths(actor, items)


def _ship_paths(actor: Any, items: dict[str, tuple[str, Path]]) -> tuple[int, int]:
    """Send the files the node lacks, in batches of about SEND_BATCH_BYTES; (files, bytes)
    sent."""
    by_sha = {sha: path for sha, path in items.values()}
    missing = _call(actor.missing.remote(list(by_sha)))
    batch: dict[str, bytes] = {}
    size = sent = 0
    for sha in missing:
        data = Path(by_sha[sha]).read_bytes()
        sent += len(data)
        if hashlib.sha256(data).hexdigest() != sha:
            raise UserError(f"'{by_sha[sha]}' changed while it was being sent; train again")
        batch[sha] = data
        size += len(data)
        if size >= SEND_BATCH_BYTES:
            _call(actor.put.remote(batch), timeout=600)
            batch, size = {}, 0
    if batch:
        _call(actor.put.remote(batch), timeout=600)
    return len(missing), sent


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _localise(value: Any, job_dir: str, root: Path) -> Any:
    """Paths of the node's job folder in an event, as the same paths in the project here."""
    if isinstance(value, str) and job_dir and value.startswith(job_dir):
        return str(root) + value[len(job_dir):]
    if isinstance(value, dict):
        return {k: _localise(v, job_dir, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_localise(v, job_dir, root) for v in value]
    return value


def _store(run_dir: Path, files: dict[str, bytes]) -> None:
    """Write fetched run files; a model or checkpoint whose checksum does not match is
    skipped (it was caught mid-write: the next fetch brings it)."""
    from defect_studio.io.atomic import atomic_write_bytes

    for name, data in files.items():
        if name.endswith(".sha256"):
            continue
        digest = files.get(name + ".sha256")
        if digest is not None and hashlib.sha256(data).hexdigest() != digest.decode().strip():
            continue
        atomic_write_bytes(run_dir / name, data)
        if digest is not None:
            atomic_write_bytes(run_dir / (name + ".sha256"), digest)


class Job:
    """One cluster job followed from here: ``step`` polls it once, ``finish`` brings its run
    folder home once it ended (``follow`` does both for one job)."""

    def __init__(self, actor: Any, root: Path, run_dir: Path, record: dict,
                 on_event: EventSink | None, *, new_run: bool) -> None:
        self.actor, self.root, self.run_dir, self.record = actor, root, run_dir, record
        self.on_event, self.new_run = on_event, new_run
        self.since, self.cancel_sent, self.misses = 0, False, 0
        self.state, self.message = "training", ""

    def follow(self, should_stop: Callable[[], bool] | None) -> str:
        while not self.step(bool(should_stop is not None and should_stop())):
            time.sleep(POLL_S)
        return self.finish()

    def step(self, stop: bool = False) -> bool:
        """Poll once (cancel it first when ``stop``); True once the job has ended."""
        import ray

        run_dir, actor = self.run_dir, self.actor
        if stop and not self.cancel_sent:
            self.cancel_sent = True
            try:
                actor.cancel.remote()
            except ray.exceptions.RayError:
                pass
        try:
            reply = _call(actor.poll.remote(self.since), timeout=CALL_TIMEOUT_S)
            self.misses = 0
        except ray.exceptions.GetTimeoutError:
            self.misses += 1
            if self.misses < 3:
                return False
            raise ClusterError(
                f"lost touch with the cluster at {self.record['address']}; the job goes on "
                f"there: follow it again with: defect-studio train --project {self.root} "
                f"--resume {run_dir.name}") from None
        except ray.exceptions.RayActorError as e:
            _worker_died(run_dir, self.record, e, self.root)
        job_dir = str(self.record.get("job_dir") or "")
        for event in reply["events"]:
            event = _localise(event, job_dir, self.root)
            with open(run_dir / "events.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(event) + "\n")
            if event.get("event") in ("started", "checkpoint"):
                names = ["config.json", "status.json"]
                if event["event"] == "checkpoint":
                    names += ["checkpoint.pt", "checkpoint.pt.sha256"]
                try:
                    _store(run_dir, _call(actor.read.remote(names), timeout=600))
                except ray.exceptions.RayActorError as e:
                    _worker_died(run_dir, self.record, e, self.root)
            if self.on_event is not None:
                self.on_event(event)
        self.since = reply["count"]
        self.state, self.message = reply["state"], reply.get("message") or ""
        return self.state in ("finished", "failed", "cancelled")

    def finish(self) -> str:
        """Fetch the ended job's run folder, close the job; the run id, or the job's error."""
        import ray

        run_dir, actor, state = self.run_dir, self.actor, self.state
        names = [n for n in _call(actor.run_files.remote()) if n not in _NOT_FETCHED]
        digests = _call(actor.read.remote([n for n in names if n.endswith(".sha256")]))
        same = {n[:-len(".sha256")] for n, d in digests.items()  # fetched at a checkpoint
                if (run_dir / n).is_file() and (run_dir / n).read_bytes() == d
                and (run_dir / n[:-len(".sha256")]).is_file()}
        names = [n for n in names if n not in same and n[:-len(".sha256")] not in same]
        _store(run_dir, _call(actor.read.remote(names), timeout=1800) if names else {})
        try:
            _call(actor.close.remote())
        finally:
            ray.kill(actor)
        _write_record(run_dir, {**self.record, "state": "done", "outcome": state})
        if state == "finished":
            return run_dir.name
        if state == "cancelled":
            raise CancelledError(self.message or "training cancelled")
        if self.new_run and not (run_dir / "config.json").is_file():
            # it failed before the node made the run folder (no data...): no run, as locally
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise UserError(self.message or "training failed on the cluster")


def _worker_died(run_dir: Path, record: dict, e: BaseException, root: Path) -> None:
    from defect_studio.io.atomic import write_json_atomic
    from defect_studio.training.runjob import last_epoch

    text = str(e)
    epoch = last_epoch(run_dir)
    why = ("it ran out of memory (the node's memory monitor killed it); give the job a "
           "node with more memory or train at a smaller --size"
           if "memory" in text.lower() else f"{_first_line(e)}")
    if (run_dir / "checkpoint.pt").is_file():
        hint = (f"continue from its last checkpoint (epoch {epoch}) with: defect-studio train "
                f"--project {root} --cluster {record['address']} --resume {run_dir.name}")
    else:
        hint = "it died before its first checkpoint: start a new run"
    message = f"the cluster worker of run {run_dir.name} died: {why}; {hint}"
    write_json_atomic(run_dir / "status.json", {"state": "failed", "epoch": epoch,
                                                "message": message})
    _write_record(run_dir, {**record, "state": "done", "outcome": "worker died"})
    raise ClusterError(message) from None
