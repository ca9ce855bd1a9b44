"""Small builders shared by the fault tests (tiny images, tiny projects)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from defect_studio.io.images import write_png_atomic

REPO = Path(__file__).resolve().parents[2]


def png(path: Path, seed: int = 0, size: int = 16) -> Path:
    """A small random RGB PNG (distinct content per seed)."""
    rng = np.random.default_rng(seed)
    write_png_atomic(path, rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return path


def tiny_project(root: Path, n: int = 4, *, copy: bool = True, src: Path | None = None):
    """A closed project with n images (every second one defective with a mask)."""
    from defect_studio.project import Project

    src = src or root.parent / (root.name + "_src")
    src.mkdir(parents=True, exist_ok=True)
    with Project.create(root) as p:
        for i in range(n):
            f = png(src / f"img{i}.png", seed=i)
            mask = None
            if i % 2:
                mask = np.zeros((16, 16), np.uint8)
                mask[4:8, 4:8] = 255
            p.add_image(f, copy=copy, label="ok" if i % 2 == 0 else "defective", mask=mask)
        p.assign_splits()
    return root


def cli(*argv: str) -> subprocess.CompletedProcess:
    """Run `python -m defect_studio.cli ARGV` in a subprocess (this worktree's code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "defect_studio", *argv], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)
