"""The anomaly kind's time probe (defect_studio.training.estimate): the steps a run repeats.

A run (anomaly/train.py) trains ``epochs x ceil(good training images / batch)`` optimizer
steps, each a batch of whole images or of one random crop of each image (``crop_size``).
The frozen teacher's features of the whole training images are computed once, in the first
epoch, when they fit ``cache_mb`` (then each step runs only the student); otherwise the
teacher runs in every step, on the crops or on the whole images. Validation scores the
whole validation images every ``val_every`` epochs when they hold OK and defective images,
and the calibration after the last epoch scores them once more (or the good validation
images, or the training images when validation has no good one).
Teacher and scoring passes are timed in the batches the run makes (``batch`` images for
the teacher, SCORE_BATCH for scoring): at 1024 px a batch of 8 cost 10-25 % more per image
than single images. Each step kind comes with a function that runs one such step on a
throw-away copy of the network with random input at the run's size, device and threads.
"""

from __future__ import annotations

from typing import Any

import torch

from defect_studio.kinds.anomaly.network import AnomalyNet, kd_loss
from defect_studio.kinds.anomaly.train import SCORE_BATCH, GoodImages, TeacherCache, _both
from defect_studio.training.device import select_device
from defect_studio.training.estimate import RunPlan, StepKind, inference_step, with_threads


def plan_run(project: Any, config: Any) -> RunPlan:
    """The steps of a run of ``config`` on ``project`` (DataError as `train` gives it)."""
    data = GoodImages(project, config)
    c = data.config
    device = select_device(c.device)
    threads = int(c.num_threads or torch.get_num_threads())
    model = AnomalyNet(width=c.width, sigma=c.sigma, map_taps=c.map_taps,
                       **c.switches()).to(device)
    opt = torch.optim.Adam([p for n, p in model.named_parameters()
                            if not n.startswith("teacher.")], lr=1e-9)
    W, H = c.input_size
    crop = tuple(c.crop_size) if c.crop_size is not None else None
    cw, ch = (min(crop[0], W), min(crop[1], H)) if crop is not None else (W, H)
    cached = TeacherCache(model, data, device).enabled

    def teacher_step(k: int) -> Any:
        x = torch.rand(k, c.channels, H, W, device=device)

        @torch.no_grad()
        def step() -> None:
            model.teacher(x)
        return with_threads(step, device, threads)

    def train_step(k: int) -> Any:
        x = torch.rand(k, c.channels, ch, cw, device=device)
        with torch.no_grad():
            stored = [f.detach() for f in model.teacher(x)]

        def step() -> None:
            model.train()
            feats = stored if cached else model.teacher(x)
            student = model.student(feats)
            loss = kd_loss(feats, student, k)
            ss = model.sspcab_loss(k)
            if ss is not None:
                loss = loss + c.sspcab_weight * ss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return with_threads(step, device, threads)

    def eval_step(k: int) -> Any:
        return inference_step(model, torch.rand(k, c.channels, H, W, device=device), device,
                              threads)

    base = (f"anomaly|{c.model}|{sorted(c.switches().items())}|w{c.width}|{c.channels}ch|"
            f"{device.type}|{threads}t")
    made: dict[str, Any] = {}  # one step function per key (a batch of 8 at 1024 px is large)

    def batches(what: str, size: str, n: int, batch: int, make: Any, times: int = 1,
                phase: str = "epoch") -> list[StepKind]:
        """``times`` passes over ``n`` images in batches of ``batch``, as the run makes them
        (a batch of 8 costs more than 8 single images at a large size); the last, smaller
        batch of a pass is timed as a full one (one step kind less to time: 48 s of probing
        instead of 74 s for a 1024-px run)."""
        k = min(batch, n)
        if not k or not times:
            return []
        key = f"{base}|{what}|{size}x{k}"
        fn = made.setdefault(key, make(k))
        return [StepKind(key, times * -(-n // k), fn, phase=phase)]

    n = len(data.train)
    extra = "" if cached else "+teacher"
    steps = batches("train" + extra, f"{cw}x{ch}", n, c.batch, train_step, c.epochs)
    if cached:  # the teacher on the whole training images once, in the first epoch's batches
        steps += batches("teacher", f"{W}x{H}", n, c.batch, teacher_step, phase="before")
    if _both(data.val) and c.val_every:
        steps += batches("eval", f"{W}x{H}", len(data.val), SCORE_BATCH, eval_step,
                         c.epochs // c.val_every)
    ok_val = [i for i, y in data.val if y == 0]
    final = len(data.val) if _both(data.val) else len(ok_val) or n
    steps += batches("eval", f"{W}x{H}", final, SCORE_BATCH, eval_step, phase="after")
    return RunPlan(steps=steps, device=device.type, size=(W, H), threads=threads,
                   epochs=c.epochs, crop=crop, notes=list(data.notes), budget_min=c.max_minutes,
                   smallest=data.smallest, max_side=c.max_side)
