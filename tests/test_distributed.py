"""`train --gpus N` (core/training/distributed.py): data-parallel training over processes
(gloo on the CPU here) gives the weights of the one-process run within float rounding."""

import pytest
import torch
from gui_support import shrink_train_split

from defect_studio.errors import UserError
from defect_studio.project import Project
from defect_studio.training import TrainConfig, train
from defect_studio.training.checkpoint import load_torch
from defect_studio.training.distributed import check_parallel, train_parallel

CFG = dict(model="mffpa", epochs=1, input_size=(32, 32), device="cpu", num_threads=1, batch=4,
           lr=0.05, val_every=0, seed=0, augment=False, keep_best=False)


def test_two_processes_give_the_weights_of_one(demo_project_dir):
    with Project.open(demo_project_dir) as p:
        shrink_train_split(p)
    config = TrainConfig(**CFG)
    train(demo_project_dir, config, run_id="one")
    events = []
    assert train_parallel(demo_project_dir, config, 2, run_id="two",
                          on_event=events.append) == "two"
    names = [e["event"] for e in events]
    assert names[0] == "started" and names[-1] == "finished" and "epoch" in names
    runs = demo_project_dir / "runs"
    one, two = load_torch(runs / "one" / "model.pt"), load_torch(runs / "two" / "model.pt")
    assert one.keys() == two.keys()
    params = [k for k in one if one[k].is_floating_point()
              and not k.endswith(("running_mean", "running_var"))]
    assert params
    for k in params:  # the gradients were summed over both processes before each step
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    # only process 0 wrote a run folder; the others' private copies are gone
    assert sorted(p.name for p in runs.iterdir()) == ["one", "two"]


@pytest.mark.parametrize("n", [0, -1, 65, True, "2"])
def test_bad_process_counts_are_refused(n):
    with pytest.raises(UserError):
        check_parallel(TrainConfig(**CFG), n, "mffpa")


def test_a_batch_smaller_than_the_processes_is_refused():
    with pytest.raises(UserError, match="batch"):
        check_parallel(TrainConfig(**{**CFG, "batch": 1}), 2, "mffpa")


def test_kinds_without_data_parallel_refuse(monkeypatch):
    import dataclasses

    import defect_studio.kinds as kinds

    solo = dataclasses.replace(kinds.kind_of_model("anomaly"), data_parallel=False)
    monkeypatch.setattr(kinds, "kind_of_model", lambda model: solo)
    with pytest.raises(UserError, match="one device only"):
        check_parallel(None, 2, "anomaly")
    check_parallel(None, 1, "anomaly")  # one device is always fine


def test_every_kind_trains_data_parallel():
    from defect_studio.kinds import kinds

    assert all(k.data_parallel for k in kinds())


def test_the_detector_s_batch_is_its_batch_size():
    from defect_studio.kinds.detector.config import DetectorConfig

    check_parallel(DetectorConfig(batch_size=2), 2, "relational")
    with pytest.raises(UserError, match="batch_size"):
        check_parallel(DetectorConfig(batch_size=1), 2, "relational")


# -- the anomaly model and the detector: one spawned process for both -----------------------
#
# The test process is rank 0 (defect_studio.training.distributed._worker in this process) and
# one spawned child is rank 1, so that one interpreter start serves both kinds. The anomaly
# model's Adam turns gradient elements that are rounding noise (BatchNorm makes some exactly 0
# in exact arithmetic) into steps of +-lr, so its comparison swaps Adam for plain SGD in both
# runs: what is checked is the data-parallel gradient, not Adam's sign of noise (with Adam the
# first step's gradients agree within 5e-6 relative; the weights then differ by up to 2 lr).

ANOMALY = dict(model="anomaly", epochs=1, input_size=(32, 32), batch=4, seed=0, device="cpu",
               num_threads=1, val_every=1, sigma=1.0, width=16, lr=0.5)
DETECTOR = dict(model="relational", epochs=1, input_size=(64, 64), batch_size=3, seed=0,
                device="cpu", num_threads=1, val_every=1, pretrained=False, lr=0.02)


def _sgd(params, lr, betas=None):
    return torch.optim.SGD(params, lr=lr)


class _Events(list):
    put = list.append


def _rank(rank, jobs):
    """Train ``jobs`` [(port, project, config, run_id)] as rank ``rank`` of 2, in turn."""
    import threading

    from defect_studio.training.distributed import _worker

    events = _Events() if rank == 0 else None
    adam = torch.optim.Adam
    try:
        for port, root, config, run_id in jobs:
            if config.model == "anomaly":
                torch.optim.Adam = _sgd
            try:
                _worker(rank, 2, port, False, str(root), config, run_id, False, events,
                        threading.Event())
            finally:
                torch.optim.Adam = adam
    finally:
        torch.optim.Adam = adam
    return events


def _same_run(runs, one, two, tol):
    """The weights (buffers included: BatchNorm statistics, the anomaly model's calibrated
    raw threshold), the metrics and the threshold of two runs agree."""
    import json

    a, b = load_torch(runs / one / "model.pt"), load_torch(runs / two / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=tol, atol=tol, msg=k)
        else:
            assert torch.equal(a[k], b[k]), k
    for name in ("metrics.json", "threshold.json"):
        x, y = (json.loads((runs / r / name).read_text(encoding="utf-8")) for r in (one, two))
        x.pop("elapsed_s", None)
        y.pop("elapsed_s", None)
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert y[key] == pytest.approx(x[key], rel=tol, abs=tol), (name, key)
            else:
                assert y[key] == x[key], (name, key)


def test_anomaly_model_and_detector_split_their_batches(demo_project_dir, tmp_path,
                                                         monkeypatch):
    import multiprocessing as mp

    from detection_fixtures import make_box_project

    from defect_studio.kinds.anomaly.config import AnomalyConfig
    from defect_studio.kinds.detector.config import DetectorConfig
    from defect_studio.training.distributed import _free_port

    with Project.open(demo_project_dir) as p:  # 9 good training images: batches 4, 4, 1
        for rec in [r for r in p.images(split="train") if r.label == "ok"][9:]:
            p.set_split(rec.id, "test")
    boxes = make_box_project(tmp_path / "boxes")  # 8 training images: batches 3, 3, 2
    anomaly, detector = AnomalyConfig(**ANOMALY), DetectorConfig(**DETECTOR)
    jobs = [(_free_port(), demo_project_dir, anomaly, "two"),
            (_free_port(), boxes, detector, "two")]
    child = mp.get_context("spawn").Process(target=_rank, args=(1, jobs), daemon=True)
    child.start()  # it starts while this process trains the one-process runs
    try:
        with monkeypatch.context() as m:
            m.setattr(torch.optim, "Adam", _sgd)
            train(demo_project_dir, anomaly, run_id="one")
        train(boxes, detector, run_id="one")
        events = _rank(0, jobs)
        child.join(timeout=120)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
    finals = [e for e in events if e[0] != "event"]
    assert finals == [("finished", "two"), ("finished", "two")], finals
    names = [e[1]["event"] for e in events if e[0] == "event"]
    assert names.count("validation") == 2 and names.count("finished") == 2
    _same_run(demo_project_dir / "runs", "one", "two", 1e-4)
    _same_run(boxes / "runs", "one", "two", 1e-4)
