"""Metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from defect_studio.errors import DataError
from defect_studio.evaluation.metrics import (
    ThresholdSweep,
    confusion_at,
    image_metrics,
    pixel_metrics,
    separation,
    separation_warning,
    trapezoid_ap,
)

# scores sorted: 0.1(OK) 0.2(OK) 0.35(NG) 0.4(OK) 0.8(NG) 0.9(NG)
Y = [0, 0, 1, 1, 0, 1]
S = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]


def test_perfect_ranking_gives_ap_and_auc_one():
    m = image_metrics([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.9])
    assert m["ap_sklearn"] == pytest.approx(1.0)
    assert m["ap_trapz"] == pytest.approx(1.0)
    assert m["auc"] == pytest.approx(1.0)
    bf = m["best_f1"]
    # ties at F1 = 1 for any threshold in (0.3, 0.7]: the highest candidate wins
    assert bf["f1"] == pytest.approx(1.0) and bf["threshold"] == pytest.approx(0.7)
    assert (bf["tp"], bf["fp"], bf["tn"], bf["fn"]) == (2, 0, 3, 0)
    assert m["n"] == 5 and m["n_pos"] == 2 and "note" not in m


def test_inverted_ranking_is_bad():
    m = image_metrics([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])
    assert m["auc"] == pytest.approx(0.0)
    assert m["ap_sklearn"] < 0.6


def test_small_case_both_ap_variants_by_hand():
    m = image_metrics(Y, S)
    # sklearn AP = sum (R_n - R_{n-1}) P_n over thresholds 0.9, 0.8, 0.35:
    # 1/3*1 + 1/3*1 + 1/3*3/4
    assert m["ap_sklearn"] == pytest.approx(1 / 3 + 1 / 3 + 0.25)
    # trapezoid along the curve (recall, precision) in threshold order:
    # (0,1)-(1/3,1): 1/3; (1/3,1)-(2/3,1): 1/3; (2/3,2/3)-(1,3/4): 1/3*(2/3+3/4)/2
    assert m["ap_trapz"] == pytest.approx(2 / 3 + (2 / 3 + 0.75) / 6)
    # AUC: 9 (NG, OK) pairs, 8 ranked right (0.35 < 0.4 is the one wrong pair)
    assert m["auc"] == pytest.approx(8 / 9)
    assert len(m["pr_curve"]["precision"]) == len(m["pr_curve"]["recall"])
    assert len(m["pr_curve"]["thresholds"]) == len(m["pr_curve"]["precision"]) - 1
    assert all(math.isfinite(t) for t in m["roc_curve"]["thresholds"])


def test_best_f1_threshold_and_confusion_on_crafted_example():
    bf = image_metrics(Y, S)["best_f1"]
    # t=0.35 flags 0.35, 0.4, 0.8, 0.9: tp 3, fp 1 -> F1 6/7; t=0.8 gives only 0.8
    assert bf["threshold"] == pytest.approx(0.35)
    assert (bf["tp"], bf["fp"], bf["tn"], bf["fn"]) == (3, 1, 2, 0)
    assert bf["precision"] == pytest.approx(0.75)
    assert bf["recall"] == pytest.approx(1.0)
    assert bf["f1"] == pytest.approx(6 / 7)


def test_confusion_at_and_sweep_agree_including_ties():
    c = confusion_at(Y, S, 0.8)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 0, 3, 1)
    assert c["precision"] == 1.0 and c["recall"] == pytest.approx(2 / 3)
    assert c["accuracy"] == pytest.approx(5 / 6)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # many ties: score == threshold counts as NG
    sweep = ThresholdSweep(y, s)
    for t in [-1.0, 0.0, 0.3, 0.5, 0.55, 1.0, 2.0]:
        assert sweep.at(t) == confusion_at(y, s, t)


def test_confusion_with_no_flagged_image_has_zero_precision():
    c = confusion_at([0, 1], [0.2, 0.3], 0.9)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (0, 0, 1, 1)
    assert c["precision"] == 0.0 and c["f1"] == 0.0


def test_one_class_inputs_do_not_crash():
    ok_only = image_metrics([0, 0, 0], [0.1, 0.5, 0.2])
    assert ok_only["auc"] is None and ok_only["ap_sklearn"] is None and ok_only["ap_trapz"] is None
    assert ok_only["best_f1"]["threshold"] is None
    assert "no defective image" in ok_only["note"]
    ng_only = image_metrics([1, 1], [0.3, 0.6])
    assert ng_only["auc"] is None and "both classes" in ng_only["note"]
    assert ng_only["ap_sklearn"] == pytest.approx(1.0)
    assert ng_only["best_f1"]["threshold"] == pytest.approx(0.3)


def test_bad_inputs_raise_user_errors():
    with pytest.raises(DataError, match="empty"):
        image_metrics([], [])
    with pytest.raises(DataError, match="match"):
        image_metrics([0, 1], [0.5])
    with pytest.raises(DataError, match="NaN"):
        image_metrics([0, 1], [0.5, float("nan")])
    with pytest.raises(DataError, match="0 \\(OK\\) or 1"):
        image_metrics([0, 2], [0.5, 0.6])


def test_trapezoid_ap_of_a_straight_line():
    # precision falls linearly from 1 to 0.5 while recall goes 0 -> 1: area 0.75
    ap = trapezoid_ap(np.array([0.5, 0.75, 1.0]), np.array([1.0, 0.5, 0.0]))
    assert ap == pytest.approx(0.75)


def test_pixel_metrics_perfect_and_subsampled():
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    heat = np.where(mask > 0, 0.9, 0.1).astype(np.float32)
    m = pixel_metrics([mask, mask], [heat, heat])
    assert m["pixel_auroc"] == pytest.approx(1.0) and m["pixel_ap"] == pytest.approx(1.0)
    assert m["n_pixels"] == 512 and not m["subsampled"]
    noisy = (heat + np.random.default_rng(1).normal(0, 0.3, heat.shape)).astype(np.float32)
    full = pixel_metrics([mask], [noisy])
    sub1 = pixel_metrics([mask], [noisy], max_pixels=200)
    sub2 = pixel_metrics([mask], [noisy], max_pixels=200)
    assert sub1["subsampled"] and sub1["n_pixels"] == 200
    assert sub1 == sub2  # deterministic
    assert abs(sub1["pixel_auroc"] - full["pixel_auroc"]) < 0.1


def test_pixel_metrics_undefined_and_bad_shapes():
    clean = pixel_metrics([np.zeros((4, 4), np.uint8)], [np.zeros((4, 4), np.float32)])
    assert clean["pixel_auroc"] is None and "no defect pixel" in clean["note"]
    assert pixel_metrics([], [])["pixel_ap"] is None
    with pytest.raises(DataError, match="heatmap"):
        pixel_metrics([np.zeros((4, 4))], [np.zeros((4, 5))])


def test_trapezoid_ap_matches_the_hand_written_sum_on_random_curves():
    # the former hand-written formula: sum |dR| (P_n + P_{n-1}) / 2 over the curve points
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(7)
    for n in (2, 5, 40, 300):
        y = rng.integers(0, 2, n)
        y[0] = 1
        s = np.round(rng.random(n), 2)  # ties on purpose: repeated recalls
        p, r, _ = precision_recall_curve(y, s)
        by_hand = float(np.sum(np.abs(np.diff(r)) * (p[1:] + p[:-1]) / 2.0))
        assert abs(trapezoid_ap(p, r) - by_hand) < 1e-9
        assert abs(image_metrics(y, s)["ap_trapz"] - by_hand) < 1e-9


def test_trapezoid_ap_edge_cases():
    assert trapezoid_ap(np.array([1.0]), np.array([0.0])) == 0.0
    assert trapezoid_ap(np.array([]), np.array([])) == 0.0
    assert trapezoid_ap(np.array([1.0, 0.5]), np.array([0.0, 1.0])) == pytest.approx(0.75)
    with pytest.raises(DataError, match="points"):
        trapezoid_ap(np.array([1.0, 0.5]), np.array([0.0]))
    with pytest.raises(DataError, match="not a precision-recall curve"):
        trapezoid_ap(np.array([1.0, 0.5, 0.7]), np.array([0.0, 1.0, 0.5]))


# -- does validation separate the classes? (the gate in front of a best-F1 threshold) ------

def test_separation_by_hand():
    # 2 defective above 6 good: the exact one-sided p is 1 / C(8, 2) = 1/28
    perfect = separation([0] * 6 + [1] * 2, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert perfect["auc"] == 1.0 and perfect["p_value"] == pytest.approx(1 / 28)
    assert perfect["separates"] and (perfect["n_pos"], perfect["n_neg"]) == (2, 6)
    # one swap: AUC 11/12, p = 2/28, not beyond chance at 0.05
    swap = separation([0] * 5 + [1, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert swap["auc"] == pytest.approx(11 / 12) and swap["p_value"] == pytest.approx(2 / 28)
    assert not swap["separates"]
    assert separation([0] * 5 + [1, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                      alpha=0.1)["separates"]
    # the AUC is scikit-learn's, ties included
    y, s = [0, 1, 0, 1, 1, 0, 0, 1], [0.3, 0.3, 0.1, 0.9, 0.5, 0.5, 0.2, 0.3]
    assert separation(y, s)["auc"] == pytest.approx(image_metrics(y, s)["auc"])


def test_separation_of_noise_and_of_a_shifted_class():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(27, int), np.ones(9, int)]
    noise = [separation(y, rng.random(36))["separates"] for _ in range(200)]
    assert sum(noise) <= 20  # about 5 % of pure-noise splits pass, by construction
    shifted = separation(y, np.r_[rng.normal(0, 1, 27), rng.normal(2, 1, 9)])
    assert shifted["separates"] and shifted["auc"] > 0.8


def test_separation_of_one_class_and_bad_input():
    for y in ([0, 0, 0], [1, 1]):
        out = separation(y, [0.2] * len(y))
        assert out["auc"] is None and out["p_value"] is None and not out["separates"]
    assert not separation([0, 1, 0, 1], [0.5] * 4)["separates"]  # all tied: no evidence
    with pytest.raises(DataError, match="NaN"):
        separation([0, 1], [0.5, float("nan")])
    with pytest.raises(DataError, match="NaN"):
        separation([0, 1], [0.5, float("inf")])
    with pytest.raises(DataError, match="0 \\(OK\\) or 1"):
        separation([0, -1], [0.5, 0.6])
    with pytest.raises(DataError, match="match"):
        separation([0, 1, 1], [0.5, 0.6])
    with pytest.raises(DataError, match="empty"):
        separation([], [])
    with pytest.raises((DataError, ValueError)):
        separation([0, 1], ["a", "b"])


def test_separation_warning_names_the_figures():
    sep = separation([0] * 5 + [1, 0, 1], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    text = separation_warning(sep, "the decision head's own 0.5")
    assert "ROC AUC 0.92 on 2 defective / 6 good, p = 0.071" in text
    assert "the threshold is the decision head's own 0.5" in text
    one = separation_warning(separation([1, 1], [0.1, 0.2]), "x")
    assert "ROC AUC n/a on 2 defective / 0 good, p = n/a" in one
