"""The label-efficiency sweep: levels, the job end to end (real subprocess), cancelling."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from defect_studio.training.sweep import SweepError, list_sweeps, parse_levels, read_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_levels():
    assert parse_levels("0,25%,50%,all", 8) == [0, 2, 4, 8]
    assert parse_levels(" all , 0 , 3 ", 8) == [0, 3, 8]
    assert parse_levels("1%", 8) == [1]  # a share above 0 keeps at least one mask
    assert parse_levels("50%,4", 8) == [4]  # duplicates collapse


@pytest.mark.parametrize("bad", ["", "  ", "-1", "abc", "nan%", "150%", "-5%", "9", "../x",
                                 "1e999", "inf%", ",".join(str(i) for i in range(30))])
def test_bad_levels_are_refused_with_a_message(bad):
    with pytest.raises(SweepError):
        parse_levels(bad, 8)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["OMP_NUM_THREADS"] = "2"
    return env


def test_sweep_job_end_to_end(demo_project_dir):
    from gui_support import shrink_train_split

    from defect_studio.project import Project

    with Project.open(demo_project_dir) as p:
        shrink_train_split(p)  # 3 masked defective training images: short epochs
    cmd = [sys.executable, "-m", "defect_studio", "sweep", "--project", str(demo_project_dir),
           "--pixel-labels", "0,all", "--epochs", "1", "--size", "32x32", "--threads", "2",
           "--device", "cpu", "--sweep-id", "s1", "--events"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "sweep_started" and kinds[-1] == "sweep_finished"
    assert kinds.count("started") == 2 and kinds.count("sweep_point") == 2
    points = [e for e in events if e["event"] == "sweep_point"]
    n_all = events[0]["n_masked"]
    assert [p["n"] for p in points] == [0, n_all] and n_all > 0
    assert all(0.0 <= p["ap"] <= 1.0 and p["train_s"] > 0 for p in points)
    # the record, and two ordinary runs that used 0 and all masks on the same splits
    record = read_sweep(demo_project_dir / "runs" / ".sweeps" / "s1")
    assert record["state"] == "finished" and [p["n"] for p in record["points"]] == [0, n_all]
    assert [s["id"] for s in list_sweeps(demo_project_dir)] == ["s1"]
    for p in record["points"]:
        cfg = json.loads((demo_project_dir / "runs" / p["run_id"] / "config.json").read_text())
        assert cfg["pixel_labels"] == p["n"]
        assert (demo_project_dir / "runs" / p["run_id"] / "scores.csv").is_file()
    cfg0 = json.loads((demo_project_dir / "runs" / "s1-N0" / "config.json").read_text())
    assert cfg0["dyn_balance"] is False  # N = 0: dynamic balancing off, as published
    from defect_studio.project.runs import list_runs

    assert {r.id for r in list_runs(demo_project_dir / "runs")} == {"s1-N0", f"s1-N{n_all}"}


def test_sweep_refuses_bad_input(demo_project_dir, tmp_path):
    cmd = [sys.executable, "-m", "defect_studio", "sweep", "--project", str(demo_project_dir),
           "--pixel-labels", "0,999", "--epochs", "1"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "999" in out.stderr
    assert not (demo_project_dir / "runs" / ".sweeps").exists()


def test_a_killed_or_cancelled_sweep_resumes_keeping_its_tested_levels(
        demo_project_dir, _trained_template):
    import shutil

    from gui_support import shrink_train_split

    from defect_studio.errors import CancelledError
    from defect_studio.project import Project
    from defect_studio.training import TrainConfig
    from defect_studio.training.sweep import run_sweep, sweep_dir

    root = demo_project_dir
    with Project.open(root) as p:
        shrink_train_split(p, n_defective=2)
    cfg = TrainConfig(model="mffpa", epochs=2, input_size=(32, 32), device="cpu",
                      num_threads=2, val_every=0)
    # as `kill -9` during its second level leaves a sweep: level 0 tested (its run is an
    # ordinary finished run), the record "running" for a process that is gone
    shutil.copytree(_trained_template / "runs" / "tiny", root / "runs" / "c1-N0",
                    ignore=shutil.ignore_patterns("run.lock"))
    kept = {"n": 0, "run_id": "c1-N0", "ap": 0.5, "ap_trapz": 0.5, "auc": 0.5,
            "train_s": 1.0, "n_test": 7, "n_test_pos": 2}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = sweep_dir(root, "c1")
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({
        "id": "c1", "state": "running", "pid": dead.pid, "levels": "0,all", "n": [0, 2],
        "n_masked": 2, "config": cfg.to_dict(), "points": [kept],
        "runs": {"0": {"run_id": "c1-N0", "state": "done"}},
        "created": "2026-01-01T00:00:00Z"}))
    # resumed, then cancelled once level 2's first epoch is saved
    seen = {"epoch": False}

    def on_event(e):
        seen["epoch"] = seen["epoch"] or e["event"] == "epoch"

    with pytest.raises(CancelledError, match="--resume c1"):
        run_sweep(root, None, None, resume="c1", on_event=on_event,
                  should_stop=lambda: seen["epoch"])
    record = read_sweep(folder)
    assert record["state"] == "cancelled" and record["points"] == [kept]
    # the run that was cancelled is marked so, in the record and in its own folder
    assert record["runs"]["2"] == {"run_id": "c1-N2", "state": "cancelled"}
    run2 = root / "runs" / "c1-N2"
    assert json.loads((run2 / "status.json").read_text())["state"] == "cancelled"
    assert (run2 / "checkpoint.pt").is_file()
    # resumed again: level 0 is kept, level 2 continues from its first epoch
    events = []
    done = run_sweep(root, None, None, resume="c1", on_event=events.append)
    assert done["state"] == "finished" and [p["n"] for p in done["points"]] == [0, 2]
    assert done["points"][0] == kept
    started = [e for e in events if e["event"] == "started"]
    assert [(e["run_id"], e.get("start_epoch")) for e in started] == [("c1-N2", 1)]
    assert events[0]["done"] == [0] and events[0]["resumed"] is True
    saved = read_sweep(folder)
    assert saved["state"] == "finished" and saved["runs"]["2"]["state"] == "done"
    assert json.loads((run2 / "status.json").read_text())["state"] == "finished"
    # nothing left to resume; bad names are refused
    for bad, why in (("c1", "finished"), ("../c1", "bad sweep id"), ("nope", "no sweep")):
        with pytest.raises(SweepError, match=why):
            run_sweep(root, None, None, resume=bad)


def test_resume_refuses_a_damaged_record(demo_project_dir):
    from defect_studio.training.sweep import run_sweep, sweep_dir

    folder = sweep_dir(demo_project_dir, "h")
    folder.mkdir(parents=True)
    for levels, why in (([-1], "damaged"), ([10**9], "masks"), ("abc", "damaged"),
                        ([], "damaged"), ([1.5], "damaged"), ([True], "damaged"),
                        (None, "damaged"), ([[1]], "damaged")):
        (folder / "sweep.json").write_text(json.dumps({
            "id": "h", "state": "cancelled", "n": levels, "points": [],
            "config": {"model": "mffpa"}}))
        with pytest.raises(SweepError, match=why):
            run_sweep(demo_project_dir, None, None, resume="h")
    assert sorted(p.name for p in (demo_project_dir / "runs").iterdir()) == [".sweeps"]
