"""The benchmark scripts' small helpers (the scripts themselves are run by hand: they are
long measurements, not tests)."""

import json

import pytest

from benchmarks.accuracy_magnetic_tile import n_values
from benchmarks.common import parse_overrides
from benchmarks.quick_ablation import VARIANTS, table


def test_overrides_are_json_values_or_text():
    got = parse_overrides(["cpu_bf16=true", "epochs=7", "norm=original", "input_size=[96, 64]",
                           "max_side=null", " lr = 0.02 "])
    assert got == {"cpu_bf16": True, "epochs": 7, "norm": "original", "input_size": [96, 64],
                   "max_side": None, "lr": 0.02}
    for bad in ("epochs", "=3", ""):
        with pytest.raises(SystemExit, match="KEY=VALUE"):
            parse_overrides([bad])


def test_mask_levels_keep_the_given_order():
    assert n_values("all,0", 196) == [196, 0]
    assert n_values("0,10%,all,196", 196) == [0, 20, 196]  # repeats dropped
    with pytest.raises(Exception, match="bad pixel-label level"):
        n_values("all,../x", 196)
    with pytest.raises(Exception, match="more than"):
        n_values("1000", 196)


def test_ablation_table_compares_each_variant_with_the_preset():
    def line(label, aps, overrides=None):
        rows = [{"seed": i, "ap": a} for i, a in enumerate(aps)]
        mean = {"ap": sum(aps) / len(aps), "auc": 0.95, "cpu_s": 100.0}
        return {"label": label, "overrides": overrides or {}, "rows": rows, "mean": mean}

    text = table([line("quick", [0.9, 0.92]), line("norm", [0.8, 0.84]),
                  line("custom", [0.5, 0.5], {"lr": 1})])
    rows = text.splitlines()
    assert len(rows) == 5 and "Δ AP" in rows[0]
    assert rows[2].startswith("| quick |") and rows[2].split("|")[5].strip() == ""
    assert "| norm | " + VARIANTS["norm"][0] in rows[3] and "| -0.090 |" in rows[3]
    assert json.dumps({"lr": 1}) in rows[4] and "| -0.410 |" in rows[4]


def test_draft_quality_targets_need_a_sane_input_size():
    from pathlib import Path

    from benchmarks.draft_quality import parse_target

    assert parse_target("/tmp/case/demo:512x512") == (Path("/tmp/case/demo"), (512, 512))
    assert parse_target("a:b/p:104X128") == (Path("a:b/p"), (104, 128))  # last colon
    for bad in ("demo", "demo:512", "demo:0x5", "demo:-3x4", "demo:nanx4", "demo:99999x2",
                "demo:1e3x2", "../x:", ":"):
        with pytest.raises(SystemExit, match="PROJECT:WxH"):
            parse_target(bad)
