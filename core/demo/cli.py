"""`defect-studio demo`: generate the demo project and print a summary."""

from __future__ import annotations

import argparse
import time

from defect_studio.demo.generator import DEMO_DEFAULTS, DemoSettingsError, generate_demo_project
from defect_studio.progress import progress_bar
from defect_studio.units import parse_size as _parse_size

VAL_SHARE = 0.15


def demo_splits(test_share: float) -> tuple[float, float, float]:
    """(train, val, test) ratios for a test share; the validation share stays 0.15."""
    try:
        t = float(test_share)
    except (TypeError, ValueError):
        t = float("nan")
    if not (0.05 <= t <= 0.75):  # also refuses NaN
        raise DemoSettingsError(
            f"--test-share must be between 0.05 and 0.75, got {test_share!r}")
    return (round(1.0 - VAL_SHARE - t, 6), VAL_SHARE, t)


def parse_size(text: str) -> tuple[int, int]:
    """Parse "256x256" into (width, height) (defect_studio.units.parse_size)."""
    return _parse_size(text, DemoSettingsError, "256x256")


def cmd_demo(args: argparse.Namespace) -> int:
    """Create the demo project in args.project; exit code 0, or UserError for bad input."""
    size = parse_size(args.size)
    splits = demo_splits(getattr(args, "test_share", DEMO_DEFAULTS["splits"][2]))
    started = time.perf_counter()

    progress = progress_bar("generating")

    project = generate_demo_project(
        args.project, count=args.count, size=size, seed=args.seed,
        defect_rate=args.defect_rate, progress=progress, splits=splits,
        defect_scale=getattr(args, "defect_scale", None),
    )
    try:
        c = project.counts()
        root = project.root
    finally:
        project.close()
    s = c["splits"]
    print(f"demo project created: {root}")
    print(f"  images     {c['images']} ({size[0]}x{size[1]} RGB, seed {args.seed})")
    print(f"  ok         {c['ok']}")
    print(f"  defective  {c['defective']} (all with masks: {c['masked']})")
    if getattr(args, "defect_scale", None) is not None:
        print(f"  defects    at scale {args.defect_scale:g} of a 256-px part (scratches "
              f"{3 * args.defect_scale:g}-{5 * args.defect_scale:g} px wide)")
    print(f"  splits     train {s['train']}, val {s['val']}, test {s['test']}")
    print(f"  took       {time.perf_counter() - started:.1f} s")
    return 0
