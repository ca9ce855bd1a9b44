"""The segdec kind's time probe (defect_studio.training.estimate): the steps a run repeats.

A run of ``epochs`` epochs takes ``epochs x (defective + as many OK)`` training steps, each
one image (or k crops as one batch, segdec/crops.py; an image-label-only defective image:
whole, or with mil_crops its tiles scored without gradient, then its top tile trained), and
forward passes over the validation images (crop-size tiles for a run trained on crops,
segdec/tiles.py) at every validation and once at the end.
Each step kind comes with a function that runs one such step on a throw-away copy of the
network with random input at the run's size, device, precision and thread count.
"""

from __future__ import annotations

from typing import Any

import torch

from defect_studio.kinds.segdec.crops import crops_per_step
from defect_studio.kinds.segdec.data import build_training_data
from defect_studio.kinds.segdec.losses import LossWeights, mixed_loss
from defect_studio.kinds.segdec.runmodel import build_run_model
from defect_studio.kinds.segdec.tiles import needs_tiles, scoring_model
from defect_studio.training.device import select_device
from defect_studio.training.estimate import RunPlan, StepKind, with_threads


def _validations(config: Any) -> int:
    """Validation passes of a run: every val_every epochs, the last epoch when keep_best,
    plus the final scoring for the threshold."""
    e, every = config.epochs, config.val_every
    n = e // every if every else 0
    if config.keep_best and not (every and e % every == 0):
        n += 1
    return n + 1


def draft_step(channels: int, w: int, h: int) -> Any:
    """One image's distance map for the draft masks (on the CPU, as drafting runs)."""
    from defect_studio.kinds.segdec.drafts import Surface

    surface, x = Surface(), torch.rand(channels, h, w)
    return lambda: surface.distance(x)


def plan_run(project: Any, config: Any) -> RunPlan:
    """The steps of a run of ``config`` on ``project`` (DataError as `train` gives it)."""
    from defect_studio.kinds.segdec.train import _AUTOCAST, _precision

    data = build_training_data(project, config, drafts=False)
    c = data.config
    device = select_device(c.device)
    precision = _precision(c, device, c.amp and device.type == "cuda")
    threads = int(c.num_threads or torch.get_num_threads())
    model = build_run_model(c).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)
    W, H = c.input_size
    dtype = _AUTOCAST[precision]

    def timed(fn: Any) -> Any:
        return with_threads(fn, device, threads)

    def train_step(w: int, h: int, k: int = 1) -> Any:
        x = torch.rand(k, c.channels, h, w, device=device)
        target = torch.zeros(1, h // 8, w // 8, device=device)

        def step() -> None:
            model.train()
            with torch.autocast(device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                seg, dec = model(x)
            total = sum(mixed_loss(seg[i].float(), dec[i].float(), label=0.0, mask=target,
                                   weights=torch.ones_like(target),
                                   lw=LossWeights(1.0, 1.0)).total for i in range(k))
            total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return timed(step)

    def eval_step() -> Any:
        x = torch.rand(1, c.channels, H, W, device=device)
        scorer = scoring_model(model, c)  # a crop-trained run validates on tiles

        @torch.no_grad()
        def step() -> None:
            scorer.eval()
            scorer(x)
        return timed(step)

    base = (f"segdec|{c.model}|{sorted(c.model_switches().items())}|{c.channels}ch|"
            f"{device.type}|{threads}t|{precision}")
    n_pos, n_neg = len(data.positives), len(data.negatives)
    per_epoch = n_pos + min(n_pos, n_neg)
    mil = whole = 0  # steps of a cropped run on image-label-only defectives (crops.py)
    crop = tuple(c.crop_size) if c.crop_size is not None else None
    k = 1
    if crop is not None:
        cw, ch = min(crop[0], W), min(crop[1], H)
        if (cw, ch) != (W, H):
            k = crops_per_step(c)  # k crops as one batch per step (segdec/crops.py)
            label_only = sum(1 for s in data.train if s.label == 1 and not s.pixel)
            mil, whole = (label_only, 0) if c.mil_crops else (0, label_only)
    else:
        cw, ch = W, H
    many = f"x{k}" if k > 1 else ""
    steps = [StepKind(f"{base}|train|{cw}x{ch}{many}", c.epochs * (per_epoch - mil - whole),
                      train_step(cw, ch, k))]
    if whole:  # trained whole at the input size
        steps.append(StepKind(f"{base}|train|{W}x{H}", c.epochs * whole, train_step(W, H)))
    tiled = f"|tiles{crop[0]}x{crop[1]}" if needs_tiles(c) else ""
    eval_key = f"{base}|eval|{W}x{H}{tiled}"
    if mil:  # each: its tiles scored without gradient (as an eval pass), then one crop
        steps.append(StepKind(f"{base}|train|{cw}x{ch}", c.epochs * mil, train_step(cw, ch)))
        steps.append(StepKind(eval_key, c.epochs * mil, eval_step()))
    if data.drafting:  # draft masks (segdec/drafts.py): each image's features once, at
        # the drafting size of the median defective training image
        from defect_studio.kinds.segdec.drafts import LEVEL_OK_IMAGES, draft_size

        recs = [project.image(data.train[i].image_id) for i in data.positives]
        med = (sorted(r.width for r in recs)[len(recs) // 2],
               sorted(r.height for r in recs)[len(recs) // 2])
        dw, dh = draft_size(med, (W, H))
        steps.append(StepKind(f"{base}|draft|{dw}x{dh}", min(n_neg, LEVEL_OK_IMAGES) + n_pos,
                              timed(draft_step(c.channels, dw, dh)), phase="before"))
    val = data.val if {s.label for s in data.val} == {0, 1} else []
    scorer = eval_step()
    # validations during the run, then the final scoring for the threshold (past a budget)
    steps.append(StepKind(eval_key, len(val) * (_validations(c) - 1), scorer))
    steps.append(StepKind(eval_key, len(val or data.train), scorer, phase="after"))
    return RunPlan(steps=steps, device=device.type, size=(W, H), threads=threads, epochs=c.epochs,
                   crop=crop, notes=list(data.notes), budget_min=c.max_minutes,
                   epochs_reason=data.epochs_note, smallest=data.smallest,
                   max_side=c.max_side)
