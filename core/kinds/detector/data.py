"""The detector's training data: images of a split with their typed boxes.

An image trains the detector when it has boxes, or is labelled OK (no boxes: every
region is background). Defective images without boxes are left out (where their
defect is, is unknown) and counted in the notes. Images are read when used and
resized to the input size with the code inference uses (preprocess_image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from defect_studio.errors import DataError
from defect_studio.kinds.detector.config import DetectorConfig

# The most defect types one detector learns. The network and the metrics are bounded by
# the boxes, not the types, but every type adds a row and a column to the confusion table
# of each evaluation, and a model with more types is not a defect model a line can use.
MAX_DETECTOR_TYPES = 1000


@dataclass(frozen=True)
class DetSample:
    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # [n, 4] x0, y0, x1, y1 in image pixels
    labels: np.ndarray  # [n] type index (0-based)
    label: int  # 1 defective, 0 OK


def detector_classes(project) -> list[str]:
    """The defect types that have boxes in the train split, in display order."""
    train_ids = {r.id for r in project.images(split="train")}
    used = {b.type.lower() for i, bs in project.all_boxes().items() if i in train_ids for b in bs}
    return [t.name for t in project.defect_types() if t.name.lower() in used]


def split_samples(project, split: str | None, classes: list[str]
                  ) -> tuple[list[DetSample], dict[str, int]]:
    """Samples of a split (None: all) and counts of what was left out."""
    index = {c.lower(): i for i, c in enumerate(classes)}
    boxes = project.all_boxes()
    out, left = [], {"defective_without_boxes": 0, "unlabeled": 0, "other_types": 0}
    for rec in project.images(split=split):
        bs = boxes.get(rec.id, [])
        if not bs and rec.label != "ok":
            left["defective_without_boxes" if rec.label == "defective" else "unlabeled"] += 1
            continue
        known = [b for b in bs if b.type.lower() in index]
        left["other_types"] += len(bs) - len(known)
        xyxy = np.array([b.xyxy for b in known], np.float32).reshape(-1, 4)
        labels = np.array([index[b.type.lower()] for b in known], np.int64)
        out.append(DetSample(rec.id, project.image_path(rec), rec.width, rec.height, xyxy,
                             labels, int(bool(bs))))
    return out, left


def build_detection_data(project, config: DetectorConfig, classes: list[str] | None = None
                         ) -> tuple[list[DetSample], list[DetSample], list[str], list[str]]:
    """(train, val, classes, notes); DataError when there is nothing to train on."""
    classes = classes if classes is not None else detector_classes(project)
    if not classes:
        raise DataError(
            "the detector trains on boxes, and no image of the train split has one: draw "
            "boxes in the Label page, or import a data set with boxes (VOC, YOLO, COCO)")
    if len(classes) > MAX_DETECTOR_TYPES:
        raise DataError(
            f"the train split has boxes of {len(classes)} defect types; the detector learns "
            f"at most {MAX_DETECTOR_TYPES}: merge types (Label page, Types) or train on a "
            "subset of them")
    train, left = split_samples(project, "train", classes)
    val, _ = split_samples(project, "val", classes)
    if not any(len(s.boxes) for s in train):
        raise DataError("no training image has a box of the run's defect types")
    notes = []
    if left["defective_without_boxes"]:
        notes.append(f"{left['defective_without_boxes']} defective training images have no "
                     "boxes and were left out")
    if left["other_types"]:
        notes.append(f"{left['other_types']} boxes of types unknown to this run were ignored")
    return train, val, classes, notes


def resolve_input_size(project, config: DetectorConfig) -> tuple[DetectorConfig, list[str]]:
    """The config with its input size chosen from the data when it has none
    (defect_studio.training.sizing with the detector's DefectRule), and the notes that say
    why (the first starts with "input WxH:", as `train` prints it)."""
    if config.input_size is not None:
        return config, []
    from defect_studio.training.sizing import choose_input_size

    choice = choose_input_size(project, config)
    return config.replace(input_size=list(choice.size)), [choice.reason]


def load_sample(sample: DetSample, config: DetectorConfig, flip_h: bool = False,
                flip_v: bool = False) -> tuple[torch.Tensor, dict]:
    """The network input [3, H, W] in [0, 1] and its target (boxes at input scale)."""
    from defect_studio.io.images import read_image
    from defect_studio.training.data import preprocess_image

    x = preprocess_image(read_image(sample.path), config)
    W, H = config.input_size
    b = torch.from_numpy(sample.boxes.copy())
    b[:, 0::2] *= W / sample.width
    b[:, 1::2] *= H / sample.height
    if flip_h:
        x = torch.flip(x, (-1,))
        b[:, [0, 2]] = W - b[:, [2, 0]]
    if flip_v:
        x = torch.flip(x, (-2,))
        b[:, [1, 3]] = H - b[:, [3, 1]]
    target = {"boxes": b, "labels": torch.from_numpy(sample.labels + 1)}  # 0 = background
    return x, target


def to_image_scale(boxes: np.ndarray, config: DetectorConfig, shape: tuple[int, int]
                   ) -> np.ndarray:
    """Boxes [n, 4] at input scale -> image pixels of an image of shape (h, w)."""
    W, H = config.input_size
    out = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    out[:, 0::2] *= shape[1] / W
    out[:, 1::2] *= shape[0] / H
    return out
