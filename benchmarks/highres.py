"""Large parts with small defects (issue 18, item 4): the size the rule picks, test AP and
training time, per case, preset and mask setting.

Cases:
  demo      the demo generator at --demo-size (default 1024x1024) with --defect-scale 1:
            scratches 3-5 px wide, cracks 3-4.5 px, pits 10-18 px, on a large part
  magnetic  the magnetic-tile data set at its own size (../shared/datasets/magnetic-tile),
            imported by reference

For each case, each preset (--presets, default quick,thorough) and each mask setting
(--masks: "all" = every defective image keeps its mask, "none" = a copy of the project
with every mask deleted: image labels only, as in a project that never had masks, so the
size rule cannot measure the defects either) it trains once with the size from the data
(the defect rule of defect_studio.training.sizing), evaluates on the test split and
prints one row: the input size and crops the rule chose with its reason (crops per training
step, tiles per image the test split was scored on through evaluate_run), test AP, AUC,
epochs and training time (the run's own elapsed_s). A --max-minutes budget (default 15)
caps each training run.

    python benchmarks/highres.py                                  # the full table: hours
    python benchmarks/highres.py --cases demo --presets quick --masks all,none
    python benchmarks/highres.py --smoke                          # 1 epoch, tiny: minutes

Nothing is written outside a temporary folder unless --json FILE is given (one JSON line
per row appended).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DATASETS = REPO.parent / "shared" / "datasets"
SPLIT = (0.6, 0.15, 0.25)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="demo,magnetic")
    p.add_argument("--presets", default="quick,thorough")
    p.add_argument("--masks", default="all,none", help="all, none, or both (comma-separated)")
    p.add_argument("--demo-size", default="1024x1024")
    p.add_argument("--demo-count", type=int, default=240)
    p.add_argument("--magnetic", default=str(DATASETS / "magnetic-tile"))
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--max-minutes", type=float, default=15.0, help="training budget per run")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mil", action="store_true",
                   help="mil_crops: image-label-only defectives train their top tile, and a "
                        "project without masks is sized by the assumed defect width")
    p.add_argument("--no-drafts", action="store_true",
                   help="draft_masks off: a project without masks trains on image labels only "
                        "(sized from the images) instead of on draft masks")
    p.add_argument("--smoke", action="store_true",
                   help="check the script: demo only, 48 images of 384x384, 1 epoch, quick")
    p.add_argument("--json", help="append each row as one JSON line to this file")
    return p.parse_args(argv)


def mask_levels(text: str) -> list[str]:
    """The --masks settings in the order given; anything but "all"/"none" is refused."""
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item not in ("all", "none"):
            raise SystemExit(f"--masks takes all and/or none, got {item!r}")
        if item not in out:
            out.append(item)
    if not out:
        raise SystemExit("--masks is empty")
    return out


def build_case(name: str, root: Path, args: argparse.Namespace) -> Path:
    """The project of one case under ``root`` (split, seeded)."""
    from defect_studio.demo.cli import parse_size
    from defect_studio.project import Project

    proj = root / name
    if name == "demo":
        from defect_studio.demo import generate_demo_project

        p = generate_demo_project(proj, count=args.demo_count, size=parse_size(args.demo_size),
                                  seed=args.seed, defect_rate=0.25, splits=SPLIT,
                                  defect_scale=1.0)
        p.close()
    elif name == "magnetic":
        from defect_studio.io.importers import import_dataset

        data = Path(args.magnetic)
        if not data.is_dir():
            raise SystemExit(f"magnetic-tile not found at {data}")
        p = Project.create(proj)
        report = import_dataset(data, p, fmt="pairs", copy=False)
        if report.imported == 0:
            raise SystemExit(f"no image imported from {data}")
        p.assign_splits(SPLIT, seed=args.seed, only_unassigned=False)
        p.close()
    else:
        raise SystemExit(f"unknown case {name!r}: choose demo, magnetic")
    return proj


def without_masks(proj: Path) -> Path:
    """A copy of the project with every mask deleted (made once)."""
    from defect_studio.project import Project

    dst = proj.with_name(proj.name + "-nomasks")
    if not dst.exists():
        shutil.copytree(proj, dst, ignore=shutil.ignore_patterns("project.lock", "runs"))
        with Project.open(dst) as p:
            for r in p.images(has_mask=True):
                p.delete_mask(r.id)
    return dst


def run_one(proj: Path, preset: str, masks: str, args: argparse.Namespace) -> dict:
    from defect_studio.evaluation import evaluate_run
    from defect_studio.project import Project
    from defect_studio.training import TrainConfig, train
    from defect_studio.training.estimate import estimate_time

    overrides: dict = {"seed": args.seed, "max_minutes": args.max_minutes}
    if args.epochs:
        overrides["epochs"] = args.epochs
    if args.threads:
        overrides["num_threads"] = args.threads
    if args.mil:
        overrides["mil_crops"] = True
    if args.no_drafts:
        overrides["draft_masks"] = False
    cfg = TrainConfig.preset(preset, **overrides)
    with Project.open(proj, readonly=True) as p:
        est = estimate_time(p, cfg, use_cache=False)
    notes: list[str] = []
    t0 = time.perf_counter()
    run_id = train(proj, cfg, on_event=lambda e: notes.extend(e.get("notes") or [])
                   if e["event"] == "started" else None)
    wall = time.perf_counter() - t0
    run = proj / "runs" / run_id
    saved = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    test = evaluate_run(proj, run_id, split="test")
    reason = next((n for n in notes if str(n).startswith("input ")), "")
    from defect_studio.kinds.segdec.tiles import tile_boxes

    crop = saved.get("crop_size")
    # how the test split was scored (evaluate_run -> the run's Predictor): a segdec run
    # trained on crops scores crop-size tiles (kinds/segdec/tiles.py)
    tiles = (len(tile_boxes(saved["input_size"], crop))
             if crop and saved.get("model") in ("mffpa", "mixsup") else 1)
    return {"case": proj.name.removesuffix("-nomasks"), "preset": preset, "masks": masks,
            "input_size": saved["input_size"], "crop_size": crop,
            "crops_per_step": saved.get("crops_per_step"), "scored_tiles": tiles,
            "reason": reason, "test_ap": test.get("ap"), "test_auc": test.get("auc"),
            "epochs": metrics.get("epochs"), "train_s": metrics.get("elapsed_s"),
            "wall_s": round(wall, 1), "estimate_s": round(est.seconds, 1)}


def fmt_row(r: dict) -> str:
    size = "x".join(str(v) for v in r["input_size"])
    crop = "x".join(str(v) for v in r["crop_size"]) if r["crop_size"] else "-"
    if r["crop_size"]:  # crops per step and the tiles the test split was scored on
        crop += (f" ({r.get('crops_per_step') or 1}/step, "
                 f"{r.get('scored_tiles', 1)} tile{'s' if r.get('scored_tiles', 1) != 1 else ''})")
    ap = "n/a" if r["test_ap"] is None else f"{r['test_ap']:.3f}"
    auc = "n/a" if r["test_auc"] is None else f"{r['test_auc']:.3f}"
    return (f"| {r['case']} | {r['preset']} | {r['masks']} | {size} | {crop} | {ap} | {auc} | "
            f"{r['epochs']} | {r['train_s']:.0f} | {r['estimate_s']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.cases, args.presets, args.epochs = "demo", "quick", 1
        args.demo_count, args.demo_size = 48, "384x384"
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    levels = mask_levels(args.masks)
    tmp = Path(tempfile.mkdtemp(prefix="highres-"))
    rows = []
    print(f"torch threads {torch.get_num_threads()}; training budget {args.max_minutes:g} min "
          "per run", flush=True)
    print("| case | preset | masks | input | crops | test AP | test AUC | epochs | train s "
          "| estimate s |\n|---|---|---|---|---|---|---|---|---|---|", flush=True)
    try:
        for case in cases:
            proj = build_case(case, tmp, args)
            for preset in presets:
                for masks in levels:
                    where = proj if masks == "all" else without_masks(proj)
                    r = run_one(where, preset, masks, args)
                    rows.append(r)
                    print(fmt_row(r), flush=True)
                    if args.json:
                        with open(args.json, "a", encoding="utf-8") as f:
                            f.write(json.dumps(r) + "\n")
        print()
        for r in rows:
            print(f"{r['case']} {r['preset']} {r['masks']}: {r['reason']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
