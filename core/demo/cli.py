"""`defect-studio demo`: generate the demo project and print a summary."""

from __future__ import annotations

import argparse
import sys
import time

from core.demo.generator import DemoSettingsError, generate_demo_project


def parse_size(text: str) -> tuple[int, int]:
    """Parse "256x256" into (width, height)."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise DemoSettingsError(
            f"--size must be WIDTHxHEIGHT, e.g. 256x256; got '{text}'"
        ) from None


def cmd_demo(args: argparse.Namespace) -> int:
    """Create the demo project in args.project; exit code 0, or UserError for bad input."""
    size = parse_size(args.size)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and (done == total or done % 25 == 0):
            print(f"\rgenerating {done}/{total}", end="\n" if done == total else "",
                  file=sys.stderr, flush=True)

    project = generate_demo_project(
        args.project, count=args.count, size=size, seed=args.seed,
        defect_rate=args.defect_rate, progress=progress,
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
    print(f"  splits     train {s['train']}, val {s['val']}, test {s['test']}")
    print(f"  took       {time.perf_counter() - started:.1f} s")
    return 0
