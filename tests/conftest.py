"""Shared fixtures. Tests use tiny generated images and few steps; real-size runs are benchmarks."""

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
# idle OpenMP threads sleep (defect_studio.threads): the suite slows in proportion, not
# several-fold, when the machine is busy
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# the Train page measures its time estimate only on its button (one test turns this on)
os.environ.setdefault("DEFECT_STUDIO_AUTO_ESTIMATE", "0")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


# `make test` runs the suite in 2 pytest-xdist workers on the 2 cores: one thread each
THREADS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:  # pragma: no cover
        pass


# The heaviest modules first (their time in a `make test` run, heaviest first), so that the
# two workers of `--dist loadscope` end together: with xdist's default order (most tests
# first) the GUI cluster module started last and one worker idled ~40 s at the end.
HEAVY_FIRST = (
    "test_cluster.py", "test_gui_training.py", "test_gui_cluster.py", "test_deploy_int8.py",
    "test_deploy.py", "test_deploy_kinds.py", "test_kinds_contract.py", "test_training_loop.py",
    "test_gui_anomaly.py", "test_anomaly.py", "test_models.py", "test_training_cli.py",
    "test_distributed.py", "test_evaluate_predict.py", "test_readme_api.py", "test_importers.py",
    "test_sweep.py", "test_defect_sizing.py", "test_gui_review.py", "test_gui_sweep.py",
    "test_fault_runs.py",
)


def pytest_collection_modifyitems(config, items):
    """Modules in HEAVY_FIRST order, then the rest as collected (stable: each module's
    tests keep their order). `make test` passes --no-loadscope-reorder to keep it."""
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _quiet_cpu_for_estimates(request, monkeypatch):
    """The suite loads its own machine (two workers, training subprocesses): the time
    estimate's busy check (training.estimate.busy_watch) would call many timings busy and
    keep none, so what the tests of its cache see would depend on the load. Here the CPU
    reads as quiet; the tests of the check itself are marked real_cpu_share."""
    if request.node.get_closest_marker("real_cpu_share") is None:
        from defect_studio.training import estimate

        monkeypatch.setattr(estimate, "cpu_share", lambda threads, seconds=0.2: 1.0)
        monkeypatch.setattr(estimate, "_system_busy_s", lambda: None)


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory):
    """A tiny demo project made once per session (48 images of 64x64, ~25 % defective)."""
    from defect_studio.demo import generate_demo_project

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


@pytest.fixture
def dialogs(monkeypatch):
    """Message boxes are recorded as (title, text) instead of blocking the test."""
    from PySide6.QtWidgets import QMessageBox

    seen: list[tuple[str, str]] = []

    def fake(parent, title, text, *args, **kwargs):
        seen.append((title, text))
        return QMessageBox.StandardButton.Ok

    for name in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(fake))
    return seen


@pytest.fixture(scope="session")
def _trained_template(_demo_template, tmp_path_factory):
    """The tiny demo project with one tiny trained run "tiny" (trained once per session)."""
    from gui_support import trained_template

    return trained_template(_demo_template, tmp_path_factory)


@pytest.fixture
def trained_project(_trained_template, tmp_path):
    """A fresh, writable copy of the trained project, with "tiny" as the active run."""
    from gui_support import copy_project

    from defect_studio.project import Project

    p = Project.open(copy_project(_trained_template, tmp_path / "proj"))
    p.set_active_run("tiny")
    yield p
    p.close()


@pytest.fixture
def isolated_qsettings(tmp_path):
    """Own QSettings for the test: no state from the user's real app or other tests."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                      str(tmp_path / "settings"))
    QApplication.setOrganizationName("DefectStudioTest")
    yield


@pytest.fixture
def label_window_on(qtbot):
    """open(project_dir, size=(1000, 700)) -> a shown MainWindow on that project, Label page."""
    from defect_studio.app.shell.window import MainWindow

    windows = []

    def open_(project_dir, size=(1000, 700)):
        win = MainWindow()
        qtbot.addWidget(win)
        win.resize(*size)
        with qtbot.waitExposed(win):
            win.show()
        assert win.open_project(project_dir)
        win.tabs.setCurrentWidget(win.label_page)
        windows.append(win)
        return win

    yield open_
    for win in windows:
        win.close()


@pytest.fixture
def window(demo_project_dir, label_window_on):
    """The main window on the demo project, Label page shown (the GUI tests' default)."""
    return label_window_on(demo_project_dir)


@pytest.fixture
def demo_project(demo_project_dir):
    """The tiny demo project, open (closed after the test)."""
    from defect_studio.project import Project

    p = Project.open(demo_project_dir)
    yield p
    p.close()


@pytest.fixture
def box_project(tmp_path):
    """A tiny open project with typed boxes (tests/detection_fixtures.py)."""
    from detection_fixtures import make_box_project

    from defect_studio.project import Project

    p = Project.open(make_box_project(tmp_path / "boxes"))
    yield p
    p.close()


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 (2 CPUs) shared by the tests of a module (tests/cluster_support.py).
    Per module, not per session: the two cluster modules run first (HEAVY_FIRST) on two
    workers anyway, and an idle head kept ~0.03 of a core busy for the rest of the run."""
    pytest.importorskip("ray")
    from cluster_support import RayHead

    head = RayHead().start()
    yield head
    head.stop()
