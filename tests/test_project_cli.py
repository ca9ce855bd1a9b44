"""The project commands of `defect-studio`: info, split, label, runs (run as real processes)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from defect_studio.cli import main
from defect_studio.io.images import write_png_atomic
from defect_studio.project import Project, write_json_atomic

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "defect_studio", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def small_project(tmp_path) -> Path:
    """6 images: 2 defective (one with a mask), 3 ok, 1 unlabeled, splits assigned."""
    rng = np.random.default_rng(0)
    root = tmp_path / "proj"
    with Project.create(root) as p:
        for i, label in enumerate(["defective", "defective", "ok", "ok", "ok", "unlabeled"]):
            path = tmp_path / "src" / f"part_{i}.png"
            write_png_atomic(path, rng.integers(0, 256, size=(16, 16), dtype=np.uint8))
            mask = None
            if i == 0:
                mask = np.zeros((16, 16), np.uint8)
                mask[2:5, 2:5] = 255
            p.add_image(path, label=label, mask=mask)
        p.assign_splits(seed=0)
    return root


def test_info_json_subprocess(small_project):
    r = cli("info", "--project", str(small_project), "--json")
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts == {
        "images": 6, "ok": 3, "defective": 2, "unlabeled": 1, "masked": 1, "defective_masked": 1,
        "splits": counts["splits"], "unassigned": 0, "types": {},
    }
    assert sum(counts["splits"].values()) == 6 and counts["splits"]["train"] >= 2


def test_info_table_works_while_app_holds_the_lock(small_project, capsys):
    with Project.open(small_project):  # the "GUI" holds the write lock
        assert main(["info", "--project", str(small_project)]) == 0
    out = capsys.readouterr().out
    assert "images" in out and "defective" in out and "unassigned" in out


def test_bad_project_folder_exits_2(tmp_path):
    r = cli("info", "--project", str(tmp_path / "nope"), "--json")
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "empty").mkdir()
    r = cli("split", "--project", str(tmp_path / "empty"))
    assert r.returncode == 2 and "not a Defect Studio project" in r.stderr


def test_split_command(small_project, capsys):
    with Project.open(small_project, readonly=True) as p:
        before = {r.id: r.split for r in p.images()}
    assert main(["split", "--project", str(small_project)]) == 0
    assert "assigned 0 unassigned images" in capsys.readouterr().out
    assert main(["split", "--project", str(small_project), "--all", "--seed", "7",
                 "--ratios", "1,1,1"]) == 0
    assert "assigned 6 unpinned images" in capsys.readouterr().out
    with Project.open(small_project, readonly=True) as p:
        after = {r.id: r.split for r in p.images()}
        assert set(after.values()) == {"train", "val", "test"}
    assert before and main(["split", "--project", str(small_project), "--all", "--seed", "7",
                            "--ratios", "1,1,1"]) == 0
    capsys.readouterr()
    with Project.open(small_project, readonly=True) as p:  # same seed, same split
        assert {r.id: r.split for r in p.images()} == after
    assert main(["split", "--project", str(small_project), "--ratios", "a,b,c"]) == 2
    assert "--ratios" in capsys.readouterr().err


def test_label_command(small_project, capsys):
    assert main(["label", "--project", str(small_project), "--label", "ok",
                 "6", "part_1.png"]) == 0
    assert "labelled 2 images 'ok'" in capsys.readouterr().out
    with Project.open(small_project, readonly=True) as p:
        assert p.image(6).label == "ok" and p.image(6).label_source == "user"
        assert p.find_image("part_1.png").label == "ok"
    # one unknown name: an error and nothing changed
    assert main(["label", "--project", str(small_project), "--label", "defective",
                 "3", "missing.png"]) == 2
    err = capsys.readouterr().err
    assert "missing.png" in err and "nothing was changed" in err
    with Project.open(small_project, readonly=True) as p:
        assert p.image(3).label == "ok"
    # image 1 has a defect mask: it cannot become OK
    assert main(["label", "--project", str(small_project), "--label", "ok", "1"]) == 2
    assert "delete its mask" in capsys.readouterr().err


def test_label_refused_while_app_holds_the_lock(small_project):
    with Project.open(small_project):
        r = cli("label", "--project", str(small_project), "--label", "ok", "3")
    assert r.returncode == 2 and "in use by another process" in r.stderr


def test_runs_command(small_project, capsys):
    assert main(["runs", "--project", str(small_project)]) == 0
    assert "no training runs yet" in capsys.readouterr().out
    run = small_project / "runs" / "r1"
    write_json_atomic(run / "config.json", {"model": "mffpa", "epochs": 2})
    write_json_atomic(run / "status.json", {"state": "finished", "epoch": 2})
    write_json_atomic(run / "metrics.json", {"ap": 0.91, "auc": 0.97})
    assert main(["runs", "--project", str(small_project), "--activate", "r1"]) == 0
    out = capsys.readouterr().out
    assert "* r1" in out and "0.9100" in out and "active run: r1" in out
    assert main(["runs", "--project", str(small_project), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["active"] == "r1"
    assert data["runs"][0]["state"] == "finished" and data["runs"][0]["model"] == "mffpa"
    assert main(["runs", "--project", str(small_project), "--activate", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
