"""Shared fixtures. Tests use tiny generated images and few steps; real-size runs are benchmarks."""

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "2")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(2)
    except ImportError:  # pragma: no cover
        pass


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory):
    """A tiny demo project made once per session (48 images of 64x64, ~25 % defective)."""
    from core.demo import generate_demo_project

    root = tmp_path_factory.mktemp("demo_template") / "demo"
    project = generate_demo_project(root, count=48, size=(64, 64), seed=1, defect_rate=0.25)
    project.close()
    return root


@pytest.fixture
def demo_project_dir(_demo_template, tmp_path):
    """A fresh copy of the tiny demo project, safe to modify."""
    dst = tmp_path / "demo"
    shutil.copytree(_demo_template, dst, ignore=shutil.ignore_patterns("project.lock"))
    return dst


@pytest.fixture
def magnetic_tile_dir():
    d = DATASETS / "magnetic-tile"
    if not d.is_dir():
        pytest.skip(f"real data set not found at {d} (../shared/datasets is absent)")
    return d
