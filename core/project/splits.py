"""Train/val/test assignment: stratified by label, seeded, pinned images untouched.

Pure functions over (id, label, split, pinned) rows; Project.assign_splits stores the
result in one transaction.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from defect_studio.errors import ProjectError

SPLITS = ("train", "val", "test")
GROUPS = ("unlabeled", "ok", "defective")


def normalise_ratios(ratios: Iterable[float]) -> tuple[float, float, float]:
    """Three non-negative ratios scaled to sum 1; ProjectError otherwise."""
    try:
        r = tuple(float(x) for x in ratios)
    except (TypeError, ValueError):
        r = ()
    if len(r) != 3 or any(not math.isfinite(x) or x < 0 for x in r) or sum(r) <= 0:
        raise ProjectError(
            f"split ratios must be three non-negative numbers (train, val, test) with a "
            f"positive sum, got {ratios!r}"
        )
    total = sum(r)
    return (r[0] / total, r[1] / total, r[2] / total)


def apportion(n: int, ratios: tuple[float, float, float], at_least_one: bool) -> dict[str, int]:
    """Split n items by ratios (largest remainder). With at_least_one, every split with a
    positive ratio gets one item as far as n allows (train first, then val, then test),
    taken from the largest split."""
    exact = [n * r for r in ratios]
    counts = [int(x) for x in exact]
    order = sorted(range(3), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if at_least_one:
        positive = [i for i in range(3) if ratios[i] > 0][:n]
        for i in positive:
            donors = [k for k in range(3) if counts[k] > (1 if k in positive else 0)]
            if counts[i] == 0 and donors:
                donor = max(donors, key=lambda k: (counts[k], -k))
                counts[donor] -= 1
                counts[i] += 1
    return dict(zip(SPLITS, counts))


def plan_splits(
    rows: Sequence[tuple[int, str, str | None, int]],
    ratios: tuple[float, float, float],
    seed: int,
    *,
    only_unassigned: bool = True,
) -> list[tuple[str, int]]:
    """(split, image_id) for every image to (re)place.

    rows: (id, label, split, pinned). Per label group, the targets come from the whole
    group (placed images included), and each image to place goes to the split furthest
    below its target, so topping up new images keeps the overall ratios. The order of
    images is shuffled with a generator seeded by (seed, group): same data and seed,
    same split. Unlabeled images do not get the at-least-one rule.
    """
    changes: list[tuple[str, int]] = []
    for group in GROUPS:
        members = [r for r in rows if r[1] == group]
        if only_unassigned:
            fixed = [r for r in members if r[2] is not None or r[3]]
        else:
            fixed = [r for r in members if r[3]]
        fixed_ids = {r[0] for r in fixed}
        todo = sorted(r[0] for r in members if r[0] not in fixed_ids)
        if not todo:
            continue
        random.Random(f"{seed}:{group}").shuffle(todo)
        have = {s: sum(1 for r in fixed if r[2] == s) for s in SPLITS}
        want = apportion(len(members), ratios, at_least_one=group != "unlabeled")
        for image_id in todo:
            # ties go to the earlier split (train before val before test)
            s = max(SPLITS, key=lambda k: (want[k] - have[k], -SPLITS.index(k)))
            have[s] += 1
            changes.append((s, image_id))
    return changes
