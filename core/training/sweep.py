"""How many masks do I need? A label-efficiency sweep: one run per number of pixel masks.

``run_sweep`` trains one run per level of ``pixel_labels`` (0, a share, all...) with the
same settings on the project's same splits, evaluates each on the test split, and
records test AP against the number of masks. It reports the same events as training
(each run's own events, plus ``sweep_started``, ``sweep_point`` and ``sweep_finished``),
checks ``should_stop`` between steps, and keeps its record in
``runs/.sweeps/<sweep_id>/sweep.json`` (a hidden folder: the runs list skips it; each
sweep run is an ordinary run folder ``runs/<sweep_id>-N<n>``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from defect_studio.errors import CancelledError, UserError
from defect_studio.training.config import KindConfig

SWEEPS_DIR = ".sweeps"
SWEEP_FILE = "sweep.json"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class SweepError(UserError):
    """A sweep that cannot run as asked (bad levels, no masks to sweep over)."""


def parse_levels(text: str, n_masked: int) -> list[int]:
    """"0,25%,50%,all" -> sorted distinct mask counts out of ``n_masked`` masked defects.

    A level is a count (``12``), a share (``25%``, rounded, at least 1 when above 0) or
    ``all``. Counts above ``n_masked`` are refused (the sweep would repeat ``all``)."""
    if not isinstance(text, str) or not text.strip():
        raise SweepError("give the mask counts to compare, e.g. --pixel-labels 0,25%,50%,all")
    out: set[int] = set()
    for raw in text.split(","):
        item = raw.strip().lower()
        if item == "all":
            out.add(n_masked)
            continue
        try:
            if item.endswith("%"):
                share = float(item[:-1])
                if not (math.isfinite(share) and 0 <= share <= 100):
                    raise ValueError
                n = int(math.floor(n_masked * share / 100 + 0.5))
                out.add(max(1, n) if share > 0 and n_masked else n)
            else:
                n = int(item)
                if n < 0:
                    raise ValueError
                if n > n_masked:
                    raise SweepError(f"pixel-label level {n} is more than the {n_masked} defective "
                                     "training images with masks; use 'all' or a smaller number")
                out.add(n)
        except ValueError:
            raise SweepError(f"bad pixel-label level {raw.strip()!r}: use a count (12), a share "
                             "(25%) or 'all'") from None
    if len(out) > 20:
        raise SweepError("at most 20 levels per sweep")
    return sorted(out)


def parse_seeds(text: str | None) -> list[int] | None:
    """"0,1,2" -> [0, 1, 2] (None: one run per level with the config's seed)."""
    if text is None:
        return None
    seeds: list[int] = []
    for raw in str(text).split(","):
        try:
            seed = int(raw.strip())
            if not 0 <= seed < 2**31:
                raise ValueError
        except ValueError:
            raise SweepError(f"bad seed {raw.strip()!r}: give whole numbers from 0, e.g. "
                             "--seeds 0,1,2") from None
        if seed not in seeds:
            seeds.append(seed)
    if not seeds or len(seeds) > 20:
        raise SweepError("give 1 to 20 seeds, e.g. --seeds 0,1,2")
    return seeds


def mean_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per mask count: the mean AP, AUC and train time over its seeds."""
    by_n: dict[int, list[dict[str, Any]]] = {}
    for p in points:
        if p.get("ap") is not None:
            by_n.setdefault(p["n"], []).append(p)
    out = []
    for n in sorted(by_n):
        group = by_n[n]
        aucs = [p["auc"] for p in group if p.get("auc") is not None]
        out.append({"n": n, "ap": sum(p["ap"] for p in group) / len(group),
                    "auc": sum(aucs) / len(aucs) if aucs else None,
                    "train_s": sum(p.get("train_s", 0) for p in group) / len(group),
                    "runs": len(group)})
    return out


def sweep_dir(project_root: str | Path, sweep_id: str) -> Path:
    return Path(project_root) / "runs" / SWEEPS_DIR / sweep_id


def read_sweep(path: str | Path) -> dict[str, Any]:
    """A sweep record (sweep.json in a sweep folder, or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SweepError(f"cannot read the sweep record {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise SweepError(f"{path} is not a sweep record")
    return data


def list_sweeps(project_root: str | Path) -> list[dict[str, Any]]:
    """All readable sweep records of a project, oldest first."""
    root = Path(project_root) / "runs" / SWEEPS_DIR
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            out.append(read_sweep(d))
        except SweepError:
            continue
    return sorted(out, key=lambda s: (str(s.get("created", "")), str(s.get("id", ""))))


def check_sweep_possible(project: Any) -> tuple[int, int]:
    """(masked defective training images, labelled test images) of an open project;
    SweepError with the reason when a sweep cannot run on it."""
    masked = [r for r in project.images(split="train", label="defective") if r.has_mask]
    n_test = len([r for r in project.images(split="test") if r.label in ("ok", "defective")])
    if not masked:
        raise SweepError("no defective training image has a mask, so there is nothing to sweep "
                         "over: paint masks on some defective images of the train split first")
    if not n_test:
        raise SweepError("the test split has no labelled image: a sweep compares test AP; "
                         "assign splits first")
    return len(masked), n_test


def _sweep_alive(record: dict[str, Any]) -> bool:
    """Whether another live process still runs this sweep (its pid, recorded)."""
    import os

    pid = record.get("pid")
    if record.get("state") != "running" or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep_state(record: dict[str, Any]) -> str:
    """The record's state, "interrupted" when it says running but its process is gone."""
    state = str(record.get("state", "unknown"))
    if state == "running" and not _sweep_alive(record):
        return "interrupted"
    return state


def run_sweep(project_root: str | Path, config: KindConfig | None, levels: str | None, *,
              sweep_id: str | None = None, on_event: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None, resume: str | None = None,
              cluster: str | None = None, seeds: list[int] | None = None) -> dict[str, Any]:
    """Train and test one run per level; returns the sweep record (see module docstring).

    ``resume`` continues the sweep of that id (cancelled, failed or killed): the runs
    already tested are kept, the others run with the record's own settings (levels, seeds);
    a run that stopped after an epoch checkpoint continues from it (on this computer).
    With ``seeds`` one run per level and seed (run ``<id>-N<n>-s<seed>``; each point has
    its ``seed``). With ``cluster`` (a Ray address) the runs train there as parallel jobs
    (defect_studio.cluster.sweep), then are tested here as local runs are."""
    import os

    from defect_studio.evaluation import evaluate_run
    from defect_studio.project import Project

    emit = on_event or (lambda e: None)
    stop = should_stop or (lambda: False)
    with Project.open(project_root, readonly=True) as p:
        n_masked, _ = check_sweep_possible(p)
    if resume is not None:
        if not isinstance(resume, str) or not _ID.match(resume):
            raise SweepError(f"bad sweep id {resume!r}: use letters, digits, '.', '_' and '-'")
        folder = sweep_dir(project_root, resume)
        if not (folder / SWEEP_FILE).is_file():
            raise SweepError(f"no sweep named {resume!r} in this project")
        record = read_sweep(folder)
        if record.get("state") == "finished":
            raise SweepError(f"sweep {resume!r} has finished: there is nothing to resume")
        if _sweep_alive(record):
            raise SweepError(f"sweep {resume!r} is still running (process {record['pid']})")
        from defect_studio.kinds import kind_of_model

        try:
            cfg = record["config"]
            config = kind_of_model(cfg.get("model")).load("config").from_dict(cfg)
            ns = sorted(set(record["n"]))
            if not ns or not all(type(n) is int for n in ns) or ns[0] < 0 or len(ns) > 20:
                raise ValueError(f"levels {record['n']!r}")
            seeds = record.get("seeds")
            if seeds is not None:
                seeds = parse_seeds(",".join(str(int(s)) for s in seeds
                                             if type(s) is int))
                if len(seeds) != len(record["seeds"]):
                    raise ValueError(f"seeds {record['seeds']!r}")
        except (KeyError, TypeError, ValueError, AttributeError, UserError) as e:
            raise SweepError(f"the record of sweep {resume!r} is damaged ({e})") from None
        if any(n > n_masked for n in ns):
            raise SweepError(f"sweep {resume!r} asked for {max(ns)} masks but only {n_masked} "
                             "defective training images have one now; start a new sweep")
        sweep_id = resume
    else:
        if config is None:
            raise SweepError("a new sweep needs its training settings")
        ns = parse_levels(levels, n_masked)
        sweep_id = sweep_id or "sweep-" + datetime.now().strftime("%Y%m%d-%H%M%S")
        if not _ID.match(sweep_id):
            raise SweepError(f"bad sweep id {sweep_id!r}: use letters, digits, '.', '_' and '-'")
        folder = sweep_dir(project_root, sweep_id)
        if folder.exists():
            raise SweepError(f"a sweep named {sweep_id!r} already exists; choose another name, "
                             f"or continue it with --resume {sweep_id}")
        folder.mkdir(parents=True)
        record = {
            "id": sweep_id, "state": "running", "levels": levels, "n": ns, "seeds": seeds,
            "n_masked": n_masked, "config": config.to_dict(), "points": [],
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    record["state"], record["pid"] = "running", os.getpid()
    record.pop("message", None)
    # run key ("<n>", or "<n>-s<seed>" with seeds) -> {run_id, state}
    runs: dict[str, Any] = record.setdefault("runs", {})
    # (key, run id, level, seed, config) of every run, levels first; the names are always
    # derived, never read back from the (editable) record
    plan = [(str(n) if seed is None else f"{n}-s{seed}",
             f"{sweep_id}-N{n}" if seed is None else f"{sweep_id}-N{n}-s{seed}", n, seed,
             config.replace(pixel_labels=n) if seed is None
             else config.replace(pixel_labels=n, seed=seed))
            for n in ns for seed in (seeds or [None])]
    done = {pt["run_id"] for pt in record["points"]
            if isinstance(pt, dict) and isinstance(pt.get("run_id"), str)}
    _save(folder, record)
    emit({"event": "sweep_started", "sweep_id": sweep_id, "n": ns, "n_masked": n_masked,
          "runs": len(plan), "cluster": cluster,
          "done": sorted({int(pt["n"]) for pt in record["points"]
                          if isinstance(pt, dict) and pt.get("run_id") in done}),
          "resumed": resume is not None})
    current: list[dict[str, Any]] = []  # the runs training now
    try:
        seconds: dict[str, float] = {}
        todo = [x for x in plan if x[1] not in done]
        if cluster and todo:  # every run at once, as far as the cluster has room
            from defect_studio.cluster.sweep import train_runs

            level_of = {run_id: n for _, run_id, n, _, _ in plan}
            to_train = []
            for key, run_id, _, _, cfg in todo:
                if _level_ready(project_root, run_id):
                    continue
                runs[key] = {"run_id": run_id, "state": "running"}
                current.append(runs[key])
                to_train.append((run_id, cfg))
            _save(folder, record)
            seconds = train_runs(
                project_root, to_train, address=cluster,
                emit=lambda r, e: emit({**e, "sweep_n": level_of[r], "sweep_run": r}),
                should_stop=stop)
        for i, (key, run_id, n, seed, cfg) in enumerate(plan):
            if run_id in done:
                continue
            if not cluster:
                runs[key] = {"run_id": run_id, "state": "running"}
                current = [runs[key]]
                _save(folder, record)
            t0 = time.monotonic()
            if not cluster:
                _train_level(project_root, cfg, run_id, stop,
                             lambda e, n=n, i=i, r=run_id: emit(
                                 {**e, "sweep_n": n, "sweep_index": i, "sweep_of": len(plan),
                                  "sweep_run": r}))
            train_s = seconds.get(run_id, time.monotonic() - t0)
            if stop():
                raise CancelledError(f"sweep cancelled after {len(record['points'])} of "
                                     f"{len(plan)} runs")
            r = evaluate_run(project_root, run_id, split="test")
            point = {"n": n, "run_id": run_id, "ap": r["ap_sklearn"], "ap_trapz": r["ap_trapz"],
                     "auc": r["auc"], "train_s": round(train_s, 1), "n_test": r["n"],
                     "n_test_pos": r["n_pos"]}
            if seed is not None:
                point["seed"] = seed
            record["points"].append(point)
            record["points"].sort(key=lambda pt: (pt["n"], pt.get("seed", -1)))
            runs[key] = {"run_id": run_id, "state": "done"}
            _save(folder, record)
            emit({"event": "sweep_point", "sweep_id": sweep_id, "index": i, "of": len(plan),
                  **point})
    except CancelledError:
        record["state"] = "cancelled"
        stopped = [r for r in current if r.get("state") == "running"]
        for r in stopped:
            r["state"] = "cancelled"  # its run folder says so too (status.json)
        _save(folder, record)
        emit({"event": "sweep_cancelled", "sweep_id": sweep_id, "done": len(record["points"]),
              "cancelled_run": stopped[0]["run_id"] if stopped else None})
        raise CancelledError(f"sweep {sweep_id} cancelled after {len(record['points'])} of "
                             f"{len(plan)} runs; continue it with: defect-studio sweep --project "
                             f"DIR --resume {sweep_id}") from None
    except BaseException as e:
        record["state"], record["message"] = "failed", str(e)
        for r in current:
            if r.get("state") == "running":
                r["state"] = "failed"
        _save(folder, record)
        raise
    record["state"] = "finished"
    _save(folder, record)
    emit({"event": "sweep_finished", "sweep_id": sweep_id, "points": record["points"]})
    return record


def _level_ready(project_root: str | Path, run_id: str) -> bool:
    """Whether the run of a level exists and finished (a resumed sweep only tests it); an
    unfinished one is removed, so that its level trains again from the start."""
    from defect_studio.project.runs import read_run

    run_dir = Path(project_root) / "runs" / run_id
    if not run_dir.exists():
        return False
    if read_run(run_dir).state == "finished":
        return True
    import shutil

    shutil.rmtree(run_dir)
    return False


def _train_level(project_root: str | Path, config: KindConfig, run_id: str,
                 stop: Callable[[], bool], emit: Callable[[dict], None]) -> None:
    """Train the run of one level (``config`` holds its pixel_labels and seed); a run of that
    name left by a stopped sweep continues from its checkpoint, or is used as it is when it
    had finished."""
    from defect_studio.project.runs import read_run
    from defect_studio.training import train
    from defect_studio.training.checkpoint import CHECKPOINT_FILE

    run_dir = Path(project_root) / "runs" / run_id
    if run_dir.exists():
        state = read_run(run_dir).state
        if state == "finished":
            return
        resumable = state in ("cancelled", "interrupted", "failed")
        if resumable and (run_dir / CHECKPOINT_FILE).is_file():
            train(project_root, None, run_id=run_id, resume=True, on_event=emit,
                  should_stop=stop)
            return
        # stopped before its first checkpoint: nothing to keep, the level starts again
        import shutil

        shutil.rmtree(run_dir)
    train(project_root, config, run_id=run_id, on_event=emit, should_stop=stop)


def _num(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _save(folder: Path, record: dict[str, Any]) -> None:
    from defect_studio.project.runs import write_json_atomic

    write_json_atomic(folder / SWEEP_FILE, record)


def cmd_sweep(args: Any) -> int:
    """Handler of `defect-studio sweep` (exit 0 finished, 2 user error, 3 cancelled)."""
    import sys

    from defect_studio.kinds import kind_of_model, kinds
    from defect_studio.training.cli import (
        EXIT_CANCELLED,
        _HumanPrinter,
        _print_json,
        _StopFlag,
        config_from_args,
    )

    resume = getattr(args, "resume", None)
    config = config_from_args(args)
    if not resume and kind_of_model(config.model).trains_on != "mixed":
        masked = ", ".join(m for k in kinds() if k.trains_on == "mixed" for m in k.models)
        raise SweepError(f"a sweep compares numbers of pixel masks, which only the mixed-"
                         f"supervision models use ({masked}), not {args.model!r}")
    stop = _StopFlag()
    stop.install()
    human = _HumanPrinter(sys.stdout)

    def sink(e: dict) -> None:
        if args.events:
            _print_json(e)
        elif e["event"] == "sweep_started":
            kept = f"; kept from before: {e['done']}" if e.get("done") else ""
            print(f"sweep {e['sweep_id']}: one run per mask count {e['n']} "
                  f"(of {e['n_masked']} masked defective training images){kept}", flush=True)
        elif e["event"] == "sweep_point":
            print(f"N = {e['n']:>4}: test AP {_num(e['ap'])}  AUC {_num(e['auc'])}  "
                  f"trained in {e['train_s']:.0f} s", flush=True)
        elif e["event"] in ("started", "finished", "cancelled"):
            human(e)

    try:
        record = run_sweep(args.project, None if resume else config, args.pixel_labels_levels,
                           sweep_id=args.sweep_id, on_event=sink, should_stop=stop,
                           resume=resume, cluster=getattr(args, "cluster", None),
                           seeds=parse_seeds(getattr(args, "seeds", None)))
    except CancelledError as e:
        print(str(e), file=sys.stderr, flush=True)
        return EXIT_CANCELLED
    if not args.events:
        print("\n| masks N | test AP | AUC | train time |\n|---|---|---|---|")
        for pt in record["points"]:
            seed = f" (seed {pt['seed']})" if "seed" in pt else ""
            print(f"| {pt['n']}{seed} | {_num(pt['ap'])} | {_num(pt['auc'])} | "
                  f"{pt['train_s']:.0f} s |")
        if record.get("seeds"):
            for pt in mean_points(record["points"]):
                print(f"| {pt['n']} (mean of {pt['runs']}) | {_num(pt['ap'])} | "
                      f"{_num(pt['auc'])} | {pt['train_s']:.0f} s |")
    return 0
