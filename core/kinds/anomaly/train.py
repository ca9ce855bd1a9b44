"""Training job of the anomaly model: good parts only, same contract as every kind's train
(defect_studio.training.train).

Same run folder (config.json, events.jsonl, status.json, checkpoint.pt, model.pt with its
sha256, metrics.json, threshold.json), same events (started / progress / epoch / validation /
checkpoint / finished / cancelled / error, with the same keys; ``loss_seg`` carries the
distillation loss and ``loss_dec`` the SSPCAB loss), cancel through ``should_stop`` and
resume from the last epoch checkpoint. The helpers come from defect_studio.training.

The teacher is frozen and the student reads the teacher's features, so the teacher runs
once per training image for the whole run when its features fit in ``cache_mb``
(float16 on the CPU), otherwise once per image per epoch.

``train --gpus N`` (defect_studio.training.distributed): each process computes its share
of every batch, its losses weighed as its images' part of the whole batch's mean; the
student's BatchNorm layers take the whole batch's statistics; the gradients are summed
before each step; the validation and calibration scores are computed in shares and
gathered, so every process fits the same threshold. (The teacher cache is per process:
an image's teacher features are computed once by each process that gets it.)
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

from defect_studio.errors import DataError, TrainingError, UserError
from defect_studio.kinds.anomaly.config import AnomalyConfig
from defect_studio.kinds.anomaly.network import AnomalyNet, kd_loss
from defect_studio.training.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    load_torch,
    save_torch,
)
from defect_studio.training.config import TrainConfigError
from defect_studio.training.device import select_device
from defect_studio.training.distributed import this_process
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


def train(project_root: str | Path, config: AnomalyConfig | None = None, *,
          run_id: str | None = None, resume: bool = False, on_event: EventSink | None = None,
          should_stop: Callable[[], bool] | None = None) -> str:
    """Train the anomaly model on the OK images of the project's train split; returns the run id.

    Errors and cancelling behave as in every kind's train (defect_studio.training.train).
    """
    return run_training_job(
        project_root, on_event, should_stop,
        lambda project, folder, stop: _train(project, config, run_id, resume, folder, stop))


def read_anomaly_config(run_dir: Path) -> AnomalyConfig:
    from defect_studio.errors import ModelFileError

    path = Path(run_dir) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):  # runs saved before map_taps existed summed all three taps
            data.setdefault("map_taps", ["1/4", "1/8", "1/16"])
        return AnomalyConfig.from_dict(data)
    except FileNotFoundError:
        raise ModelFileError(f"{path} not found: {run_dir} is not a training run folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, UserError) as e:
        raise ModelFileError(f"{path} is not a valid anomaly run config: {e}") from None


# Fewer good training images than this: a warning (started event, metrics.json "warnings").
# Fewer OK calibration images than this: the threshold is put above all of them (TOP_MARGIN)
# instead of at the ``ok_percentile`` of their scores, which means nothing for a handful.
MIN_OK_IMAGES = 20
# The raw threshold over the highest OK score it must stay above: that image scores
# 1 - 2^(-1/1.25) = 0.426, clearly below 0.5, and good parts a little worse still pass.
TOP_MARGIN = 1.25
# Training on crops of large parts: at most this many whole-image validation passes in a run
# (on a loaded 1-thread CPU one forward pass took 0.016 s at 128x128, 0.77 s at 1248x496)
MAX_CROP_VALIDATIONS = 3


class GoodImages:
    """Training images (ids) and validation images (id, label 0/1) with preprocessing."""

    def __init__(self, project: Any, config: AnomalyConfig) -> None:
        wanted = ("ok", "unlabeled") if config.include_unlabeled else ("ok",)
        train_recs = [r for r in project.images(split="train") if r.label in wanted]
        if not train_recs:
            extra = " or unlabeled" if config.include_unlabeled else ""
            raise DataError(
                f"the train split has no images labelled OK{extra}: the anomaly model learns what "
                "good parts look like, so label some good images OK (or allow unlabeled images, "
                "assumed good) and make sure they have a split (defect-studio split --project DIR)")
        val_recs = [r for r in project.images(split="val") if r.label in ("ok", "defective")]
        self.project = project
        self.train = [r.id for r in train_recs]
        self.val = [(r.id, int(r.label == "defective")) for r in val_recs]
        self.notes: list[str] = []
        if config.include_unlabeled:
            n_unl = sum(r.label == "unlabeled" for r in train_recs)
            self.notes.append(f"{n_unl} unlabeled train images are used as good parts")
        if len(self.train) < MIN_OK_IMAGES:
            self.notes.append(
                f"only {len(self.train)} good training image(s) (distinct files; duplicates are "
                f"imported once): the anomaly model needs at least {MIN_OK_IMAGES} to learn the "
                "normal variation of good parts; its scores will call many good parts NG. "
                "Label more good images OK")
        channels = config.channels
        if channels is None:
            channels = 1 if all(r.channels == 1 for r in train_recs + val_recs) else 3
        changes: dict[str, Any] = {"channels": channels}
        self.smallest: tuple[int, int] | None = None  # sizing.SizeChoice.smallest
        if config.input_size is None:
            from defect_studio.training.sizing import choose_input_size

            choice = choose_input_size(project, config)
            changes["input_size"] = list(choice.size)
            self.smallest = choice.smallest
            self.notes.insert(0, choice.reason)
            if choice.crop is not None and config.crop_size is None:
                changes["crop_size"] = list(choice.crop)
                self.notes.insert(1, "crops: each training step sees one random crop of each "
                                     "OK image (every crop of a good part is good); validation, "
                                     "calibration and prediction see whole images")
                every = max(1, math.ceil(config.epochs / MAX_CROP_VALIDATIONS))
                if config.val_every and every > config.val_every:
                    # a whole-image pass over the validation split costs many crop steps:
                    # the curve gets at most MAX_CROP_VALIDATIONS points
                    changes["val_every"] = every
                    self.notes.insert(2, f"validation on whole images every {every} epochs "
                                         f"(at most {MAX_CROP_VALIDATIONS} passes: each costs "
                                         "many crop steps)")
        self.config = config.replace(**changes)

    def image(self, image_id: int) -> torch.Tensor:
        from defect_studio.training.data import preprocess_image

        return preprocess_image(self.project.read_image(self.project.image(image_id)), self.config)


class TeacherCache:
    """Teacher features of the training images: kept (float16, CPU) when they fit the budget."""

    def __init__(self, model: AnomalyNet, data: GoodImages, device: torch.device) -> None:
        self.model, self.data, self.device = model, data, device
        W, H = data.config.input_size
        chans = model.teacher.channels
        per_image = 2 * sum(c * (W // s) * (H // s) for c, s in zip(chans, (4, 8, 16)))
        self.enabled = per_image * len(data.train) <= data.config.cache_mb * 2**20
        self.store: dict[int, list[torch.Tensor]] = {}
        self.teacher_runs = 0  # how many images the teacher has run on (tests check the caching)

    def batch(self, ids: list[int]) -> list[torch.Tensor]:
        """Teacher features of the images ``ids`` (with ``crop_size``: of one random crop of
        each, aligned on the 1/16 grid, so the three maps crop exactly)."""
        crop = self.data.config.crop_size
        if not ids:  # an empty share of a batch (train --gpus N): empty feature maps
            W, H = crop or self.data.config.input_size
            return self.model.teacher(torch.zeros(0, self.data.config.channels, H, W,
                                                  device=self.device))
        if crop is not None and not self.enabled:
            # no cache: the teacher runs on the crops, not on the whole images
            x = torch.stack([crop_image(self.data.image(i), crop) for i in ids])
            self.teacher_runs += len(ids)
            return self.model.teacher(x.to(self.device))
        feats = self._whole(ids)
        if crop is None:
            return feats
        rows = []
        for k in range(len(ids)):
            x0, y0 = crop_offset(feats[0].shape[-1] * 4, feats[0].shape[-2] * 4, crop)
            rows.append([f[k, :, y0 // s:(y0 + crop[1]) // s, x0 // s:(x0 + crop[0]) // s]
                         for f, s in zip(feats, (4, 8, 16))])
        return [torch.stack([r[j] for r in rows]) for j in range(len(feats))]

    def _whole(self, ids: list[int]) -> list[torch.Tensor]:
        missing = [i for i in ids if i not in self.store]
        fresh: dict[int, list[torch.Tensor]] = {}
        if missing:
            x = torch.stack([self.data.image(i) for i in missing]).to(self.device)
            feats = self.model.teacher(x)
            self.teacher_runs += len(missing)
            for k, i in enumerate(missing):
                if self.enabled:  # the student sees the stored (float16) features every
                    # epoch, the first included: a resumed run then trains on the same numbers
                    self.store[i] = [f[k].to("cpu", torch.float16) for f in feats]
                else:
                    fresh[i] = [f[k] for f in feats]
        rows = [fresh[i] if i in fresh
                else [t.to(self.device, torch.float32) for t in self.store[i]] for i in ids]
        return [torch.stack([r[s] for r in rows]) for s in range(len(rows[0]))]


CROP_ALIGN = 16  # crop offsets are multiples of the teacher's coarsest stride


def crop_offset(W: int, H: int, crop: tuple[int, int]) -> tuple[int, int]:
    """A random (x0, y0) of a crop (W, H) inside an input of W x H, multiples of CROP_ALIGN
    (torch's seeded generator: reproducible, and a resumed run continues the sequence)."""
    cw, ch = min(int(crop[0]), W), min(int(crop[1]), H)
    x_cells, y_cells = (W - cw) // CROP_ALIGN, (H - ch) // CROP_ALIGN
    x0 = CROP_ALIGN * int(torch.randint(0, x_cells + 1, (1,)))
    y0 = CROP_ALIGN * int(torch.randint(0, y_cells + 1, (1,)))
    return x0, y0


def crop_image(x: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """A random crop (W, H) of an input image [C, H, W] (see crop_offset)."""
    x0, y0 = crop_offset(int(x.shape[-1]), int(x.shape[-2]), crop)
    return x[..., y0:y0 + int(crop[1]), x0:x0 + int(crop[0])]


SCORE_BATCH = 8  # whole images scored at a time (validation, calibration)


def raw_scores(model: AnomalyNet, data: GoodImages, ids: list[int], device: torch.device,
               batch: int = SCORE_BATCH) -> np.ndarray:
    """Raw image scores (max of the raw anomaly map) of some images, model in eval mode
    (with train --gpus N: each process scores its share, all get all scores)."""
    scores = this_process().gather(ids, lambda share: _raw_scores(model, data, share, device,
                                                                  batch).tolist())
    return np.asarray(scores, dtype=np.float64)


@torch.no_grad()
def _raw_scores(model: AnomalyNet, data: GoodImages, ids: list[int], device: torch.device,
                batch: int) -> np.ndarray:
    was = model.training
    model.eval()
    out: list[float] = []
    for i in range(0, len(ids), batch):
        x = torch.stack([data.image(j) for j in ids[i:i + batch]]).to(device)
        out.extend(model(x).flatten(1).amax(1).cpu().tolist())
    model.train(was)
    return np.asarray(out, dtype=np.float64)


def _train(project: Any, config: AnomalyConfig | None, run_id: str | None, resume: bool,
           folder: RunFolder, should_stop: Callable[[], bool]) -> str:
    runs_dir = Path(project.runs_dir)
    checkpoint: dict[str, Any] | None = None
    if resume:
        run_dir = open_run_to_resume(runs_dir, run_id, folder)
        config = read_anomaly_config(run_dir)
        checkpoint = load_torch(run_dir / CHECKPOINT_FILE, "cpu")
    else:
        config = config or AnomalyConfig()
        if not isinstance(config, AnomalyConfig):
            raise TrainConfigError("the anomaly model needs an AnomalyConfig, "
                                   f"not {type(config).__name__}")
        check_new_run_id(runs_dir, run_id)

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    seed_everything(config.seed)
    data = GoodImages(project, config)
    config = data.config
    device = select_device(config.device)
    model = AnomalyNet(width=config.width, sigma=config.sigma, map_taps=config.map_taps,
                       **config.switches()).to(device)
    model.train()
    this_process().sync_batchnorm(model.bottleneck)  # train --gpus N: whole-batch statistics
    this_process().sync_batchnorm(model.decoder)
    params = [p for n, p in model.named_parameters() if not n.startswith("teacher.")]
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=(0.5, 0.999))
    start_epoch, elapsed_before = 0, 0.0
    if checkpoint is not None:
        start_epoch, elapsed_before = restore_checkpoint(checkpoint, run_id,
                                                         model.load_student_state, optimizer)
    else:
        run_id = create_run_folder(runs_dir, run_id, config.model,
                                   {**config.to_dict(), "model_spec": model.spec()}, folder)
    folder.path = runs_dir / run_id
    folder.status("running", start_epoch)
    folder.emit("started", run_id=run_id, device=str(device), config=config.to_dict(),
                n_train=len(data.train), n_val=len(data.val), epochs=config.epochs,
                start_epoch=start_epoch, notes=data.notes)
    job = _Job(config, data, model, optimizer, device, folder, should_stop, run_id, elapsed_before)
    epochs_done = fit_within_memory(job.fit, start_epoch, device, config.input_size,
                                    OOM_ADVICE)
    return job.finish(epochs_done)


class _Job:
    def __init__(self, config: AnomalyConfig, data: GoodImages, model: AnomalyNet,
                 optimizer: torch.optim.Optimizer, device: torch.device, folder: RunFolder,
                 should_stop: Callable[[], bool], run_id: str, elapsed_before: float) -> None:
        self.c, self.data, self.model, self.opt = config, data, model, optimizer
        self.device = device
        self.folder, self.should_stop, self.run_id = folder, should_stop, run_id
        self.elapsed_before, self.t0 = elapsed_before, time.monotonic()
        self.cache = TeacherCache(model, data, device)
        self.budget_note = ""
        self.shard = this_process()  # train --gpus N: this process's share of each batch

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def fit(self, start_epoch: int) -> int:
        c, ids = self.c, self.data.train
        steps = math.ceil(len(ids) / c.batch)
        progress, epoch_times = StepProgress(self.folder, c.epochs, self.elapsed), []
        for epoch in range(start_epoch, c.epochs):
            t_epoch = time.monotonic()
            order = torch.randperm(len(ids)).tolist()  # torch's seeded generator: resumable
            sums = {"loss": 0.0, "kd": 0.0, "ss": 0.0}
            for step in range(steps):
                if self.should_stop():
                    self._cancel(epoch)
                batch = [ids[j] for j in order[step * c.batch:(step + 1) * c.batch]]
                kd, ss = self._step(self.shard.share(batch), len(batch), epoch, step)
                sums["loss"] += kd + c.sspcab_weight * ss
                sums["kd"] += kd
                sums["ss"] += ss
                n = step + 1 if self.shard.world == 1 else (step + 1) / self.shard.world
                # (with N processes: this one's share times N, an estimate until the epoch)
                progress.step(epoch, step, steps, c.epochs * steps - (epoch * steps + step + 1),
                              loss=sums["loss"] / n, loss_seg=sums["kd"] / n,
                              loss_dec=sums["ss"] / n)
            # the processes' shares of each step's mean add up to the mean (no-op in one)
            *totals, runs = self.shard.sum([*sums.values(), self.cache.teacher_runs])
            sums = dict(zip(sums, totals, strict=True))
            self.folder.emit("epoch", epoch=epoch + 1, loss=sums["loss"] / steps,
                             loss_seg=sums["kd"] / steps, loss_dec=sums["ss"] / steps,
                             w_seg=1.0, w_dec=c.sspcab_weight, teacher_runs=int(runs))
            if c.val_every and (epoch + 1) % c.val_every == 0 and _both(self.data.val):
                m = self._val_metrics()
                self.folder.emit("validation", epoch=epoch + 1, ap=m["ap_sklearn"],
                                 ap_trapz=m["ap_trapz"], auc=m["auc"])
            self._save_checkpoint(epoch + 1)
            epoch_times.append(time.monotonic() - t_epoch)
            if c.max_minutes is not None and epoch + 1 < c.epochs:
                over = time.monotonic() - self.t0 + max(epoch_times) > c.max_minutes * 60
                if self.shard.any(over):  # the processes stop after the same epoch
                    self.budget_note = (f"time budget of {c.max_minutes:g} min reached after "
                                        f"{epoch + 1} of {c.epochs} epochs")
                    return epoch + 1
        return c.epochs

    def _step(self, batch: list[int], total: int, epoch: int,
              step: int) -> tuple[float, float]:
        """One optimizer step on ``batch``, these images' share of a batch of ``total``
        (all of it in one process); returns the share's (distillation, SSPCAB) losses."""
        feats = self.cache.batch(batch)
        student = self.model.student(feats)
        kd = kd_loss(feats, student, total)
        ss = self.model.sspcab_loss(total)
        loss = kd + (self.c.sspcab_weight * ss if ss is not None else 0.0)
        if self.shard.any(not bool(torch.isfinite(loss))):  # all processes stop together
            raise TrainingError(
                f"loss became NaN at epoch {epoch + 1} step {step + 1}; lower the learning rate "
                f"(now {self.c.lr:g}, try {self.c.lr / 10:g}) and train again")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.shard.reduce_grads(self.model)
        self.opt.step()
        return float(kd.detach()), float(ss.detach()) if ss is not None else 0.0

    def _val_metrics(self) -> dict[str, Any]:
        from defect_studio.evaluation.metrics import image_metrics

        ids = [i for i, _ in self.data.val]
        return image_metrics([y for _, y in self.data.val],
                             raw_scores(self.model, self.data, ids, self.device))

    def _save_checkpoint(self, epochs_done: int) -> None:
        save_checkpoint(self.folder, {"model": self.model.student_state(),
                                      "optimizer": self.opt.state_dict(), "rng": rng_state(),
                                      "elapsed_s": self.elapsed()}, epochs_done)

    def _cancel(self, epoch: int) -> None:
        cancel_run(self.folder, self.run_id, epoch)

    def finish(self, epochs_done: int) -> str:
        """Calibrate the score scale, write weights, metrics, threshold and the final status."""
        from defect_studio.evaluation.metrics import image_metrics

        raw_t, source, split, m = calibrate(self.model, self.data, self.device,
                                            self.c.ok_percentile)
        self.model.raw_threshold.fill_(raw_t)
        warnings = [n for n in self.data.notes if n.startswith("only ")] + m["warnings"]
        metrics: dict[str, Any] = {"split": split, "ap": None, "ap_sklearn": None, "ap_trapz": None,
                                   "auc": None, "best_f1": None, "n": m["n"], "n_pos": m["n_pos"],
                                   "epochs": epochs_done, "elapsed_s": round(self.elapsed(), 2),
                                   "raw_threshold": raw_t, "calibration": source,
                                   "teacher_runs": int(self.shard.sum(
                                       [self.cache.teacher_runs])[0]),
                                   "warnings": warnings,
                                   # the rank test that decided best-F1 or good images only
                                   "separation": m.get("separation")}
        if m.get("scores") is not None and m["n_pos"]:
            im = image_metrics(m["labels"], self.model.to_score(torch.tensor(m["scores"])).numpy())
            metrics.update(ap=im["ap_sklearn"], ap_sklearn=im["ap_sklearn"],
                           ap_trapz=im["ap_trapz"], auc=im["auc"], best_f1=im["best_f1"])
        run_dir = self.folder.path
        save_torch(run_dir / MODEL_FILE, self.model.student_state())
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "threshold.json", {"threshold": 0.5, "source": source})
        note = "; ".join(n for n in [self.budget_note, *m["warnings"]] if n)
        self.folder.status("finished", epochs_done, note)
        self.folder.emit("finished", run_id=self.run_id, metrics=metrics, threshold=0.5,
                         elapsed_s=round(self.elapsed(), 2), **({"note": note} if note else {}))
        return self.run_id


def _both(val: list[tuple[int, int]]) -> bool:
    return {y for _, y in val} == {0, 1}


def calibrate(model: AnomalyNet, data: GoodImages, device: torch.device, percentile: float
              ) -> tuple[float, str, str, dict[str, Any]]:
    """The raw score that becomes 0.5: the best-F1 raw threshold when the validation split has
    OK and defective images and the model separates them there beyond chance (``separation``),
    else the threshold of ``ok_only_threshold`` on the OK validation scores (on the OK training
    scores when validation has no OK image). Returns (raw threshold, source, split, {n, n_pos,
    labels, scores, warnings}); labels and scores are the validation ones whenever it has
    both classes, so the run's AP and AUC are reported either way."""
    from defect_studio.evaluation.metrics import image_metrics, separation, separation_warning

    val = data.val
    if _both(val):
        ids, labels = [i for i, _ in val], [y for _, y in val]
        s = raw_scores(model, data, ids, device)
        found = {"n": len(ids), "n_pos": sum(labels), "labels": labels, "scores": s.tolist()}
        ok = s[np.asarray(labels) == 0]
        sep = found["separation"] = separation(labels, s)
        if sep["separates"]:
            best = image_metrics(labels, s)["best_f1"]["threshold"]
            t = float(best) if best is not None and math.isfinite(best) \
                else float(np.max(ok)) * TOP_MARGIN
            return max(t, 1e-6), "best_f1", "val", {**found, "warnings": []}
        t, source, warnings = ok_only_threshold(ok, percentile, "val")
        why = separation_warning(sep, "set from the good validation images' scores alone")
        return t, source, "val", {**found, "warnings": [why, *warnings]}
    ok_val = [i for i, y in val if y == 0]
    split, ids = ("val", ok_val) if ok_val else ("train", data.train)
    s = raw_scores(model, data, ids, device)
    t, source, warnings = ok_only_threshold(s, percentile, split)
    return t, source, split, {"n": len(ids), "n_pos": 0, "labels": None, "scores": None,
                              "warnings": warnings}


def ok_only_threshold(scores: np.ndarray, percentile: float, split: str
                      ) -> tuple[float, str, list[str]]:
    """The raw threshold from good parts' raw scores only: (threshold, source, warnings).

    The ``percentile`` of the scores when they are OK *validation* images and there are at
    least MIN_OK_IMAGES of them. Otherwise the threshold is TOP_MARGIN times the highest
    score: the model's own training images (it has fit them, so new good parts score
    higher) and a handful of images (whose percentile is their maximum, so at least one of
    them would be NG by construction, since ``score >= threshold`` is NG) all score below 0.5.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise TrainingError("the anomaly model gave no finite score on the good images; "
                            "lower the learning rate and train again")
    top = float(np.max(s))
    warnings: list[str] = []
    if split == "val" and s.size >= MIN_OK_IMAGES:
        t, source = float(np.percentile(s, percentile)), f"ok_p{percentile:g}_val"
    else:
        t, source = top * TOP_MARGIN, f"ok_max_{split}"
        if split == "train":
            warnings.append(
                "no OK validation image: the threshold is set above the scores of the "
                "training images themselves; put good images in the validation split "
                "(defect-studio split) for a threshold that reflects new parts")
        else:
            warnings.append(
                f"only {s.size} OK validation image(s): the threshold is set above all of "
                f"them, not at their {percentile:g}th percentile; label at least "
                f"{MIN_OK_IMAGES} good validation images for a calibrated threshold")
    # A tiny floor keeps the score formula defined when every good part scores 0 (a blank image).
    return max(t, 1e-6), source, warnings
