"""The training job: one run of mixed-supervision training on a project.

Everything the GUI, the CLI and the tests need goes through ``train``. It reports
progress as event dicts (see docs/ARCHITECTURE.md), writes the run folder, checks
``should_stop`` between steps, and can continue an interrupted run from its last
epoch checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defect_studio.errors import TrainingError
from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.crops import crop_batch, crops_per_step, mask_free
from defect_studio.kinds.segdec.data import Sample, TrainingData, build_training_data
from defect_studio.kinds.segdec.losses import (
    accumulated_loss,
    balance_epochs,
    balance_weights,
    decision_target,
    mixed_loss,
)
from defect_studio.kinds.segdec.runmodel import build_run_model, read_run_config
from defect_studio.kinds.segdec.sampling import EpochSampler
from defect_studio.kinds.segdec.tiles import top_tile
from defect_studio.training.checkpoint import (
    CHECKPOINT_FILE,
    load_torch,
    save_model_weights,
    save_torch,
)
from defect_studio.training.config import TrainConfigError
from defect_studio.training.device import cpu_bf16_supported, select_device
from defect_studio.training.distributed import current_shard
from defect_studio.training.runjob import (
    OOM_ADVICE,
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

BEST_FILE = "best.pt"  # weights of the best validated epoch while the run is going
DEFAULT_THRESHOLD = 0.5  # without validation images: where the decision logit changes sign


@torch.no_grad()
def score_samples(model: torch.nn.Module, data: TrainingData, samples: list[Sample],
                  device: torch.device, batch_size: int = 8) -> np.ndarray:
    """Defect probabilities (sigmoid of the decision logit) of some samples, model in eval mode.

    A run trained on crops scores crop-size tiles of each image, as Predictor does
    (segdec/tiles.py), so validation AP, keep_best and the threshold see what prediction sees."""
    from defect_studio.kinds.segdec.tiles import scoring_model

    was_training = model.training
    net = model
    model = scoring_model(net, data.config)
    model.eval()
    out: list[float] = []
    for i in range(0, len(samples), batch_size):
        x = torch.stack([data.val_image(s) for s in samples[i:i + batch_size]]).to(device)
        _, dec = model(x)
        out.extend(torch.sigmoid(dec.float()).cpu().tolist())
    net.train(was_training)
    return np.asarray(out, dtype=np.float64)


def better_epoch(ap: float, loss: float, best: dict[str, Any] | None) -> bool:
    """Whether a validated epoch beats the best so far: higher validation AP, or the same
    AP with a lower validation loss (an earlier epoch wins a full tie)."""
    if best is None:
        return True
    if ap > best["ap"] + 1e-12:
        return True
    return abs(ap - best["ap"]) <= 1e-12 and loss < best["loss"]


def _both_classes(samples: list[Sample]) -> bool:
    labels = {s.label for s in samples}
    return labels == {0, 1}


def train(project_root: str | Path, config: TrainConfig | None = None, *, run_id: str | None = None,
          resume: bool = False, on_event: EventSink | None = None,
          should_stop: Callable[[], bool] | None = None) -> str:
    """Train a model on the project's train split; returns the run id.

    ``resume=True`` continues run ``run_id`` from its last checkpoint with its saved
    config (``config`` is then ignored). Raises DataError/TrainConfigError for unusable
    input, TrainingError when training breaks down (NaN loss, out of memory) and
    CancelledError when ``should_stop()`` turned true; each is also reported as an
    ``error`` or ``cancelled`` event.
    """
    return run_training_job(
        project_root, on_event, should_stop,
        lambda project, folder, stop: _train(project, config, run_id, resume, folder, stop))


def _train(project: Any, config: TrainConfig | None, run_id: str | None, resume: bool,
           folder: RunFolder, should_stop: Callable[[], bool]) -> str:
    runs_dir = Path(project.runs_dir)
    checkpoint: dict[str, Any] | None = None
    if resume:
        run_dir = open_run_to_resume(runs_dir, run_id, folder)
        config = read_run_config(run_dir)
        checkpoint = load_torch(run_dir / CHECKPOINT_FILE, "cpu")
    else:
        config = config or TrainConfig()
        check_new_run_id(runs_dir, run_id)

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    data = build_training_data(project, config)
    config = data.config
    device = select_device(config.device)
    use_amp = config.amp and device.type == "cuda"
    model = build_run_model(config)
    W, H = config.input_size
    if W % model.input_multiple or H % model.input_multiple or min(W, H) < model.min_input_size:
        raise TrainConfigError(
            f"input size {W}x{H} does not fit {config.model}: width and height must be multiples "
            f"of {model.input_multiple} and at least {model.min_input_size}")
    model.to(device).train()
    if device.type == "cuda":  # pragma: no cover - no GPU on the test machines
        # Fixed input size: let cuDNN pick the fastest kernels once; NHWC suits tensor cores.
        torch.backends.cudnn.benchmark = True
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.0, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    sampler = EpochSampler(data.positives, data.negatives, seed=config.seed,
                           mode=config.neg_sampling)
    start_epoch, elapsed_before = 0, 0.0

    if checkpoint is not None:
        def load(state: dict) -> None:
            model.load_state_dict(state)
            sampler.load_state_dict(checkpoint["sampler"])

        start_epoch, elapsed_before = restore_checkpoint(checkpoint, run_id, load, optimizer)
        resumed_best = checkpoint.get("best")
        resumed_balance = checkpoint.get("balance_epochs")
    else:
        run_id = create_run_folder(runs_dir, run_id, config.model,
                                   {**config.to_dict(), "model_spec": model.spec()}, folder)
    folder.path = runs_dir / run_id
    folder.status("running", start_epoch)

    precision, notes = _precision(config, device, use_amp), list(data.notes)
    if config.cpu_bf16 and device.type == "cpu" and precision == "float32":
        notes.append("bf16 was asked for, but this CPU has no native bf16: training in float32")
    folder.emit("started", run_id=run_id, device=str(device), config=config.to_dict(),
                n_train=len(data.train), n_val=len(data.val), epochs=config.epochs,
                start_epoch=start_epoch, notes=notes, precision=precision)
    job = _Job(config, data, model, optimizer, scaler, sampler, device, folder, should_stop,
               run_id, elapsed_before)
    job.precision = precision
    if checkpoint is not None:
        if isinstance(resumed_best, dict) and (folder.path / BEST_FILE).is_file():
            job.best = dict(resumed_best)
        if isinstance(resumed_balance, int):
            job.balance_epochs = resumed_balance
    epochs_done = fit_within_memory(job.fit, start_epoch, device, (W, H), OOM_ADVICE)
    return job.finish(epochs_done)


# The training forward pass's precision (as recorded) -> its autocast dtype.
_AUTOCAST = {"float32": None, "float16 autocast": torch.float16,
             "bfloat16 autocast": torch.bfloat16}


def _precision(config: TrainConfig, device: torch.device, use_amp: bool) -> str:
    """The training forward pass's arithmetic (validation and inference are float32)."""
    if use_amp:
        return "float16 autocast"
    if config.cpu_bf16 and device.type == "cpu" and cpu_bf16_supported():
        return "bfloat16 autocast"
    return "float32"


def _augment(x: torch.Tensor, mask: torch.Tensor | None, weights: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The same random flip / 90-degree turn of image, mask and weights.

    Drawn from torch's seeded global generator, so a run stays reproducible and a resumed
    run continues the sequence. Turns by 90 degrees only when both the image and the mask
    are square (a turn of a non-square input would change its shape)."""
    flip_h, flip_v, turn = (int(v) for v in torch.randint(0, 2, (3,)))
    square = x.shape[-1] == x.shape[-2] and (mask is None or mask.shape[-1] == mask.shape[-2])
    dims = [d for d, on in ((-1, flip_h), (-2, flip_v)) if on]

    def apply(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        if dims:
            t = torch.flip(t, dims)
        if turn and square:
            t = torch.rot90(t, 1, (-2, -1))
        return t

    return apply(x), apply(mask), apply(weights)  # type: ignore[return-value]


def _combine(parts: list[Any]) -> Any:
    """The loss terms of the crops of one step as one: their mean. The k crops are one
    sample of the image, so a step's gradient keeps one image's scale (summed, 4 crops at
    the quick preset's lr 0.02 gave a NaN loss in the first epoch on the demo-1024 case)."""
    def mean(name: str) -> Any:
        vals = [getattr(p, name) for p in parts if getattr(p, name) is not None]
        return torch.stack(vals).mean() if vals else None
    return replace(parts[0], **{f.name: mean(f.name) for f in fields(parts[0])})


class _Job:
    """The state of a running training job (one per ``train`` call)."""

    def __init__(self, config: TrainConfig, data: TrainingData, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scaler: Any, sampler: EpochSampler,
                 device: torch.device, folder: RunFolder, should_stop: Callable[[], bool],
                 run_id: str, elapsed_before: float) -> None:
        self.c, self.data, self.model, self.opt = config, data, model, optimizer
        self.scaler, self.sampler, self.device, self.folder = scaler, sampler, device, folder
        self.should_stop, self.run_id = should_stop, run_id
        self.elapsed_before = elapsed_before
        # draft masks were made before training (segdec/drafts.py; again on a resume):
        # their time counts
        self.t0 = time.monotonic() - data.draft_s
        self.budget_note = ""  # set when max_minutes ends training early
        self.balance_epochs = config.epochs  # the epochs the balancing weight runs over
        self.best: dict[str, Any] | None = None  # {"epoch", "ap", "loss"} of best.pt
        self.precision = "float32"  # the forward pass's precision (a key of _AUTOCAST)
        self.k_crops = crops_per_step(config)  # crops per step of a croppable image

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def fit(self, start_epoch: int) -> int:
        """Run the epochs from ``start_epoch``; returns the number of epochs completed."""
        c = self.c
        steps = self.sampler.epoch_length
        total_steps = c.epochs * steps
        progress, epoch_times = StepProgress(self.folder, c.epochs, self.elapsed), []
        for epoch in range(start_epoch, c.epochs):
            t_epoch = time.monotonic()
            # The balancing weight runs over the epochs that will actually run: all of them,
            # or as many as the time budget is expected to allow (re-estimated every epoch).
            lw = balance_weights(epoch, self.balance_epochs, c.delta, c.dyn_balance)
            order = self.sampler.epoch()
            sums = {"loss": 0.0, "seg": 0.0, "dec": 0.0, "n_seg": 0}
            self.opt.zero_grad(set_to_none=True)
            shard = current_shard()  # train --gpus N: this process's share of each batch
            for step, index in enumerate(order):
                if self.should_stop():
                    self._cancel(epoch)
                if shard is None or shard.mine(step % c.batch):
                    terms = self._step(index, lw, epoch, step)
                    sums["loss"] += float(terms.total.detach())
                    sums["dec"] += float(terms.dec.detach())
                    if terms.seg is not None:
                        sums["seg"] += float(terms.seg.detach())
                        sums["n_seg"] += 1
                if (step + 1) % c.batch == 0 or step + 1 == len(order):
                    if shard is not None:
                        shard.reduce_grads(self.model)
                    self._optimizer_step()
                progress.step(epoch, step, len(order), total_steps - (epoch * steps + step + 1),
                              loss=sums["loss"] / (step + 1),
                              loss_seg=sums["seg"] / max(1, sums["n_seg"]),
                              loss_dec=sums["dec"] / (step + 1))
            n = len(order)
            if shard is not None:  # the epoch's losses over all processes' images
                shard.average_buffers(self.model)
                sums = dict(zip(sums, shard.sum(list(sums.values())), strict=True))
            self.folder.emit("epoch", epoch=epoch + 1, loss=sums["loss"] / n,
                             loss_seg=sums["seg"] / max(1, sums["n_seg"]), loss_dec=sums["dec"] / n,
                             w_seg=lw.seg, w_dec=lw.dec, balance_epochs=self.balance_epochs)
            epoch_times.append(time.monotonic() - t_epoch)
            last = epoch + 1 == c.epochs
            if c.max_minutes is not None and not last:
                # Stop before an epoch that would run over the budget, not in the middle of it.
                self.balance_epochs = balance_epochs(
                    epoch + 1, c.epochs, c.max_minutes * 60, time.monotonic() - self.t0,
                    epoch_times)
                if self.balance_epochs == epoch + 1:
                    self.budget_note = (f"time budget of {c.max_minutes:g} min reached after "
                                        f"{epoch + 1} of {c.epochs} epochs")
                    last = True
            due = c.val_every and (epoch + 1) % c.val_every == 0
            if (due or (last and c.keep_best)) and _both_classes(self.data.val):
                self._validate(epoch + 1)
            self._save_checkpoint(epoch + 1)
            if last:
                return epoch + 1
        return c.epochs

    def _validate(self, epoch: int) -> None:
        """Score the validation split; with keep_best, remember the best epoch's weights
        (highest AP, ties to the lower decision loss) in best.pt."""
        m, loss = self._metrics(self.data.val, with_loss=True)
        self.folder.emit("validation", epoch=epoch, ap=m["ap_sklearn"], ap_trapz=m["ap_trapz"],
                         auc=m["auc"], loss=loss)
        if not self.c.keep_best or m["ap_sklearn"] is None:
            return
        ap = float(m["ap_sklearn"])
        if better_epoch(ap, loss, self.best):
            self.best = {"epoch": epoch, "ap": ap, "loss": loss}
            save_torch(self.folder.path / BEST_FILE,
                       {k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def _step(self, index: int, lw: Any, epoch: int, step: int) -> Any:
        x, mask, weights = self.data.item(index)
        label = self.data.train[index].label
        if self.c.mil_crops and self.c.crop_size is not None and label == 1 \
                and mask_free(x, mask, self.c.crop_size):
            # an image-label-only defective image: its top-scoring tile (segdec/crops.py)
            items = [(self._top_tile(x), None, None, 1)]
        elif self.c.crop_size is not None:  # large parts: k crops per step (segdec/crops.py)
            items = crop_batch(x, mask, weights, label, self.c.crop_size, self.k_crops)
        else:
            items = [(x, mask, weights, label)]
        if self.c.augment:
            items = [(*_augment(a, m, w), lab) for a, m, w, lab in items]
        xb = torch.stack([a for a, _, _, _ in items]).to(self.device)
        if self.device.type == "cuda":  # pragma: no cover - no GPU on the test machines
            xb = xb.contiguous(memory_format=torch.channels_last)
        dtype = _AUTOCAST[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            seg, dec = self.model(xb)
        seg, dec = seg.float(), dec.float()  # the loss in float32
        parts = []
        for i, (_, m, w, lab) in enumerate(items):
            if m is not None:
                m, w = m.to(self.device), w.to(self.device)
            target = decision_target(lab, m, self.c.dec_target)
            parts.append(mixed_loss(seg[i], dec[i], label=target, mask=m, weights=w, lw=lw))
        terms = parts[0] if len(parts) == 1 else _combine(parts)
        if not torch.isfinite(terms.total):
            raise TrainingError(
                f"loss became NaN at epoch {epoch + 1} step {step + 1}; lower the learning rate "
                f"(now {self.c.lr:g}, try {self.c.lr / 10:g}) and train again")
        # "sum": the accumulated images add up, as in the MixSup code (lr per image);
        # "mean": divided by the batch (an average over the accumulated images).
        loss = accumulated_loss(terms.total, self.c.batch, self.c.loss_reduction)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        return terms

    def _top_tile(self, x: torch.Tensor) -> torch.Tensor:
        """The crop-size tile of ``x`` the network scores highest (eval mode, no gradient,
        the training precision)."""
        dtype = _AUTOCAST[self.precision]

        def score(batch: torch.Tensor) -> torch.Tensor:
            with torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                enabled=dtype is not None):
                return self.model(batch.to(self.device))[1]

        self.model.eval()
        try:
            tile, _ = top_tile(x, self.c.crop_size, score)
        finally:
            self.model.train()
        return tile

    def _optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def _metrics(self, samples: list[Sample], with_loss: bool = False) -> Any:
        from defect_studio.evaluation.metrics import image_metrics, separation

        scores = score_samples(self.model, self.data, samples, self.device)
        y = np.asarray([s.label for s in samples], dtype=np.float64)
        m = image_metrics(y.astype(int).tolist(), scores)
        m["separation"] = separation(y.astype(int), scores)
        if not with_loss:
            return m
        p = np.clip(scores, 1e-7, 1 - 1e-7)  # mean decision BCE: the tie-breaker
        return m, float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def _save_checkpoint(self, epochs_done: int) -> None:
        save_checkpoint(self.folder, {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.opt.state_dict(),
            "sampler": self.sampler.state_dict(),
            "best": dict(self.best) if self.best is not None else None,
            "balance_epochs": self.balance_epochs,
            "rng": rng_state(),
            "elapsed_s": self.elapsed(),
        }, epochs_done)

    def _cancel(self, epoch: int) -> None:
        cancel_run(self.folder, self.run_id, epoch)

    def finish(self, epochs_done: int) -> str:
        """Keep the best validated epoch, choose the threshold on validation images, write
        weights, metrics, threshold and the final status.

        The threshold never comes from training images: without a validation split that
        has OK and defective images, or one on which the model does not separate them beyond
        chance (``separation``), it stays at 0.5 (source "default")."""
        from defect_studio.evaluation.metrics import separation_warning

        run_dir = self.folder.path
        best_path = run_dir / BEST_FILE
        selection = "last_epoch"
        if self.best is not None and best_path.is_file():
            if self.best["epoch"] != epochs_done:
                self.model.load_state_dict(load_torch(best_path, self.device))
            selection = "best_val_ap"
        val = self.data.val
        if _both_classes(val):
            split, samples = "val", val
        else:  # a tiny project may have no defective (or no OK) validation image
            split, samples = "train", self.data.train
        m = self._metrics(samples)
        threshold, source = DEFAULT_THRESHOLD, "default"
        why, chance = "no validation split with OK and defective images", ""
        if split == "val" and not m["separation"]["separates"]:
            why = "validation does not separate defective from good images (see the note)"
            chance = separation_warning(m["separation"], "the decision head's own 0.5")
        elif split == "val" and m["best_f1"]["threshold"] is not None \
                and math.isfinite(float(m["best_f1"]["threshold"])):
            threshold, source = float(m["best_f1"]["threshold"]), "best_f1"
        metrics = {
            "split": split, "ap": m["ap_sklearn"], "ap_sklearn": m["ap_sklearn"],
            "ap_trapz": m["ap_trapz"], "auc": m["auc"], "best_f1": m["best_f1"],
            "n": m["n"], "n_pos": m["n_pos"], "epochs": epochs_done,
            "elapsed_s": round(self.elapsed(), 2),
            # which weights were kept and where the threshold came from (docs/models.md)
            "selection": selection,
            "best_epoch": self.best["epoch"] if selection == "best_val_ap" else epochs_done,
            "threshold_source": "val_best_f1" if source == "best_f1" else f"default (0.5): {why}",
            "separation": m["separation"] if split == "val" else None,
            "balance_epochs": self.balance_epochs,
            # the training forward pass's arithmetic; validation and threshold were float32
            "train_precision": self.precision,
        }
        save_model_weights(run_dir, self.model)
        best_path.unlink(missing_ok=True)
        best_path.with_name(BEST_FILE + ".sha256").unlink(missing_ok=True)
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "threshold.json", {"threshold": threshold, "source": source})
        note = "; ".join(n for n in (self.budget_note, chance) if n)
        self.folder.status("finished", epochs_done, note)
        self.folder.emit("finished", run_id=self.run_id, metrics=metrics, threshold=threshold,
                         elapsed_s=round(self.elapsed(), 2), **({"note": note} if note else {}))
        return self.run_id
