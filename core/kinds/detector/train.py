"""The detector's training job, on the kind-neutral machinery (defect_studio.training.runjob):
the same events (started, progress, epoch, validation, checkpoint, finished, cancelled, error),
status.json, events.jsonl, checkpoint.pt after every epoch (resume), cancel through
``should_stop``, and model.pt with its sha256 (plain state dict, weights_only).

Image-level figures (score = the highest box confidence) keep the Train and Review
pages working; box figures (mAP) come with them. In the progress and epoch events
``loss_seg`` is the region-proposal loss and ``loss_dec`` the box-head loss.

The anchors and region proposals a loss is computed on are drawn per image, from a
generator seeded by the run's seed, the epoch and the image (``KeyedSampler``), so an
image's draw does not depend on the other images of its batch. ``train --gpus N``
(defect_studio.training.distributed): each process computes its share of every batch;
the losses, means over the anchors / proposals drawn in the batch, are weighed by this
process's part of those counts (summed over the processes), so the summed gradients
are the whole batch's; the validation and threshold detections are computed in shares
and gathered. (The backbone's BatchNorm layers are frozen: no statistics to share.)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from defect_studio.errors import TrainingError, UserError
from defect_studio.kinds.detector.config import DetectorConfig
from defect_studio.kinds.detector.data import (
    DetSample,
    build_detection_data,
    load_sample,
    resolve_input_size,
    to_image_scale,
)
from defect_studio.training.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    load_torch,
    save_model_weights,
)
from defect_studio.training.device import select_device
from defect_studio.training.distributed import this_process
from defect_studio.training.runjob import (
    EventSink,
    RunFolder,
    StepProgress,
    cancel_run,
    check_new_run_id,
    create_run_folder,
    fit_within_memory,
    open_run_to_resume,
    restore_checkpoint,
    rng_state,
    run_training_job,
    save_checkpoint,
    seed_everything,
    write_json,
)


def read_detector_config(run_dir: Path) -> tuple[DetectorConfig, list[str]]:
    """The config and the defect types (class order) saved with a detector run."""
    from defect_studio.errors import ModelFileError

    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        classes = [str(c) for c in data.get("classes", [])]
        return DetectorConfig.from_dict(data), classes
    except FileNotFoundError:
        raise ModelFileError(f"{path} not found: {run_dir} is not a training run "
                             "folder") from None
    except (OSError, ValueError, AttributeError, TypeError, UserError) as e:
        raise ModelFileError(f"cannot read the detector config {path}: {e}") from None


def train(project_root: str | Path, config: DetectorConfig | None = None, *,
          run_id: str | None = None, resume: bool = False, on_event: EventSink | None = None,
          should_stop: Callable[[], bool] | None = None) -> str:
    """Train the box detector on the project's train split (the contract of
    defect_studio.training.train)."""
    return run_training_job(
        project_root, on_event, should_stop,
        lambda project, folder, stop: _train(project, config, run_id, resume, folder, stop))


def _train(project: Any, config: DetectorConfig | None, run_id: str | None, resume: bool,
           folder: RunFolder, should_stop: Callable[[], bool]) -> str:
    from defect_studio.kinds.detector.network import build_detector, model_spec

    runs_dir = Path(project.runs_dir)
    checkpoint, classes = None, None
    if resume:
        run_dir = open_run_to_resume(runs_dir, run_id, folder)
        config, classes = read_detector_config(run_dir)
        checkpoint = load_torch(run_dir / CHECKPOINT_FILE, "cpu")
    else:
        config = config or DetectorConfig()
        check_new_run_id(runs_dir, run_id)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    train_s, val_s, classes, notes = build_detection_data(project, config, classes)
    config, size_notes = resolve_input_size(project, config)
    notes = size_notes + notes
    device = select_device(config.device)
    model = build_detector(config, len(classes)).to(device)
    keyed_sampling(model)
    freeze_backbone_norm(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=1e-4)
    start_epoch, elapsed_before = 0, 0.0
    if checkpoint is not None:
        start_epoch, elapsed_before = restore_checkpoint(checkpoint, run_id,
                                                         model.load_state_dict, optimizer)
    else:
        run_id = create_run_folder(runs_dir, run_id, config.model,
                                   {**config.to_dict(), "classes": classes,
                                    "model_spec": model_spec(config, classes)}, folder)
    folder.path = runs_dir / run_id
    folder.status("running", start_epoch)
    folder.emit("started", run_id=run_id, device=str(device), config=config.to_dict(),
                n_train=len(train_s), n_val=len(val_s), epochs=config.epochs,
                start_epoch=start_epoch, notes=notes, classes=classes)
    job = _DetJob(config, classes, train_s, val_s, model, optimizer, device, folder,
                  should_stop, run_id, elapsed_before)
    done = fit_within_memory(job.fit, start_epoch, device, config.input_size,
                             "choose a smaller input size (--size) or batch")
    return job.finish(done)


# The threshold of a run without validation images: a box score of 0.5, the even odds of
# the box head's softmax (box-level F1 on the training images would fit the images the
# detector has learned and sit too high for new parts).
DEFAULT_THRESHOLD = 0.5


def freeze_backbone_norm(model: torch.nn.Module) -> None:
    """Keep the pretrained backbone's batch-norm statistics and affine fixed (small
    batches would only add noise to them)."""
    for m in model.backbone.body.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


class KeyedSampler(BalancedPositiveNegativeSampler):
    """torchvision's positive/negative sampler, each image's draw from its own generator
    (seeded by ``keys``, one per image of the next call; the global generator when None);
    ``last_count``: how many anchors / proposals the last call drew, all images together."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        super().__init__(batch_size_per_image, positive_fraction)
        self.keys: list[int] | None = None
        self.last_count = 0

    def __call__(self, matched_idxs: list[torch.Tensor]
                 ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        keys = self.keys
        if keys is not None and len(keys) != len(matched_idxs):
            raise RuntimeError(f"{len(keys)} sampling keys for {len(matched_idxs)} images")
        pos_idx, neg_idx, count = [], [], 0
        for i, matched in enumerate(matched_idxs):
            gen = torch.Generator().manual_seed(keys[i]) if keys is not None else None
            positive = torch.where(matched >= 1)[0]
            negative = torch.where(matched == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image *
                                                self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = torch.randperm(positive.numel(), generator=gen)[:num_pos]
            perm2 = torch.randperm(negative.numel(), generator=gen)[:num_neg]
            pos_mask = torch.zeros_like(matched, dtype=torch.uint8)
            neg_mask = torch.zeros_like(matched, dtype=torch.uint8)
            pos_mask[positive[perm1.to(positive.device)]] = 1
            neg_mask[negative[perm2.to(negative.device)]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
            count += num_pos + num_neg
        self.last_count = count
        return pos_idx, neg_idx


def keyed_sampling(model: torch.nn.Module) -> None:
    """Replace the region-proposal and box-head samplers by KeyedSamplers."""
    for owner in (model.rpn, model.roi_heads):
        old = owner.fg_bg_sampler
        owner.fg_bg_sampler = KeyedSampler(old.batch_size_per_image, old.positive_fraction)


def detect_samples(model: torch.nn.Module, samples: list[DetSample], config: DetectorConfig,
                   device: torch.device, batch_size: int = 8) -> list[dict]:
    """Predicted boxes of samples in image pixels: dicts of boxes, scores, labels (0-based)
    (with train --gpus N: each process detects its share, all get all)."""
    return this_process().gather(
        samples, lambda share: _detect_samples(model, share, config, device, batch_size))


@torch.no_grad()
def _detect_samples(model: torch.nn.Module, samples: list[DetSample], config: DetectorConfig,
                    device: torch.device, batch_size: int) -> list[dict]:
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(samples), batch_size):
        chunk = samples[i:i + batch_size]
        xs = [load_sample(s, config)[0].to(device) for s in chunk]
        for s, r in zip(chunk, model(xs)):
            out.append({"boxes": to_image_scale(r["boxes"].cpu().numpy(), config,
                                                (s.height, s.width)),
                        "scores": r["scores"].cpu().numpy().astype(np.float64),
                        "labels": r["labels"].cpu().numpy().astype(np.int64) - 1})
    model.train(was)
    if was:
        freeze_backbone_norm(model)
    return out


def image_score(pred: dict) -> float:
    """An image's defect score: its most confident box (0 without boxes)."""
    return float(np.max(pred["scores"])) if len(pred["scores"]) else 0.0


def box_summary(preds: list[dict], samples: list[DetSample], classes: list[str]) -> dict:
    """Image-level AP/AUC/best F1 (when both classes are there), mAP and the box F1."""
    from defect_studio.evaluation.metrics import image_metrics, separation
    from defect_studio.kinds.detector.metrics import best_box_f1, mean_average_precision

    gts = [{"boxes": s.boxes, "labels": s.labels} for s in samples]
    out: dict[str, Any] = mean_average_precision(preds, gts, classes)
    out["box_f1"] = best_box_f1(preds, gts)
    y = [s.label for s in samples]
    if len(set(y)) == 2:
        scores = [image_score(p) for p in preds]
        m = image_metrics(y, scores)
        out.update(ap=m["ap_sklearn"], auc=m["auc"], best_f1=m["best_f1"],
                   separation=separation(y, scores))
    else:
        out.update(ap=None, auc=None, best_f1=None, separation=None)
    return out


class _DetJob:
    def __init__(self, config: DetectorConfig, classes: list[str], train_s: list[DetSample],
                 val_s: list[DetSample], model: torch.nn.Module, optimizer: Any,
                 device: torch.device, folder: RunFolder, should_stop: Callable[[], bool],
                 run_id: str, elapsed_before: float) -> None:
        self.c, self.classes, self.train_s, self.val_s = config, classes, train_s, val_s
        self.model, self.opt, self.device, self.folder = model, optimizer, device, folder
        self.should_stop, self.run_id, self.elapsed_before = should_stop, run_id, elapsed_before
        self.t0 = time.monotonic()
        self.note = ""
        self.shard = this_process()  # train --gpus N: this process's share of each batch

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def _lr(self, epoch: int, step: int, steps: int) -> float:
        """Linear warm-up over the first epoch (at most 200 steps), then x0.1 at 3/4."""
        warm = min(steps, 200)
        g = epoch * steps + step
        f = 0.1 + 0.9 * min(1.0, g / warm) if g < warm else 1.0
        return self.c.lr * f * (0.1 if epoch >= math.ceil(0.75 * self.c.epochs) and
                                self.c.epochs > 2 else 1.0)

    def fit(self, start_epoch: int) -> int:
        c = self.c
        n = len(self.train_s)
        steps = math.ceil(n / c.batch_size)
        self.model.train()
        freeze_backbone_norm(self.model)
        progress, epoch_times = StepProgress(self.folder, c.epochs, self.elapsed), []
        for epoch in range(start_epoch, c.epochs):
            t_epoch = time.monotonic()
            gen = torch.Generator().manual_seed(c.seed * 1000 + epoch)  # same order on resume
            order = torch.randperm(n, generator=gen).tolist()
            flips = torch.randint(0, 2, (n, 2), generator=gen).tolist()
            sums = {"loss": 0.0, "rpn": 0.0, "roi": 0.0}
            for step in range(steps):
                if self.should_stop():
                    self._cancel(epoch)
                for g in self.opt.param_groups:
                    g["lr"] = self._lr(epoch, step, steps)
                idx = order[step * c.batch_size:(step + 1) * c.batch_size]
                rpn, roi = self._step(self.shard.share(idx), epoch, step, flips)
                sums["loss"] += rpn + roi
                sums["rpn"] += rpn
                sums["roi"] += roi
                k = step + 1 if self.shard.world == 1 else (step + 1) / self.shard.world
                # (with N processes: this one's share times N, an estimate until the epoch)
                progress.step(epoch, step, steps, c.epochs * steps - (epoch * steps + step + 1),
                              loss=sums["loss"] / k, loss_seg=sums["rpn"] / k,
                              loss_dec=sums["roi"] / k)
            # the processes' shares of each step's mean add up to the mean (no-op in one)
            sums = dict(zip(sums, self.shard.sum(list(sums.values())), strict=True))
            self.folder.emit("epoch", epoch=epoch + 1, loss=sums["loss"] / steps,
                             loss_seg=sums["rpn"] / steps, loss_dec=sums["roi"] / steps,
                             loss_rpn=sums["rpn"] / steps, loss_roi=sums["roi"] / steps,
                             w_seg=1.0, w_dec=1.0)
            if c.val_every and (epoch + 1) % c.val_every == 0 and self.val_s:
                s = box_summary(detect_samples(self.model, self.val_s, c, self.device),
                                self.val_s, self.classes)
                self.folder.emit("validation", epoch=epoch + 1, ap=s["ap"], auc=s["auc"],
                                 map=s["map"], map_50=s["map_50"])
            self._save_checkpoint(epoch + 1)
            epoch_times.append(time.monotonic() - t_epoch)
            if c.max_minutes is not None and epoch + 1 < c.epochs and self.shard.any(
                    time.monotonic() - self.t0 + max(epoch_times) > c.max_minutes * 60):
                self.note = (f"time budget of {c.max_minutes:g} min reached after "
                             f"{epoch + 1} of {c.epochs} epochs")
                return epoch + 1
        return c.epochs

    def _step(self, idx: list[int], epoch: int, step: int,
              flips: list[list[int]]) -> tuple[float, float]:
        """One optimizer step on the training samples ``idx``, this process's share of
        the batch (all of it in one process); returns the share's (region-proposal,
        box-head) losses."""
        c = self.c
        xs, ts = [], []
        for i in idx:
            fh, fv = flips[i] if c.augment else (0, 0)
            x, t = load_sample(self.train_s[i], c, bool(fh), bool(fv))
            xs.append(x.to(self.device))
            ts.append({k: v.to(self.device) for k, v in t.items()})
        rpn_s, roi_s = self.model.rpn.fg_bg_sampler, self.model.roi_heads.fg_bg_sampler
        keys = [((c.seed * 1_000_003 + epoch) * 1_000_003 + i) * 2 for i in idx]
        rpn_s.keys, roi_s.keys = keys, [k + 1 for k in keys]
        losses, counts = None, [0, 0]
        if xs:  # no image of this batch here (a last, short batch): zero gradients
            losses = self.model(xs, ts)
            counts = [rpn_s.last_count, roi_s.last_count]
        rpn_s.keys = roi_s.keys = None
        bad = losses is not None and not bool(torch.isfinite(sum(losses.values())))
        n_rpn, n_roi, n_bad = self.shard.sum([*counts, bad])
        if n_bad:
            raise TrainingError(
                f"loss became NaN at epoch {epoch + 1} step {step + 1}; lower the "
                f"learning rate (now {c.lr:g}, try {c.lr / 10:g}) and train again")
        self.opt.zero_grad(set_to_none=True)
        rpn = roi = torch.zeros(())
        if losses is not None:
            # each loss is a mean over the anchors (proposals) drawn here: weighed by this
            # process's part of those drawn in the whole batch, the shares add up to it
            rpn = (losses["loss_objectness"] + losses["loss_rpn_box_reg"]) * (
                counts[0] / max(n_rpn, 1))
            roi = (losses["loss_classifier"] + losses["loss_box_reg"]) * (
                counts[1] / max(n_roi, 1))
            (rpn + roi).backward()
        self.shard.reduce_grads(self.model)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        self.opt.step()
        return float(rpn.detach()), float(roi.detach())

    def _save_checkpoint(self, epochs_done: int) -> None:
        save_checkpoint(self.folder, {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(), "rng": rng_state(),
            "elapsed_s": self.elapsed()}, epochs_done)

    def _cancel(self, epoch: int) -> None:
        cancel_run(self.folder, self.run_id, epoch)

    def finish(self, epochs_done: int) -> str:
        """Threshold (on the validation images: image-level best F1 where their scores
        separate OK from defective beyond chance, else box-level best F1; without validation
        images DEFAULT_THRESHOLD), weights, metrics."""
        from defect_studio.evaluation.metrics import separation_warning

        split, samples = ("val", self.val_s) if self.val_s else ("train", self.train_s)
        s = box_summary(detect_samples(self.model, samples, self.c, self.device), samples,
                        self.classes)
        note = self.note
        if split == "train":  # never fitted on the images it trained on (they score high)
            threshold, source = DEFAULT_THRESHOLD, "default"
            note = "; ".join(n for n in (note, (
                f"no validation image: the threshold is {DEFAULT_THRESHOLD:g}, not fitted on "
                "the training images; give some images the val split (defect-studio split) "
                "for a threshold chosen on parts the model has not seen")) if n)
        elif s["best_f1"] is not None and math.isfinite(s["best_f1"]["threshold"]) \
                and s["separation"]["separates"]:
            threshold, source = float(s["best_f1"]["threshold"]), "best_f1"
        else:
            threshold, source = float(s["box_f1"]["threshold"]), "best_box_f1"
            if s["separation"] is not None:
                note = "; ".join(n for n in (note, separation_warning(
                    s["separation"], "the best box-level F1 point")) if n)
        threshold = min(max(threshold, 0.0), 1.0)
        metrics = {"split": split, "ap": s["ap"], "ap_sklearn": s["ap"], "auc": s["auc"],
                   "best_f1": s["best_f1"], "map": s["map"], "map_50": s["map_50"],
                   "per_type": s["per_type"], "box_f1": s["box_f1"], "n": len(samples),
                   "n_pos": sum(x.label for x in samples), "epochs": epochs_done,
                   "elapsed_s": round(self.elapsed(), 2), "separation": s["separation"]}
        run_dir = self.folder.path
        save_model_weights(run_dir, self.model)
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "threshold.json", {"threshold": threshold, "source": source})
        self.folder.status("finished", epochs_done, note)
        self.folder.emit("finished", run_id=self.run_id, metrics=metrics, threshold=threshold,
                         elapsed_s=round(self.elapsed(), 2), **({"note": note} if note else {}))
        return self.run_id
