"""defect_studio.project.splits: the pure split planner (targets, top-up, tiny classes)."""

import pytest

from defect_studio.errors import ProjectError
from defect_studio.project.splits import apportion, normalise_ratios, plan_splits


@pytest.mark.parametrize("n", range(0, 30))
def test_apportion_sums_and_respects_zero_ratios(n):
    for ratios in [(0.7, 0.15, 0.15), (0.1, 0.1, 0.8), (1.0, 0.0, 0.0), (0.5, 0.0, 0.5)]:
        counts = apportion(n, ratios, at_least_one=True)
        assert sum(counts.values()) == n
        for split, r in zip(("train", "val", "test"), ratios):
            if r == 0:
                assert counts[split] == 0
        positive = [s for s, r in zip(("train", "val", "test"), ratios) if r > 0]
        assert sum(1 for s in positive if counts[s] > 0) == min(n, len(positive))


def test_top_up_keeps_overall_ratios():
    # 100 OK images already split 70/15/15, 20 new ones arrive: they fill the gaps
    rows = [(i, "ok", "train" if i < 70 else "val" if i < 85 else "test", 0)
            for i in range(100)]
    rows += [(100 + i, "ok", None, 0) for i in range(20)]
    changes = plan_splits(rows, (0.7, 0.15, 0.15), seed=0)
    assert sorted(i for _, i in changes) == list(range(100, 120))
    placed = [s for s, _ in changes]
    assert (placed.count("train"), placed.count("val"), placed.count("test")) == (14, 3, 3)


def test_pinned_count_towards_targets():
    # three defectives pinned in train: the three new ones go to val and test first
    rows = [(i, "defective", "train", 1) for i in range(3)]
    rows += [(10 + i, "defective", None, 0) for i in range(3)]
    placed = [s for s, _ in plan_splits(rows, (0.7, 0.15, 0.15), 0, only_unassigned=False)]
    assert placed.count("val") >= 1 and placed.count("test") >= 1


def test_normalise_ratios():
    assert normalise_ratios((7, 1.5, 1.5)) == pytest.approx((0.7, 0.15, 0.15))
    for bad in [(1, 2), (float("nan"), 1, 1), (0, 0, 0), "abc", None]:
        with pytest.raises(ProjectError, match="split ratios"):
            normalise_ratios(bad)
