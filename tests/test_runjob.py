"""The run-folder steps every model kind's training job shares (core/training/runjob.py)."""

import json
from types import SimpleNamespace

import pytest

from defect_studio.errors import ProjectError, TrainingError, UserError
from defect_studio.project.runs import hold_run, release_run
from defect_studio.training.config import TrainConfigError
from defect_studio.training.runjob import (
    check_new_run_id,
    create_run_folder,
    open_run_to_resume,
    restore_checkpoint,
)


def _run(runs, name, *, state="cancelled", checkpoint=True):
    d = runs / name
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"model": "anomaly"}))
    (d / "status.json").write_text(json.dumps({"state": state, "epoch": 1}))
    if checkpoint:
        (d / "checkpoint.pt").write_bytes(b"x")
    return d


def test_resume_checks_and_takes_the_run_lock(tmp_path):
    runs = tmp_path / "runs"
    d = _run(runs, "r1")
    _run(runs, "done", state="finished")
    _run(runs, "early", checkpoint=False)
    for bad, err, text in (("../r1", ProjectError, "invalid run id"),
                           ("/etc", ProjectError, "invalid"),
                           (None, TrainConfigError, "say which run"),
                           ("nope", TrainConfigError, "there is no run"),
                           ("done", TrainConfigError, "already finished"),
                           ("early", TrainingError, "no checkpoint")):
        with pytest.raises(err, match=text):
            open_run_to_resume(runs, bad, SimpleNamespace())
    folder = SimpleNamespace()
    assert open_run_to_resume(runs, "r1", folder) == d
    try:  # a second process (here: a second lock) is refused while the first trains
        with pytest.raises(ProjectError, match="being trained by another process"):
            hold_run(d)
    finally:
        release_run(folder.run_lock)


def test_new_run_folder_and_ids(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for bad in ("../x", "a/b", "", ".", "x" * 300):
        with pytest.raises(UserError):
            check_new_run_id(runs, bad)
    folder = SimpleNamespace()
    run_id = create_run_folder(runs, None, "anomaly", {"model": "anomaly", "epochs": 3}, folder)
    try:
        record = json.loads((runs / run_id / "config.json").read_text())
        assert record["model"] == "anomaly" and record["epochs"] == 3 and "created" in record
        with pytest.raises(TrainConfigError, match="already exists"):
            check_new_run_id(runs, run_id)
    finally:
        release_run(folder.run_lock)


def test_a_checkpoint_that_does_not_fit_is_a_training_error():
    loaded = []
    opt = SimpleNamespace(load_state_dict=lambda s: None)
    with pytest.raises(TrainingError, match="does not fit"):
        restore_checkpoint({"model": {}}, "r1", loaded.append, opt)  # no optimizer state


def test_fit_within_memory_explains_out_of_memory_and_passes_other_errors():
    import torch

    from defect_studio.errors import TrainingError
    from defect_studio.training.runjob import OOM_ADVICE, fit_within_memory

    assert fit_within_memory(lambda start: start + 3, 2, "cpu", (64, 32), OOM_ADVICE) == 5

    def oom(_start):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    with pytest.raises(TrainingError, match=r"out of memory on cuda:0 at input size 64x32: "
                                            r"choose a smaller input size"):
        fit_within_memory(oom, 0, "cuda:0", (64, 32), OOM_ADVICE)

    def other(_start):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        fit_within_memory(other, 0, "cpu", (64, 32), OOM_ADVICE)


def test_an_ended_run_keeps_no_dead_pid_in_its_lock(tmp_path):
    """Issue 16: a finished run kept a run.lock naming a dead process; a run still running
    (killed: no end state written) keeps the pid, and reads as interrupted."""
    import json
    import os

    from defect_studio.project.runs import RUN_LOCK, hold_run, owner_alive, release_run

    for state, pid_kept in (("finished", False), ("cancelled", False), ("running", True)):
        run = tmp_path / state
        run.mkdir()
        lock = hold_run(run)
        (run / "status.json").write_text(json.dumps({"state": state, "epoch": 1}))
        release_run(lock)
        text = (run / RUN_LOCK).read_text()
        assert (text.strip() == str(os.getpid())) == pid_kept and (pid_kept or text == ""), state
        assert owner_alive(run) is False  # nobody holds it
        release_run(hold_run(run))  # a later resume can take it again
