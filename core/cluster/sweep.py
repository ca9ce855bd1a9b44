"""The mask sweep's runs as parallel jobs on a Ray cluster (``sweep --cluster ADDRESS``).

``train_runs`` starts one cluster job per run (``client.start_job``: the same detached
actors as ``train --cluster``), as many at a time as the cluster has room for (its free
GPUs, else its free CPUs divided by the CPUs a job asks for), and follows them all from
one loop; the next waiting run starts when one ends. The training data travels once: the
node cache keeps it by sha256, so every run after the first sends nothing again. Each
finished run folder lands in the project as a local run's does; the sweep record and its
plot (defect_studio.training.sweep) are made from them exactly as for a local sweep.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from defect_studio.cluster.address import ClusterError
from defect_studio.errors import CancelledError, UserError


def _slots(config: Any) -> int:
    import ray

    free = ray.available_resources()
    if free.get("GPU", 0) >= 1 and getattr(config, "device", "auto") != "cpu":
        return max(1, int(free["GPU"]))
    per_job = max(1, int(getattr(config, "num_threads", None) or 1))
    return max(1, int(free.get("CPU", 0) // per_job))


def train_runs(project_root: str | Path, runs: list[tuple[str, Any]], *, address: str,
               emit: Callable[[str, dict], None],
               should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Train ``runs`` ([(run_id, config)]) in parallel on the cluster; run id -> seconds it
    trained. Raises the first run's error (UserError) or CancelledError after a Cancel
    (every running job is cancelled; finished runs stay)."""
    from defect_studio.cluster.bundle import build_bundle
    from defect_studio.cluster.client import POLL_S, connect, start_job
    from defect_studio.project.runs import release_run
    from defect_studio.training.runjob import RunFolder, check_new_run_id

    root = Path(project_root)
    for run_id, _ in runs:
        check_new_run_id(root / "runs", run_id)
    normalised = connect(address)
    import ray

    waiting = list(runs)
    running: list[tuple[Any, Any]] = []  # (job, lock holder)
    seconds: dict[str, float] = {}
    error: BaseException | None = None
    cancelled = False
    try:
        with tempfile.TemporaryDirectory(prefix="ds-bundle-") as tmp:
            bundle = build_bundle(root, tmp)
            slots = _slots(runs[0][1]) if runs else 1
            while waiting or running:
                stop = bool(should_stop is not None and should_stop()) or error is not None
                cancelled = cancelled or bool(should_stop is not None and should_stop())
                while waiting and len(running) < slots and not stop:
                    run_id, config = waiting.pop(0)
                    holder = RunFolder(None)
                    job = start_job(root, config, run_id, resume=False, gpus=None,
                                    address=normalised, bundle=bundle, lock_holder=holder,
                                    on_event=lambda e, r=run_id: emit(r, e))
                    running.append((job, holder))
                if stop:
                    waiting.clear()
                for job, holder in list(running):
                    if not job.step(stop):
                        continue
                    running.remove((job, holder))
                    try:
                        job.finish()
                        seconds[job.run_dir.name] = _train_seconds(job.run_dir)
                    except CancelledError:
                        cancelled = True
                    except (UserError, ray.exceptions.RayError) as e:
                        error = error or e
                    finally:
                        release_run(holder.run_lock)
                if running:
                    time.sleep(POLL_S)
    finally:
        for _job, holder in running:  # an error above: the jobs go on (train --resume RUN)
            release_run(holder.run_lock)
        ray.shutdown()
    if error is not None:
        if isinstance(error, UserError):
            raise error
        raise ClusterError(f"a sweep run failed on the cluster: {error}")
    if cancelled:
        raise CancelledError(f"sweep cancelled after {len(seconds)} of {len(runs)} runs")
    return seconds


def _train_seconds(run_dir: Path) -> float:
    try:
        return float(json.loads((run_dir / "metrics.json").read_text()).get("elapsed_s", 0.0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0
