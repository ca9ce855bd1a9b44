"""CLI handlers of the project commands: info, split, label, runs (parser in core/cli.py)."""

from __future__ import annotations

import argparse
import json

from defect_studio.errors import ProjectError
from defect_studio.project.store import SPLITS, Project


def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def format_counts(counts: dict) -> str:
    """A small human-readable table of Project.counts()."""
    n = counts["images"]

    def pct(k: int) -> str:
        return f"{100.0 * k / n:5.1f} %" if n else "    - "

    lines = [f"images      {n:7d}"]
    for key in ("ok", "defective", "unlabeled", "masked"):
        lines.append(f"  {key:<10}{counts[key]:7d}  {pct(counts[key])}")
    if "defective_masked" in counts:
        lines.append(f"  defective with a mask: {counts['defective_masked']}")
    lines.append("splits")
    for s in SPLITS:
        lines.append(f"  {s:<10}{counts['splits'][s]:7d}  {pct(counts['splits'][s])}")
    lines.append(f"  {'unassigned':<10}{counts['unassigned']:7d}  {pct(counts['unassigned'])}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """`defect-studio info`: counts of images, labels, masks and splits."""
    # read-only: works while the app has the project open
    with Project.open(args.project, readonly=True) as project:
        counts = project.counts()
        active = project.active_run()
        types = project.box_counts()
    if args.json:
        _print_json({**counts, "types": types})
    else:
        print(f"project     {project.root}")
        print(format_counts(counts))
        if types:
            print("defect types (boxes / images)")
            for name, n in types.items():
                print(f"  {name:<20}{n['boxes']:7d} {n['images']:7d}")
        print(f"active run  {active or '-'}")
    return 0


def parse_ratios(text: str) -> tuple[float, float, float]:
    """'0.7,0.15,0.15' -> (0.7, 0.15, 0.15); ProjectError with an example otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise ProjectError(
            f"--ratios must be three non-negative numbers train,val,test such as "
            f"0.7,0.15,0.15; got '{text}'"
        )
    return values  # type: ignore[return-value]


def cmd_split(args: argparse.Namespace) -> int:
    """`defect-studio split`: assign splits (new images only, or all unpinned with --all)."""
    ratios = parse_ratios(args.ratios)
    with Project.open(args.project) as project:
        assigned = project.assign_splits(ratios, seed=args.seed, only_unassigned=not args.all)
        counts = project.counts()
    moved = sum(assigned.values())
    what = "unpinned" if args.all else "unassigned"
    print(f"assigned {moved} {what} images: "
          + ", ".join(f"{s} {assigned[s]}" for s in SPLITS))
    print(format_counts(counts))
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    """`defect-studio label`: set the label of images given by id, path or file name."""
    with Project.open(args.project) as project:
        ids: list[int] = []
        missing: list[str] = []
        for item in args.images:
            rec = None
            if item.isdigit():
                try:
                    rec = project.image(int(item))
                except ProjectError:
                    rec = None
            if rec is None:
                rec = project.find_image(item)
            if rec is None:
                missing.append(item)
            else:
                ids.append(rec.id)
        if missing:
            raise ProjectError(
                "no image found for: " + ", ".join(missing[:10])
                + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
                + "; nothing was changed"
            )
        ids = list(dict.fromkeys(ids))
        project.set_labels([(i, args.label) for i in ids], source="user")
    print(f"labelled {len(ids)} image{'s' if len(ids) != 1 else ''} '{args.label}'")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """`defect-studio runs`: list runs; --activate RUN makes one the active run."""
    if args.activate:
        with Project.open(args.project) as project:
            project.set_active_run(args.activate)
            runs, active = project.runs(), project.active_run()
    else:
        with Project.open(args.project, readonly=True) as project:
            runs, active = project.runs(), project.active_run()
    if args.json:
        _print_json({
            "active": active,
            "runs": [
                {"id": r.id, "state": r.state, "model": r.model, "created": r.created,
                 "epochs": r.epochs, "metrics": r.metrics, "threshold": r.threshold,
                 "path": str(r.path)}
                for r in runs
            ],
        })
        return 0
    if not runs:
        print("no training runs yet (start one with `defect-studio train`)")
        return 0
    print(f"  {'run':<24} {'state':<11} {'model':<12} {'epochs':>6} {'AP':>7} {'AUC':>7}  created")
    for r in runs:
        mark = "*" if r.id == active else " "
        print(f"{mark} {r.id:<24} {r.state:<11} {(r.model or '-'):<12} {r.epochs:>6} "
              f"{_metric(r.metrics, 'ap'):>7} {_metric(r.metrics, 'auc'):>7}  {r.created}")
    if args.activate:
        print(f"active run: {active}")
    return 0


def _metric(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    if value is None:  # evaluate may nest metrics per split or name AP variants
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and k.startswith(key + "_"):
                value = v
                break
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def cmd_restore(args: argparse.Namespace) -> int:
    """`defect-studio restore`: put a backup of project.sqlite back (latest, or --backup)."""
    from pathlib import Path

    from defect_studio.project import safety
    from defect_studio.project.lock import ProjectLock
    from defect_studio.project.store import DB_NAME, LOCK_NAME

    root = Path(args.project).expanduser().absolute()
    if not root.is_dir():
        raise ProjectError(f"project folder '{root}' does not exist")
    if args.list:
        backups = safety.list_backups(root)
        if not backups:
            print(f"no backups in {root / safety.BACKUP_DIR}")
        for b in backups:
            print(f"{b}  ({b.stat().st_size} bytes)")
        return 0
    if not (root / DB_NAME).exists() and not safety.list_backups(root) and not args.backup:
        raise ProjectError(f"'{root}' is not a Defect Studio project and has no backups")
    lock = ProjectLock(root / LOCK_NAME, root)
    lock.acquire()  # nobody may have it open for writing while its database is swapped
    try:
        result = safety.restore_backup(root, Path(args.backup) if args.backup else None)
    finally:
        lock.release()
    print(f"restored {result['restored']}")
    for p in result["kept_aside"]:
        print(f"kept the previous file as {p}")
    with Project.open(root, readonly=True) as project:
        print(format_counts(project.counts()))
    return 0
