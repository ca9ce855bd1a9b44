"""The detector kind's time probe (defect_studio.training.estimate): the steps a run repeats.

A run (detector/train.py) trains ``epochs x ceil(training images / batch_size)`` optimizer
steps, each a batch of whole images at the input size with their boxes (OK images with
none); it detects on the validation images every ``val_every`` epochs and once after the
last epoch for the threshold (on the training images when there is no validation image).
Each step kind comes with a function that runs one such step on a throw-away copy of the
network with random images and one box each, at the run's size, device and thread count.
"""

from __future__ import annotations

from typing import Any

import torch

from defect_studio.kinds.detector.data import build_detection_data, resolve_input_size
from defect_studio.kinds.detector.network import build_detector
from defect_studio.kinds.detector.train import freeze_backbone_norm
from defect_studio.training.device import select_device
from defect_studio.training.estimate import RunPlan, StepKind, inference_step, with_threads


def plan_run(project: Any, config: Any) -> RunPlan:
    """The steps of a run of ``config`` on ``project`` (DataError as `train` gives it)."""
    train_s, val_s, classes, notes = build_detection_data(project, config, None)
    c, size_notes = resolve_input_size(project, config)
    device = select_device(c.device)
    threads = int(c.num_threads or torch.get_num_threads())
    model = build_detector(c, len(classes)).to(device)
    freeze_backbone_norm(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-9)
    W, H = c.input_size

    def train_step(k: int) -> Any:
        xs = [torch.rand(3, H, W, device=device) for _ in range(k)]
        box = torch.tensor([[W * 0.3, H * 0.3, W * 0.6, H * 0.6]], device=device)
        ts = [{"boxes": box, "labels": torch.ones(1, dtype=torch.int64, device=device)}
              for _ in range(k)]

        def step() -> None:
            model.train()
            freeze_backbone_norm(model)
            losses = model(xs, ts)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
        return with_threads(step, device, threads)

    def eval_step() -> Any:
        return inference_step(model, [torch.rand(3, H, W, device=device)], device, threads)

    base = (f"detector|{c.model}|{sorted(c.switches().items())}|{len(classes)}cls|"
            f"{device.type}|{threads}t")
    full, rest = divmod(len(train_s), c.batch_size)
    steps = []
    if full:
        steps.append(StepKind(f"{base}|train|{W}x{H}x{c.batch_size}", c.epochs * full,
                              train_step(c.batch_size)))
    if rest:
        steps.append(StepKind(f"{base}|train|{W}x{H}x{rest}", c.epochs, train_step(rest)))
    scorer, eval_key = eval_step(), f"{base}|eval|{W}x{H}"
    if val_s and c.val_every:
        steps.append(StepKind(eval_key, len(val_s) * (c.epochs // c.val_every), scorer))
    steps.append(StepKind(eval_key, len(val_s or train_s), scorer, phase="after"))
    return RunPlan(steps=steps, device=device.type, size=(W, H), threads=threads, epochs=c.epochs,
                   notes=size_notes + notes, budget_min=c.max_minutes, crops=False)
