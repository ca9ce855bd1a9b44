"""The input size from the data: what a run trains at when no size is given.

Image rule (docs/models.md, "Input size from the data"): the median width and the median
height of the labelled training images, scaled together so the long side is at most
``max_side`` (the preset's cap), then each side rounded to a multiple of the model's
input multiple and raised to the model's minimum. The aspect ratio of the parts is
kept (up to the rounding), so a 500x1240 part is not squashed into a square.

Defect rule (issue 18), on top: where the training images have masks (or boxes), each
defect's width is measured in image pixels: its widest point, the diameter of the largest
disc inside the mask component (a box: its short side). The small defects (the 10th
percentile of those widths, specks under ``MIN_DEFECT_AREA`` pixels ignored) must keep at
least ``MIN_DEFECT_PX`` pixels at the network's input; if the image rule's scale would make
them thinner, the scale is raised to ``MIN_DEFECT_PX / width`` (never above 1: upsampling
adds no detail). Why 1.5 px: area resizing turns a line w px wide at scale s into one of
w*s px whose contrast falls in proportion once w*s < 1; the first convolutions run at the
input's full resolution, so a line of >= 1.5 px still reaches the 1/8 output as a
response of one cell. Observed: the demo's thin scratches at ~1.5 px of input train
to test AP 0.91 (quick preset), the issue's cracks at 0.3-0.5 px to validation AP 0.58.

When the raised scale makes the input's long side larger than ``max_side`` (the preset's
cost per training step), training uses crops of at most ``max_side`` x ``max_side`` at that
scale (SizeChoice.crop; the kind decides how); prediction covers the whole image at that
scale (the anomaly model in one pass, segdec on crop-size tiles: kinds/segdec/tiles.py).
Without masks or boxes the image rule alone decides, and the reason says so.

One rule for every kind: a kind's config says how its network must see the defects with a
``DefectRule`` (``KindConfig.defect_rule``): the width the small defects must keep at the
input (``min_px``, derived from the network's strides), which labels measure them (masks
and boxes, or boxes only; which splits), whether the kind trains on crops, and the longest
input side the defect rule may give. The segmentation kind's rule is the default above
(1.5 px, masks then boxes of the train split, crops). The anomaly model's and the
detector's are in their configs (docs/models.md, "Input size from the data").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from defect_studio.errors import DataError

if TYPE_CHECKING:
    from defect_studio.training.config import KindConfig


MIN_DEFECT_PX = 1.5     # the small defects keep at least this width at the input
DEFECT_QUANTILE = 10    # "small defects": this percentile of the measured widths
MIN_DEFECT_AREA = 5     # mask components of fewer pixels are specks, not defects
MAX_INPUT_SIDE = 4096   # the defect rule never makes an input side larger than this
MAX_MEASURED_IMAGES = 400  # masks read to measure the defects (an even sample beyond)
# Unmeasured defects (issue 18): with no mask or box, the segmentation kind assumes its small
# defects are this wide in the image, 2 x MIN_DEFECT_PX, i.e. the scale is at least 0.5, so a
# 3 px scratch keeps the 1.5 px the network needs. Why 3 px: a defect an engineer can see
# and label at the part's own resolution is rarely thinner (the demo's scratches and cracks
# are 3-5 px wide, the 10th percentile of the magnetic tiles' masked defects is ~4.7 px);
# anything thinner needs masks so the rule can measure it.
ASSUMED_DEFECT_PX = 2 * MIN_DEFECT_PX
# ... and the assumption only raises the scale where the image rule would leave such a
# defect thinner than this (px at the input): area resizing keeps a line's contrast while it
# stays >= 1 px and fades it in proportion below. Measured (docs/benchmarks.md, "Image labels
# only: draft masks"): the magnetic tiles (3 px -> 1.19 px by the image rule) train to test
# AP 0.947 on image labels alone; the demo-1024 case (3 px -> 0.375 px) stays at chance.
ASSUMED_FLOOR_PX = 1.0


@dataclass(frozen=True)
class DefectRule:
    """How a kind's network must see the defects (see the module docstring).

    ``min_px``: the width (input px) the small defects keep at least; ``splits``: the
    splits whose labelled defects are measured; ``masks``: exact masks count (else boxes
    only); ``crops``: the kind trains on crops when the raised input is larger than
    ``max_side`` (else it trains whole images of at most ``max_raised_side``);
    ``check``: the kind's extra warnings for the chosen size (``(defects, (W, H),
    (sx, sy)) -> list of str``, appended to the reason); ``boxed_images``: images with
    boxes train the kind whatever their label (the detector), so they are measured and
    their sizes count; ``assumed_width``: with no masks or boxes to measure, the width
    (image px) the small defects are assumed to have (None: the image rule alone);
    ``assumed_then``: what the kind does in that case, said in the reason."""

    min_px: float = MIN_DEFECT_PX
    splits: tuple[str, ...] = ("train",)
    masks: bool = True
    crops: bool = True
    max_raised_side: int = MAX_INPUT_SIDE
    check: Any = None
    boxed_images: bool = False
    assumed_width: float | None = None  # no masks/boxes: small defects assumed this wide
    assumed_then: str = ""  # what the kind does then (appended to the reason)


@dataclass(frozen=True)
class SizeChoice:
    """An input size (W, H) and the reason for it, in words for the user. ``crop``: train
    on crops of this (W, H) at the input's scale (None: whole images)."""

    size: tuple[int, int]
    reason: str
    crop: tuple[int, int] | None = None
    defects: DefectWidths | None = field(default=None, compare=False)
    assumed: bool = False  # the scale was raised for an assumed (unmeasured) defect width
    # the smallest input at which the measured small defects still keep the rule's width
    # (the advice for a long run; None: not measured, or the size was set by hand)
    smallest: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DefectWidths:
    """The widths (px, at image resolution) of the labelled defects and where they came from."""

    widths: tuple[float, ...]
    source: str  # "masked defects" or "boxes"
    # (w, h) of each box in image px (boxes only; what a detector's anchors must match)
    shapes: tuple[tuple[float, float], ...] = ()

    @property
    def small(self) -> float:
        """The width of the small defects: the DEFECT_QUANTILE-th percentile."""
        return float(np.percentile(np.asarray(self.widths, np.float64), DEFECT_QUANTILE))


def mask_defect_widths(mask: np.ndarray, min_area: int = MIN_DEFECT_AREA) -> list[float]:
    """Width of each defect of a mask (nonzero = defect): the diameter of the largest disc
    inside each 8-connected component, ``2 * max(distance to the background) - 1`` px (a
    1-px line: 1; a 3-px line: 3). Components under ``min_area`` pixels are skipped."""
    import cv2

    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[..., 0]
    if m.ndim != 2 or m.size == 0:
        return []
    fg = (np.nan_to_num(m.astype(np.float64, copy=False)) > 0).astype(np.uint8)
    if not fg.any():
        return []
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    # padded so that a defect touching the image border is measured as if it ended there
    dist = cv2.distanceTransform(np.pad(fg, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    big = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    if not big:
        return []
    peak = np.zeros(n, np.float64)
    np.maximum.at(peak, labels.ravel(), dist.ravel())
    return [max(1.0, 2.0 * float(peak[i]) - 1.0) for i in big]


def box_defect_widths(boxes: list[Any]) -> list[float]:
    """The short side of each box (anything with ``w`` and ``h``), finite and > 0 only."""
    return [min(w, h) for w, h in box_shapes(boxes)]


def box_shapes(boxes: list[Any]) -> list[tuple[float, float]]:
    """(w, h) of each box (anything with ``w`` and ``h``) whose sides are finite and > 0,
    each side at least 1 px."""
    out = []
    for b in boxes:
        try:
            w, h = float(b.w), float(b.h)
        except (TypeError, ValueError, AttributeError):
            continue
        if math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0:
            out.append((max(1.0, w), max(1.0, h)))
    return out


def measure_defects(project: Any, recs: list[Any], masks: bool = True) -> DefectWidths | None:
    """The widths of the defects labelled on ``recs`` (image records): exact masks first
    (unless ``masks`` is False), else boxes (and masks drawn from boxes); None when there
    are none. Unreadable masks are skipped; at most MAX_MEASURED_IMAGES masks are read (an
    even sample)."""
    masked = [r for r in recs if r.label == "defective" and r.has_mask and not r.mask_rough]
    if not masks:
        masked = []
    if len(masked) > MAX_MEASURED_IMAGES:
        step = len(masked) / MAX_MEASURED_IMAGES
        masked = [masked[int(i * step)] for i in range(MAX_MEASURED_IMAGES)]
    widths: list[float] = []
    for r in masked:
        try:
            m = project.load_mask(r.id)
        except Exception:  # noqa: BLE001 - one unreadable mask never sinks the choice
            continue
        if m is not None:
            widths.extend(mask_defect_widths(m))
    if widths:
        return DefectWidths(tuple(widths), "masked defects")
    all_boxes = getattr(project, "all_boxes", None)
    if all_boxes is not None:
        ids = {r.id for r in recs}
        try:
            boxes = [b for i, bs in all_boxes().items() if i in ids for b in bs]
        except Exception:  # noqa: BLE001 - a store without boxes
            boxes = []
        shapes = box_shapes(boxes)
        if shapes:
            return DefectWidths(tuple(min(s) for s in shapes), "boxes", tuple(shapes))
    return None


def input_rule(model: str, **switches: Any) -> tuple[int, int]:
    """(multiple, minimum side) of a model's input, without building it: asked of the
    model's kind (its ``input_rule`` entry, defect_studio.kinds.base)."""
    from defect_studio.kinds import kind_of_model

    return kind_of_model(model).input_size_rule(model, **switches)


def size_from_data(sizes: list[tuple[int, int]], max_side: int | None, multiple: int = 8,
                   min_side: int = 8, defects: DefectWidths | None = None,
                   rule: DefectRule | None = None) -> SizeChoice:
    """The input size for images of these (width, height) sizes and, when given, these
    defect widths, under the kind's ``rule`` (default: the segmentation kind's; see the
    module docstring)."""
    rule = rule or DefectRule()
    good = [(int(w), int(h)) for w, h in sizes if int(w) > 0 and int(h) > 0]
    if not good:
        raise DataError("no training image with a known size: cannot choose an input size; "
                        "give one with --size WxH")
    w = float(np.median([s[0] for s in good]))
    h = float(np.median([s[1] for s in good]))
    scale = 1.0
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
    cap = None if max_side is None else max(multiple, (int(max_side) // multiple) * multiple)

    def side(v: float) -> int:
        n = max(multiple, int(math.floor(v * scale / multiple + 0.5)) * multiple)  # half up
        if cap is not None:
            n = min(n, cap)
        return max(n, -(-min_side // multiple) * multiple)

    W, H = side(w), side(h)
    if defects is not None and defects.widths:
        raised = _defect_choice(w, h, scale, max_side, multiple, min_side, defects, rule)
        if raised is not None:
            return raised
    elif defects is None and rule.assumed_width and \
            rule.assumed_width * scale < ASSUMED_FLOOR_PX:
        assumed = DefectWidths((float(rule.assumed_width),), ASSUMED_SOURCE)
        raised = _defect_choice(w, h, scale, max_side, multiple, min_side, assumed, rule)
        if raised is not None:
            return replace(raised, reason=raised.reason + ", " + _assumed_note(rule),
                           defects=None, assumed=True)
    parts = [f"median training image {w:g}x{h:g}"]
    if scale < 1.0:
        parts.append(f"long side capped at {max_side}")
    parts.append(f"sides multiples of {multiple}")
    if min(W, H) == max(min_side, multiple) and min(w, h) * scale < min_side:
        parts.append(f"at least {min_side} (the model's minimum)")
    orient = {(w0 >= h0) for w0, h0 in good if w0 != h0}
    if len(orient) > 1:
        parts.append("the images mix tall and wide shapes: consider resize mode 'pad'")
    if defects is not None and defects.widths:
        parts.insert(0, f"smallest {defects.source} ~{defects.small:.3g} px wide keep "
                        f"{defects.small * scale:.3g} px at scale {scale:.3g}")
        if scale >= 1.0:
            parts[1:1] = _full_resolution_note(defects, scale, rule)
    elif defects is None:
        what = "masks or boxes" if rule.masks else "boxes"
        parts.append(f"no {what} to measure the defects: sized from the images only")
        if scale < 1.0:  # what the shrinking costs, and how to let the rule see the defects
            parts.append(f"shrunk {1 / scale:.3g}x, a defect must be at least "
                         f"~{rule.min_px / scale:.2g} px wide in the image to be seen: "
                         f"{'mask' if rule.masks else 'box'} a few defects so the size "
                         "can be measured, or give --size")
    parts.extend(_checks(rule, defects, (W, H), (W / w, H / h)))
    smallest = None
    if defects is not None and defects.widths:
        # what the small defects allow, but at most half the sides: shrinking further for
        # speed is the user's call on what else the picture loses (texture, context)
        least = min(scale, max(rule.min_px / defects.small, scale / 2))
        lo = -(-max(min_side, multiple) // multiple) * multiple
        smallest = tuple(min(n, max(lo, -(-int(math.ceil(v * least)) // multiple) * multiple))
                         for v, n in ((w, W), (h, H)))
    return SizeChoice((W, H), f"input {W}x{H}: " + ", ".join(parts), defects=defects,
                      smallest=smallest)


ASSUMED_SOURCE = "defects (none masked or boxed: assumed)"


def _assumed_note(rule: DefectRule) -> str:
    return (f"no masks or boxes to measure the defects: assumed at least "
            f"{rule.assumed_width:g} px wide ({rule.min_px:g} px at the input at scale "
            f"{min(1.0, rule.min_px / float(rule.assumed_width)):.3g}); mask a few defects so "
            "their size is measured, or give --size"
            + (f"; {rule.assumed_then}" if rule.assumed_then else ""))


def _full_resolution_note(defects: DefectWidths, scale: float, rule: DefectRule) -> list[str]:
    """A note when the small defects stay under ``rule.min_px`` at full resolution."""
    if scale < 1.0 or defects.small >= rule.min_px * 0.999:
        return []
    return [f"under the {rule.min_px:g} px the model needs even at full resolution "
            "(enlarging adds no detail)"]


def _checks(rule: DefectRule, defects: DefectWidths | None, size: tuple[int, int],
            scales: tuple[float, float]) -> list[str]:
    if rule.check is None or defects is None or not defects.widths:
        return []
    return [str(m) for m in rule.check(defects, size, scales) if m]


def _defect_choice(w: float, h: float, image_scale: float, max_side: int | None, multiple: int,
                   min_side: int, defects: DefectWidths, rule: DefectRule) -> SizeChoice | None:
    """The size when the defects need a larger scale than the image rule's; else None."""
    small = defects.small
    want = min(1.0, rule.min_px / small)
    if want <= image_scale * 1.0001:
        return None
    top_side = max(multiple, int(rule.max_raised_side))
    scale = min(want, top_side / max(w, h))
    if scale <= image_scale * 1.0001:
        return None  # the kind's cap on a raised input leaves the image rule's size
    lo = -(-min_side // multiple) * multiple

    def side(v: float, top: int) -> int:
        return max(lo, min(top, int(math.floor(v * scale / multiple + 0.5)) * multiple))

    W, H = side(w, top_side), side(h, top_side)
    parts = [f"smallest {defects.source} ~{small:.3g} px wide: scale {scale:.3g} keeps them "
             f">= {min(small * scale, small):.3g} px (median training image {w:g}x{h:g})"]
    if scale < want:
        parts.append(f"sides capped at {top_side}")
        parts.append(f"the small {defects.source} keep {small * scale:.3g} px, under the "
                     f"{rule.min_px:g} px they need: give a larger --size or crop the parts")
    else:
        parts.extend(_full_resolution_note(defects, scale, rule))
    crop = None
    if max_side is not None and max(W, H) > max_side:
        if rule.crops:
            cap = max(lo, (int(max_side) // multiple) * multiple)
            crop = (min(W, cap), min(H, cap))
            parts.append(f"trained on {crop[0]}x{crop[1]} crops (the preset's max_side "
                         f"{max_side})")
        else:
            parts.append(f"whole images at this size, larger than the preset's max_side "
                         f"{max_side}: training steps cost more")
    parts.extend(_checks(rule, defects, (W, H), (W / w, H / h)))
    return SizeChoice((W, H), f"input {W}x{H}: " + ", ".join(parts), crop=crop, defects=defects,
                      smallest=(W, H))  # the scale the defects need (or the cap's): no less


def choose_input_size(project: Any, config: KindConfig) -> SizeChoice:
    """The size a run of ``config`` on ``project`` trains at, and why.

    A size given in the config wins; otherwise the rule above over the labelled images of
    the train split (all labelled images when the train split is still empty). ``config``
    is a kind's config with ``model``, ``input_size`` and ``max_side``.
    """
    multiple, min_side = input_rule(config.model, **config.model_switches())
    if config.input_size is not None:
        W, H = config.input_size
        return SizeChoice((W, H), f"input {W}x{H}: as set")
    rule = config.defect_rule()
    boxed: set[int] = set()
    if rule.boxed_images and getattr(project, "all_boxes", None) is not None:
        boxed = {i for i, bs in project.all_boxes().items() if bs}

    def used(split: str | None) -> list[Any]:
        return [r for r in project.images(split=split)
                if r.label in ("ok", "defective") or r.id in boxed]

    recs = used("train") or used(None)
    # every mask of the rule's splits tells the defects' size, also for a run that trains
    # with fewer of them (pixel_labels) or none (the anomaly model trains on OK images):
    # the levels of a sweep share one input size
    labelled = [r for s in rule.splits for r in used(s)] if rule.splits != ("train",) else recs
    defects = measure_defects(project, labelled, masks=rule.masks)
    if defects is None and rule.assumed_width and any(r.has_mask for r in labelled):
        # masks exist but none could be read: not a project without masks (the drafts of
        # segdec/drafts.py are only made where no mask exists), so no width is assumed
        rule = replace(rule, assumed_width=None)
    return size_from_data([(r.width, r.height) for r in recs], getattr(config, "max_side", None),
                          multiple, min_side, defects, rule)
