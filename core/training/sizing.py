"""The input size from the data: what a run trains at when no size is given.

Rule (docs/models.md, "Input size from the data"): the median width and the median
height of the labelled training images, scaled together so the long side is at most
``max_side`` (the preset's cap), then each side rounded to a multiple of the model's
input multiple and raised to the model's minimum. The aspect ratio of the parts is
kept (up to the rounding), so a 500x1240 part is not squashed into a square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from defect_studio.errors import DataError

if TYPE_CHECKING:
    from defect_studio.training.config import KindConfig


@dataclass(frozen=True)
class SizeChoice:
    """An input size (W, H) and the reason for it, in words for the user."""

    size: tuple[int, int]
    reason: str


def input_rule(model: str, **switches: Any) -> tuple[int, int]:
    """(multiple, minimum side) of a model's input, without building it: asked of the
    model's kind (its ``input_rule`` entry, defect_studio.kinds.base)."""
    from defect_studio.kinds import kind_of_model

    return kind_of_model(model).input_size_rule(model, **switches)


def size_from_data(sizes: list[tuple[int, int]], max_side: int | None, multiple: int = 8,
                   min_side: int = 8) -> SizeChoice:
    """The input size for images of these (width, height) sizes (see the module docstring)."""
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
    parts = [f"median training image {w:g}x{h:g}"]
    if scale < 1.0:
        parts.append(f"long side capped at {max_side}")
    parts.append(f"sides multiples of {multiple}")
    if min(W, H) == max(min_side, multiple) and min(w, h) * scale < min_side:
        parts.append(f"at least {min_side} (the model's minimum)")
    orient = {(w0 >= h0) for w0, h0 in good if w0 != h0}
    if len(orient) > 1:
        parts.append("the images mix tall and wide shapes: consider resize mode 'pad'")
    return SizeChoice((W, H), f"input {W}x{H}: " + ", ".join(parts))


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
    recs = [r for r in project.images(split="train") if r.label in ("ok", "defective")]
    if not recs:
        recs = [r for r in project.images() if r.label in ("ok", "defective")]
    return size_from_data([(r.width, r.height) for r in recs], getattr(config, "max_side", None),
                          multiple, min_side)
