"""`defect-studio train`: options into TrainConfig, and --events in a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from defect_studio.cli import build_parser
from defect_studio.training import TrainConfig
from defect_studio.training.cli import config_from_args
from defect_studio.training.config import TrainConfigError


def parse(*argv):
    return build_parser().parse_args(["train", "--project", "P", *argv])


def test_options_override_preset_and_config_file(tmp_path):
    cfg = config_from_args(parse("--preset", "quick", "--epochs", "2", "--size", "64x32",
                                 "--pixel-labels", "3", "--seed", "7", "--model", "mffpa"))
    assert (cfg.epochs, cfg.input_size, cfg.pixel_labels, cfg.seed, cfg.model) == (
        2, (64, 32), 3, 7, "mffpa")
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"lr": 0.2, "dilate": 1}))
    cfg = config_from_args(parse("--preset", "quick", "--config", str(file)))
    quick = config_from_args(parse("--preset", "quick"))
    assert (cfg.lr, cfg.dilate, cfg.epochs) == (0.2, 1, quick.epochs)
    file.write_text(json.dumps({"learning_rate": 0.2}))
    with pytest.raises(TrainConfigError, match="learning_rate"):
        config_from_args(parse("--config", str(file)))
    with pytest.raises(TrainConfigError, match="WIDTHxHEIGHT"):
        config_from_args(parse("--size", "large"))


def test_without_preset_train_builds_what_the_app_trains(tmp_path):
    """No --preset: the app's default preset for every kind (not the dataclass defaults,
    which were a 30-epoch, 512-px run for MFFPA), with the app's learning-rate rule."""
    from defect_studio.app.train.state import TrainState, preset_config
    from defect_studio.kinds import kinds

    for kind in kinds():
        config_class = kind.load("config")
        for model in kind.models:
            plain = config_from_args(parse("--model", model))
            assert plain.to_dict() == preset_config("quick", model).to_dict(), model
            assert plain.to_dict() == config_from_args(
                parse("--model", model, "--preset", "quick")).to_dict()
            assert plain.to_dict() != config_class(model=model).to_dict(), model
    assert TrainState(availability={}).preset == "quick"
    # a --config file alone is a config as Python reads it (a saved run's trains the same)
    file = tmp_path / "c.json"
    file.write_text(json.dumps({"lr": 0.003}))
    cfg = config_from_args(parse("--config", str(file)))
    assert cfg.to_dict() == TrainConfig.from_file(file).to_dict() and cfg.lr == 0.003
    cfg = config_from_args(parse("--preset", "thorough", "--epochs", "3"))
    assert (cfg.epochs, cfg.max_side) == (3, 640)


def _cli(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "defect_studio", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_train_events_in_a_subprocess(demo_project_dir):
    proc = _cli(["--project", str(demo_project_dir), "--model", "mffpa", "--epochs", "1",
                 "--size", "32x32", "--device", "cpu", "--run-id", "cli", "--events"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    assert events[0]["event"] == "started" and events[-1]["event"] == "finished"
    assert all(list(e)[0] == "event" for e in events)
    assert (events[-1]["run_id"] == "cli"
            and (demo_project_dir / "runs" / "cli" / "model.pt").is_file())


def test_user_error_exits_2_with_a_message(demo_project_dir):
    proc = _cli(["--project", str(demo_project_dir / "nope"), "--events"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "error" in err.lower() and json.loads(out.splitlines()[-1])["event"] == "error"


def test_sigterm_cancels_with_exit_3(demo_project_dir):
    proc = _cli(["--project", str(demo_project_dir), "--model", "mffpa", "--epochs", "50",
                 "--size", "32x32", "--device", "cpu", "--run-id", "sig", "--events"])
    seen = []
    for line in proc.stdout:  # wait until training runs, then ask it to stop
        seen.append(json.loads(line))
        if seen[-1]["event"] == "progress":
            proc.send_signal(signal.SIGTERM)
            break
    t = time.monotonic()
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert json.loads(rest.splitlines()[-1])["event"] == "cancelled"
    assert time.monotonic() - t < 60
    status = json.loads((demo_project_dir / "runs" / "sig" / "status.json").read_text())
    assert status["state"] == "cancelled"


def test_single_options_override_the_preset():
    from defect_studio.cli import build_parser
    from defect_studio.training.cli import config_from_args

    args = build_parser().parse_args(
        ["train", "--project", "P", "--preset", "quick", "--lr", "0.003", "--threads", "1",
         "--augment", "--size", "96x64"])
    cfg = config_from_args(args)
    assert cfg.lr == 0.003 and cfg.num_threads == 1 and cfg.augment is True
    assert tuple(cfg.input_size) == (96, 64)
    # what the options leave alone comes from the preset
    quick = config_from_args(
        build_parser().parse_args(["train", "--project", "P", "--preset", "quick"]))
    assert quick.augment is False and quick.epochs == cfg.epochs
    assert quick.cpu_bf16 is True and cfg.cpu_bf16 is True  # the quick preset's measured default
    off = config_from_args(build_parser().parse_args(
        ["train", "--project", "P", "--preset", "quick", "--no-cpu-bf16"]))
    assert off.cpu_bf16 is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--project", "P", "--cpu-bf16=yes"])


def test_no_defective_image_names_the_good_parts_model(demo_project_dir, capsys):
    """`train` of a segmentation model on a project whose defects were all relabelled OK
    says which model trains on good parts alone (the Train page says the same)."""
    from defect_studio.cli import main
    from defect_studio.project import Project

    with Project.open(demo_project_dir) as p:
        defects = p.images(label="defective")
        for r in defects:
            if r.has_mask:
                p.delete_mask(r.id)
        p.set_labels([(r.id, "ok") for r in defects])
    code = main(["train", "--project", str(demo_project_dir), "--model", "mffpa",
                 "--epochs", "1", "--size", "32x32", "--device", "cpu", "--no-estimate"])
    err = capsys.readouterr().err
    assert code == 2 and "no defective" in err
    assert "--model anomaly" in err and "Traceback" not in err


def test_the_estimate_says_what_it_timed_for_cluster_and_parallel_runs(demo_project_dir,
                                                                         monkeypatch, capsys):
    """`train --cluster` times nothing here (this machine is not the cluster); `--gpus N`
    says its figure is one process's."""
    import defect_studio.cluster.cli as cluster_cli
    import defect_studio.training.distributed as distributed
    from defect_studio.cli import main

    calls = []
    monkeypatch.setattr(cluster_cli, "train_cluster",
                        lambda args, config, run_id, sink, stop: calls.append("cluster") or 0)
    monkeypatch.setattr(distributed, "train_parallel",
                        lambda *a, **k: calls.append("parallel"))
    common = ["train", "--project", str(demo_project_dir), "--epochs", "1", "--size", "32x32",
              "--device", "cpu"]
    assert main([*common, "--cluster", "127.0.0.1:6379"]) == 0
    out = capsys.readouterr()
    assert "no time estimate: the run trains on the cluster at 127.0.0.1:6379" in out.out
    assert "estimated training time" not in out.out
    assert main([*common, "--gpus", "2", "--preset", "quick"]) == 0
    out = capsys.readouterr()
    line = next(x for x in out.out.splitlines() if "estimated training time" in x)
    assert "timed for one process: --gpus 2 shares each epoch's images among 2" in line
    assert "preset quick" not in out.out  # given, so not announced
    assert calls == ["cluster", "parallel"]
    # a real (tiny) run in this process: its start line names the preset `train` chose
    assert main([*common, "--run-id", "plain", "--no-estimate"]) == 0
    start = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("run plain:"))
    assert start.endswith("preset quick (the default; --preset thorough: the papers' recipe "
                          "at the data's scale)"), start
