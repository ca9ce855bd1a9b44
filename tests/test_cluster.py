"""Training on a Ray cluster (core/cluster): addresses, the shipped bundle, and end-to-end
runs on a Ray head on 127.0.0.1 that the tests start themselves (conftest.ray_head)."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from gui_support import TINY, copy_project

from defect_studio.cluster.address import ClusterError, check_reachable, parse_address
from defect_studio.cluster.bundle import build_bundle, check_bundle_path
from defect_studio.errors import ProjectError, UserError
from defect_studio.io.atomic import sha256_file


@pytest.mark.parametrize("text", [None, "", "   ", "host", "host:", ":6379", "host:0",
                                  "host:65536", "host:99999999", "host:-1", "host:abc",
                                  "../x:1", "a b:1", "http://h:1", "h/../x:1", 12345,
                                  "ray://", "x" * 300 + ":1"])
def test_bad_addresses_are_one_line_errors(text):
    with pytest.raises(ClusterError) as e:
        parse_address(text)
    assert "\n" not in str(e.value)


def test_addresses_parse():
    assert parse_address("10.0.0.5:6379") == ("", "10.0.0.5", 6379)
    assert parse_address(" ray://head.local:10001 ") == ("ray://", "head.local", 10001)
    assert parse_address("[::1]:6379") == ("", "::1", 6379)


def test_unreachable_cluster_fails_fast_in_the_cli(demo_project_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError, match="cannot reach"):
        check_reachable(f"127.0.0.1:{port}", timeout=2)
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "defect_studio", "train", "--project",
                           str(demo_project_dir), "--cluster", f"127.0.0.1:{port}", "--events"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and time.monotonic() - t < 60
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Ray cluster")
    assert json.loads(proc.stdout.splitlines()[-1])["event"] == "error"
    runs = demo_project_dir / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_bundle_holds_only_the_split_images_by_content(demo_project_dir, tmp_path):
    from defect_studio.project import Project

    with Project.open(demo_project_dir) as p:
        recs = p.images()
        p.set_split(recs[0].id, None)  # not training data: must not travel
        masked = [r for r in recs if r.has_mask and r.split is not None]
        p.save_predictions("x", [(recs[1].id, 0.5, False)])
        root_files = {p.image_path(r): r for r in recs}
    bundle = build_bundle(demo_project_dir, tmp_path)
    db = sqlite3.connect(tmp_path / "project.sqlite")
    rows = db.execute("SELECT id, path FROM images").fetchall()
    assert recs[0].id not in {r[0] for r in rows} and len(rows) == len(recs) - 1
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone() == (0,)
    by_id = {r.id: path for path, r in root_files.items()}
    for image_id, rel in rows:  # renamed to the sha256 of the bytes, which the bundle names
        sha = sha256_file(by_id[image_id])
        assert rel == f"images/{sha}{by_id[image_id].suffix.lower()}"
        assert bundle.files[rel] == sha and bundle.sources[sha] == by_id[image_id]
    assert {f"masks/{r.id}.png" for r in masked} <= set(bundle.files)
    assert bundle.n_images == len(rows) and bundle.files["project.sqlite"]


@pytest.mark.parametrize("rel", ["../x", "/etc/passwd", "images/../../x", "images/..",
                                 "images/.hidden", "runs/other/config.json", "masks/a/b.png",
                                 "runs/r1/../../x", "cache/x", "", 5, None, "images/a\nb"])
def test_bundle_paths_that_could_escape_are_refused(rel):
    with pytest.raises(ProjectError):
        check_bundle_path(rel, "r1")


def test_worker_refuses_damaged_or_foreign_files(tmp_path):
    import hashlib

    from defect_studio.cluster.worker import TrainWorker

    w = TrainWorker(str(tmp_path / "cache"))
    good = b"image bytes"
    sha = hashlib.sha256(good).hexdigest()
    assert w.missing([sha, sha]) == [sha]
    with pytest.raises(ProjectError, match="damaged"):
        w.put({sha: b"other bytes"})
    with pytest.raises(ProjectError, match="bad file hash"):
        w.put({"../../etc/passwd": good})
    w.put({sha: good})
    assert w.missing([sha]) == []
    with pytest.raises(ProjectError, match="bad file name"):
        w.start({"project.sqlite": sha, "../evil": sha}, "r1", None, False)
    with pytest.raises(ProjectError, match="not sent"):
        w.start({"project.sqlite": "0" * 64}, "r1", None, False)
    assert not (tmp_path / "evil").exists()


# -- end to end on a Ray head on 127.0.0.1 ------------------------------------------------------
def _cli(args, head, **kw):
    env = dict(head.env, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "defect_studio", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _events_until(proc, want, timeout=120):
    """Read events until one whose name is in ``want``; returns all read."""
    seen, t = [], time.monotonic()
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] in want or time.monotonic() - t > timeout:
            break
    return seen


def test_cluster_run_equals_the_local_run(ray_head, _trained_template, tmp_path):
    """The session's tiny local run "tiny", trained again on the cluster with the same config
    and seed: same metrics and threshold; the events streamed; the run folder came home."""
    root = copy_project(_trained_template, tmp_path / "proj")
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({**TINY, "input_size": list(TINY["input_size"])}))
    proc = _cli(["--project", str(root), "--config", str(cfg), "--run-id", "c1", "--events",
                 "--cluster", ray_head.address], ray_head)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "started" and names[-1] == "finished" and "progress" in names
    run, local = root / "runs" / "c1", root / "runs" / "tiny"
    for name in ("config.json", "model.pt", "checkpoint.pt", "metrics.json", "threshold.json",
                 "status.json", "events.jsonl"):
        assert (run / name).is_file(), name
    assert [json.loads(x)["event"] for x in (run / "events.jsonl").read_text().splitlines()] \
        == names
    m_cluster = json.loads((run / "metrics.json").read_text())
    m_local = json.loads((local / "metrics.json").read_text())
    for key in ("ap", "auc", "best_f1", "n", "n_pos", "split"):
        assert m_cluster[key] == pytest.approx(m_local[key], abs=1e-6), key
    assert json.loads((run / "threshold.json").read_text())["threshold"] == pytest.approx(
        json.loads((local / "threshold.json").read_text())["threshold"], abs=1e-6)
    record = json.loads((run / "cluster.json").read_text())
    assert record["outcome"] == "finished" and record["files_sent"] > 10

    from defect_studio.project import Project

    with Project.open(root, readonly=True) as p:  # it reads like any run of the project
        assert p.run("c1").state == "finished"


def test_disconnect_reattach_cancel_resume_and_a_dead_worker(ray_head, _trained_template,
                                                             tmp_path):
    """The desktop dies mid-run: the job goes on; `--resume RUN` follows it again and can
    cancel it; `--resume RUN --cluster` continues it on the cluster from its checkpoint,
    sending no image again; a worker that dies is a clear error and the run can resume."""
    root = copy_project(_trained_template, tmp_path / "proj")
    run = root / "runs" / "r"
    args = ["--project", str(root), "--model", "mffpa", "--epochs", "40", "--size", "32x32",
            "--device", "cpu", "--threads", "1", "--seed", "0"]
    # 1. the desktop is killed once the first checkpoint arrived
    proc = _cli([*args, "--run-id", "r", "--events", "--cluster", ray_head.address], ray_head)
    seen = _events_until(proc, {"checkpoint"})
    assert seen[-1]["event"] == "checkpoint" and seen[-1]["path"].startswith(str(root))
    proc.kill()
    proc.wait(timeout=30)
    assert (run / "checkpoint.pt").is_file() and (run / "cluster.json").is_file()
    # 2. reopening follows the job again (all its events), then Cancel stops it there
    proc = _cli(["--project", str(root), "--resume", "r", "--events"], ray_head)
    seen = _events_until(proc, {"progress"})
    assert seen[0]["event"] == "started"
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert json.loads(rest.splitlines()[-1])["event"] == "cancelled"
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "cancelled" and status["epoch"] >= 1
    record = json.loads((run / "cluster.json").read_text())
    assert record["outcome"] == "cancelled"
    n_events = len((run / "events.jsonl").read_text().splitlines())
    # 3. resume on the cluster from the checkpoint; then its worker dies
    proc = _cli(["--project", str(root), "--resume", "r", "--events", "--cluster",
                 ray_head.address], ray_head)
    seen = _events_until(proc, {"started"})
    assert seen[-1]["event"] == "started" and seen[-1]["start_epoch"] >= status["epoch"]
    record = json.loads((run / "cluster.json").read_text())
    assert record["files_sent"] <= 1 + 4, record  # the db snapshot + the run folder's files
    os.kill(record["pid"], signal.SIGKILL)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "worker of run r died" in err and "--resume r" in err, err
    assert json.loads(rest.splitlines()[-1])["event"] == "error"
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    assert len((run / "events.jsonl").read_text().splitlines()) > n_events
    from defect_studio.training.checkpoint import load_torch

    assert load_torch(run / "checkpoint.pt")["epoch"] >= 1  # intact: the run can resume


@pytest.mark.parametrize("text", ["", "a", "-1", "1.5", "0,,1", "2147483648", ",".join(
    str(i) for i in range(21))])
def test_bad_seed_lists_are_refused(text):
    from defect_studio.training.sweep import SweepError, parse_seeds

    with pytest.raises(SweepError):
        parse_seeds(text)


def test_predict_on_the_cluster_writes_the_local_csv(ray_head, _trained_template, tmp_path):
    """Scoring with Ray tasks over the torch-free runtime: the CSV and overlays of a local
    run, every image once, although the first task's worker died (retried); a bad file is
    its own error row."""
    from defect_studio.cli import main

    pkg = tmp_path / "pkg"
    assert main(["export-model", "--run", "tiny", "--project", str(_trained_template),
                 "--out", str(pkg)]) == 0
    images = tmp_path / "in"
    images.mkdir()
    for p in sorted((_trained_template / "images").rglob("*.png"))[:20]:
        (images / p.name).write_bytes(p.read_bytes())
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    assert main(["predict", "--model", str(pkg), str(images), "--out", str(tmp_path / "here"),
                 "--batch-size", "4"]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "defect_studio", "predict", "--model", str(pkg), str(images),
         "--out", str(tmp_path / "there"), "--batch-size", "4", "--cluster", ray_head.address],
        env=ray_head.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "scoring 21/21" in proc.stderr and "20 image(s) scored" in proc.stdout
    assert ray_head.scorer_died.is_file()  # a worker died, its chunk ran again
    here = (tmp_path / "here" / "predictions.csv").read_text().splitlines()
    there = (tmp_path / "there" / "predictions.csv").read_text().splitlines()
    assert there == here and len(there) == 1 + 21
    assert any("broken.png" in row and ",," in row for row in there)
    for png in (tmp_path / "here").glob("*_overlay.png"):
        assert (tmp_path / "there" / png.name).read_bytes() == png.read_bytes()



def test_predict_on_the_cluster_needs_a_package(_trained_template, tmp_path, capsys):
    from defect_studio.cli import main

    assert main(["predict", "--run", "tiny", "--project", str(_trained_template),
                 str(_trained_template / "images"), "--out", str(tmp_path / "x"),
                 "--cluster", "127.0.0.1:1"]) == 2
    assert "--model PACKAGE" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("content", ['{"address": 5, "actor": "a"}', "[1, 2]", "not json",
                                     '{"address": "h:1", "actor": "' + "a" * 300 + '"}', ""])
def test_a_damaged_cluster_record_is_ignored(tmp_path, content):
    from defect_studio.cluster.client import read_record

    (tmp_path / "cluster.json").write_text(content)
    assert read_record(tmp_path) is None


def test_a_hostile_cluster_record_fails_with_one_line(demo_project_dir):
    from defect_studio.cluster.client import read_record

    run = demo_project_dir / "runs" / "r"
    run.mkdir(parents=True)
    (run / "cluster.json").write_text(json.dumps({
        "address": "../../etc:1", "actor": "x", "events_before": float("nan"), "job_dir": 7,
        "state": "training"}))
    record = read_record(run)
    assert record["events_before"] == 0 and record["job_dir"] == ""
    proc = subprocess.run([sys.executable, "-m", "defect_studio", "train", "--project",
                           str(demo_project_dir), "--resume", "r"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cluster address")


def test_defect_studio_works_without_ray():
    """Ray is an optional extra: without it everything imports, and --cluster says what to
    install (a child process where `import ray` fails)."""
    code = ("import sys; sys.modules['ray'] = None\n"
            "import defect_studio.cli, defect_studio.cluster.client, defect_studio.cluster.cli\n"
            "import defect_studio.cluster.predict, defect_studio.cluster.sweep\n"
            "import defect_studio.training.cli, defect_studio.inference.cli\n"
            "from defect_studio.cluster.address import ClusterError, require_ray\n"
            "try:\n    require_ray()\nexcept ClusterError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'defect-studio[cluster]'" in proc.stdout


def test_mean_points_average_the_seeds_of_a_level():
    from defect_studio.training.sweep import mean_points

    points = [{"n": 4, "seed": 0, "ap": 0.5, "auc": 0.7, "train_s": 10.0},
              {"n": 0, "seed": 0, "ap": 0.2, "auc": None, "train_s": 4.0},
              {"n": 4, "seed": 1, "ap": 0.7, "auc": 0.9, "train_s": 20.0},
              {"n": 0, "seed": 1, "ap": None, "auc": None, "train_s": 5.0}]
    means = mean_points(points)
    assert [m["n"] for m in means] == [0, 4] and [m["runs"] for m in means] == [1, 2]
    assert means[1]["ap"] == pytest.approx(0.6) and means[1]["auc"] == pytest.approx(0.8)
    assert means[1]["train_s"] == pytest.approx(15.0) and means[0]["auc"] is None


# -- following a run again (train --attach RUN; the app does it when a project opens) ----------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("run_id", ["../x", "a/b", "", ".hidden", "x" * 300, "nope"])
def test_attach_refuses_bad_or_unknown_runs(tmp_path, run_id, capsys):
    from defect_studio.cli import main

    (tmp_path / "runs").mkdir()
    assert main(["train", "--project", str(tmp_path), "--attach", run_id]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x").exists()


def test_pending_runs_and_what_attach_says_without_a_job(tmp_path):
    from defect_studio.cluster.client import follow_again, pending_runs

    runs = tmp_path / "runs"
    address = f"127.0.0.1:{_closed_port()}"
    for name, state in (("here", None), ("home", "done"), ("away", "training"),
                        ("gone", "lost")):
        (runs / name).mkdir(parents=True)
        (runs / name / "status.json").write_text('{"state": "running"}')
        if state:
            (runs / name / "cluster.json").write_text(json.dumps(
                {"address": address, "actor": "a", "state": state}))
    (runs / "fetched").mkdir()  # the desktop died after the result came home
    (runs / "fetched" / "status.json").write_text('{"state": "finished"}')
    (runs / "fetched" / "model.pt").write_bytes(b"m")
    (runs / "fetched" / "cluster.json").write_text(json.dumps(
        {"address": address, "actor": "a", "state": "training"}))
    (runs / "bad").mkdir()
    (runs / "bad" / "cluster.json").write_text('{"address": 1, "state": "training"}')
    os.symlink(runs / "away", runs / "link")  # a symlinked run folder is not followed
    assert pending_runs(tmp_path) == ["away"]
    assert pending_runs(tmp_path / "missing") == []
    for name in ("here", "home"):
        with pytest.raises(UserError, match="no cluster job to follow"):
            follow_again(tmp_path, name)
    t = time.monotonic()
    with pytest.raises(ClusterError, match=f"cluster at {address} unreachable.*Resume run away"):
        follow_again(tmp_path, "away")
    assert time.monotonic() - t < 10
    assert json.loads((runs / "away" / "cluster.json").read_text())["state"] == "training"
