"""Training data from a Project: which images, their labels and masks, and the
preprocessing that training and inference share (``preprocess_image``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from defect_studio.errors import DataError
from defect_studio.kinds.segdec.config import TrainConfig
from defect_studio.kinds.segdec.losses import dilate_mask, seg_targets
from defect_studio.preprocess import place
from defect_studio.training.data import preprocess_image

if TYPE_CHECKING:  # the store is only needed for type hints here
    from defect_studio.project import Project


# -- preprocessing shared with the predictor ------------------------------------------

# to_channels, fit_geometry and the placement into the input live in defect_studio.preprocess
# (numpy + OpenCV only), shared with the deployed runtime that runs without torch.
_place = place


def preprocess_mask(mask: np.ndarray, config: TrainConfig) -> np.ndarray:
    """A full-resolution mask (nonzero = defect) -> bool mask at the input size.

    Area interpolation, and any covered fraction counts as defect: shrinking must
    never make a small defect vanish (a labelled defect would then train as OK).
    """
    m = (np.asarray(mask) > 0).astype(np.float32)
    return _place(m, config, cv2.INTER_AREA) > 0


def mask_targets(full: np.ndarray, config: TrainConfig, keep_empty: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Target mask and loss weights at 1/8 of the input for a full-resolution mask.

    ``dilate_at="image"`` (as the MixSup code): the mask is dilated with a dilate x dilate
    square at the image's own resolution, then resized to the input; ``"input"``: resized
    first, dilated at input resolution. None when the resized mask is empty (unless
    ``keep_empty``: an OK image's all-zero target).
    """
    c = config
    at_image = c.dilate_at == "image"
    if at_image:
        full = dilate_mask(full, c.dilate)
    small = preprocess_mask(full, c)
    if not small.any() and not keep_empty:
        return None
    return seg_targets(small, dilate=0 if at_image else c.dilate, dist_weight=c.dist_weight,
                       w_max=c.w_max, p=c.p)


# -- the training set ------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """One training image: label 1 = defective; pixel = trained with a (possibly empty) mask."""

    image_id: int
    label: int
    pixel: bool


@dataclass
class TrainingData:
    """Training and validation images of a project with a cache of their tensors."""

    project: Any
    config: TrainConfig
    train: list[Sample]
    val: list[Sample]
    channels: int
    notes: list[str] = field(default_factory=list)
    epochs_note: str = ""  # why a crop run trains more epochs than set (segdec/crops.py)
    _cache: dict[int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = field(
        default_factory=dict, repr=False)
    _val_cache: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    # draft masks (bool, input size) of defective images of a project without masks or
    # boxes, by image id (segdec/drafts.py); their samples train as pixel-labelled
    drafts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    drafting: bool = False  # the run drafts masks (planned or made)
    draft_s: float = 0.0  # seconds spent making them (counted in the run's time and budget)
    # the size rule's smallest input that keeps the small defects (sizing.SizeChoice)
    smallest: tuple[int, int] | None = None

    @property
    def positives(self) -> list[int]:
        return [i for i, s in enumerate(self.train) if s.label == 1]

    @property
    def negatives(self) -> list[int]:
        return [i for i, s in enumerate(self.train) if s.label == 0]

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(image [C,H,W], mask [1,H/8,W/8] or None, weights or None) of train[index], cached."""
        s = self.train[index]
        hit = self._cache.get(s.image_id)
        if hit is not None:
            return _as_float(hit[0]), hit[1], hit[2]
        rec = self.project.image(s.image_id)
        img = self.project.read_image(rec)
        x = preprocess_image(img, self.config)
        if img.dtype == np.uint8:
            # Cached as 8 bits (4x less memory than float32); an 8-bit source loses at
            # most half a grey level to the rounding after resizing.
            cached = (x * 255.0).round_().to(torch.uint8)
        else:  # 16-bit sources keep their precision
            cached = x
        mask_t = weight_t = None
        if s.pixel:
            full = np.zeros(img.shape[:2], bool)
            if s.label == 1 and s.image_id in self.drafts:
                c = self.config  # a draft is at the input's size: dilated there
                maps = seg_targets(self.drafts[s.image_id], dilate=c.dilate,
                                   dist_weight=c.dist_weight, w_max=c.w_max, p=c.p)
                self._cache[s.image_id] = (cached, *maps)
                return _as_float(cached), maps[0], maps[1]
            if s.label == 1:
                raw = self.project.load_mask(s.image_id)
                if raw is None or raw.shape[:2] != img.shape[:2]:
                    got = "missing" if raw is None else f"{raw.shape[1]}x{raw.shape[0]}"
                    raise DataError(
                        f"the mask of image {rec.name} (id {rec.id}) is {got} but the image is "
                        f"{img.shape[1]}x{img.shape[0]}; redraw or delete that mask, "
                        "then train again"
                    )
                full = raw > 0
            maps = mask_targets(full, self.config)
            # A defective image whose mask is empty says nothing about where the defect
            # is: train it with its image label only rather than as a clean surface.
            if s.label == 0 or maps is not None:
                mask_t, weight_t = maps if maps is not None else mask_targets(
                    full, self.config, keep_empty=True)
        self._cache[s.image_id] = (cached, mask_t, weight_t)
        return _as_float(cached), mask_t, weight_t

    def val_image(self, sample: Sample) -> torch.Tensor:
        """Preprocessed image of a validation (or training) sample, cached: exactly what
        evaluate, predict and the export package feed the network (float32, never the
        8-bit rounded copy the training cache keeps), so the scores that choose the
        threshold are the scores the run is later judged by."""
        hit = self._val_cache.get(sample.image_id)
        if hit is None:
            img = self.project.read_image(self.project.image(sample.image_id))
            hit = preprocess_image(img, self.config)
            self._val_cache[sample.image_id] = hit
        return hit


def _as_float(x: torch.Tensor) -> torch.Tensor:
    """A cached image as float32 in [0, 1] (the cache may hold it as uint8)."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def build_training_data(project: Project, config: TrainConfig, *, drafts: bool = True
                        ) -> TrainingData:
    """Select the training and validation images of a project (DataError if unusable).

    Train split: pixel-labelled defectives (with a mask, among the ``pixel_labels``
    choice), image-label-only defectives, OK images (an all-zero mask). Unlabelled
    images are not used. Returns the data with ``config.channels`` resolved.

    A project whose train split has no mask at all (``draft_masks``, ``pixel_labels``
    unset) gets draft masks of its defective images (segdec/drafts.py); ``drafts=False``
    (the time probe) plans as if every defective image had one, without computing them.
    """
    train_recs = [r for r in project.images(split="train") if r.label in ("ok", "defective")]
    val_recs = [r for r in project.images(split="val") if r.label in ("ok", "defective")]
    if not train_recs:
        raise DataError(
            "the train split has no labelled images: label images OK or defective and make sure "
            "they have a split (defect-studio split --project DIR)"
        )
    defective = [r for r in train_recs if r.label == "defective"]
    ok = [r for r in train_recs if r.label == "ok"]
    if not defective:
        raise DataError(
            f"the train split has {len(ok)} OK images but no defective one: label at least one "
            "defective image in the train split (more is better), then train again"
        )
    if not ok:
        raise DataError(
            f"the train split has {len(defective)} defective images but no OK one: label at least "
            "one OK image in the train split, then train again"
        )
    notes: list[str] = []
    masked = [r.id for r in defective if r.has_mask]
    if config.pixel_labels is None:
        chosen = set(masked)
    else:
        # The first k of one seeded order: with the same seed a smaller N keeps a subset of
        # a larger N's masks, so a label-efficiency sweep adds masks instead of swapping them.
        order = np.random.default_rng(config.seed).permutation(sorted(masked))
        k = min(config.pixel_labels, len(masked))
        chosen = set(int(i) for i in order[:k])
        if config.pixel_labels > len(masked):
            notes.append(f"pixel_labels={config.pixel_labels} but only {len(masked)} defective "
                         "training images have masks: using all of them")
    # no mask anywhere in the train split, none withheld on purpose, and the size rule
    # raised the scale for an assumed defect width (sizing.ASSUMED_FLOOR_PX): draft masks
    drafting = False
    train = ([Sample(r.id, 1, r.id in chosen) for r in defective]
             + [Sample(r.id, 0, True) for r in ok])
    train.sort(key=lambda s: s.image_id)
    val = [Sample(r.id, int(r.label == "defective"), False) for r in val_recs]
    channels = config.channels
    if channels is None:
        channels = 1 if all(r.channels == 1 for r in train_recs + val_recs) else 3
    changes: dict[str, Any] = {"channels": channels}
    epochs_note = ""
    smallest = None
    if config.input_size is None:
        from defect_studio.training.sizing import choose_input_size

        choice = choose_input_size(project, config)
        changes["input_size"] = list(choice.size)
        smallest = choice.smallest
        drafting = bool(config.draft_masks and choice.assumed and not masked
                        and config.pixel_labels is None)
        notes.append(choice.reason)
        if choice.crop is not None and config.crop_size is None and (
                chosen or config.mil_crops or drafting):
            from defect_studio.kinds.segdec.crops import crops_per_step

            changes["crop_size"] = list(choice.crop)
            k = crops_per_step(config.replace(input_size=choice.size, crop_size=choice.crop))
            changes["crops_per_step"] = k
            notes.append(f"crops: {k} crop{'s' if k > 1 else ''} of each image per step (masked "
                         "defective images: half around a defect, half at random labelled by "
                         "the mask; OK images at random); image-label-only defective images "
                         + ("train the crop-size tile the network scores highest, as defective "
                            "(multiple-instance learning)" if config.mil_crops else "train whole")
                         + "; validation and prediction score crop-size tiles")
            more, epochs_note = _area_epochs(config, choice.size, choice.crop, k)
            changes.update(more)
            if epochs_note:
                notes.append(epochs_note)
        elif choice.crop is not None and config.crop_size is None:
            notes.append("no crops: no training image keeps its mask (pixel_labels 0), so a "
                         "crop could miss the defect; whole images at this scale (mil_crops "
                         "would train their top-scoring tiles)")
    if config.dyn_balance and config.auto_dyn_balance and not chosen and not drafting:
        # As published: dynamic balancing is for mixed supervision; with no mask it would
        # leave the decision loss at weight 0 in epoch 1, so image-level defects teach nothing.
        changes["dyn_balance"] = False
        notes.append("dynamic balancing off: no training image has a pixel mask (N = 0)")
    cfg = config.replace(**changes)
    data = TrainingData(project, cfg, train, val, channels, notes, epochs_note,
                        drafting=drafting, smallest=smallest)
    if drafting and not drafts:  # the time probe: as if every defective image had a draft
        data.train = [Sample(s.image_id, s.label, True) for s in train]
    elif drafting:
        from defect_studio.kinds.segdec.drafts import drafts_for

        t0 = time.monotonic()
        found = drafts_for(data)
        data.draft_s = time.monotonic() - t0
        data.drafts = found.masks
        data.train = [Sample(s.image_id, s.label, s.pixel or s.image_id in found.masks)
                      for s in train]
        for image_id in found.masks:  # cached while drafting as image-label-only entries
            data._cache.pop(image_id, None)  # (OK images' entries stay: same targets)
        notes.append(found.note())
    return data


def _area_epochs(config: TrainConfig, size: tuple[int, int], crop: tuple[int, int], k: int
                 ) -> tuple[dict[str, Any], str]:
    """The epochs rule of a crop run (TrainConfig.area_epochs, segdec/crops.area_epochs):
    the changes to the config, and a note saying the epoch count and why ("" if none)."""
    from defect_studio.kinds.segdec.crops import area_epochs

    if not config.area_epochs:
        return {}, ""
    epochs, fraction = area_epochs(config.epochs, size, crop, k)
    if epochs <= config.epochs:
        return {}, ""
    budget = config.max_minutes if config.max_minutes is not None else config.crop_budget_minutes
    seen = f"crops see 1/{1 / fraction:.3g} of each image per epoch"
    if budget is None:
        return {}, (f"{config.epochs} epochs ({seen}); no time budget (max_minutes) to bound "
                    f"the {epochs} epochs that would see the area of {config.epochs} epochs of "
                    "whole images: give --epochs or a budget")
    return ({"epochs": epochs, "max_minutes": float(budget)},
            f"{epochs} epochs: {seen}, so {epochs} epochs see about the image area of "
            f"{config.epochs} epochs of whole images; capped by the {budget:g} min budget "
            "(the run stops before an epoch that would end past it)")
