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


def test_kinds_without_data_parallel_refuse():
    with pytest.raises(UserError, match="one device only"):
        check_parallel(None, 2, "anomaly")
