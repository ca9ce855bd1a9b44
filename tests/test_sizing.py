"""The input size from the data: tall, wide and mixed parts, the cap, the model's rule."""

import pytest

from defect_studio.errors import DataError
from defect_studio.training import TrainConfig, TrainConfigError
from defect_studio.training.sizing import choose_input_size, input_rule, size_from_data


def test_tall_parts_keep_their_aspect():
    # KolektorSDD-like parts, 500x1240: long side capped at 640, sides multiples of 8
    c = size_from_data([(500, 1240)] * 5 + [(510, 1250)] * 4, max_side=640)
    W, H = c.size
    assert H == 640 and W % 8 == 0 and H % 8 == 0
    assert W / H == pytest.approx(500 / 1240, abs=0.02)
    assert "median training image 500x1240" in c.reason and "capped at 640" in c.reason


def test_wide_parts_keep_their_aspect():
    c = size_from_data([(1600, 256)] * 3, max_side=800)
    assert c.size == (800, 128)
    c = size_from_data([(1600, 256)] * 3, max_side=None)  # no cap: the median itself
    assert c.size == (1600, 256)


def test_small_parts_are_not_enlarged_and_short_sides_meet_the_minimum():
    assert size_from_data([(100, 60)], max_side=640).size == (104, 64)
    # a very elongated part: the short side is raised to the model's minimum
    c = size_from_data([(1600, 100)], max_side=128, multiple=8, min_side=64)
    assert c.size == (128, 64) and "minimum" in c.reason


def test_mixed_shapes_take_the_median_and_suggest_pad():
    sizes = [(200, 600)] * 3 + [(600, 200)] * 2  # three tall, two wide
    c = size_from_data(sizes, max_side=256)
    W, H = c.size
    assert (W, H) == (88, 256)  # medians 200 x 600: the majority's shape, capped at 256
    assert "pad" in c.reason
    assert "pad" not in size_from_data([(200, 600)] * 3, max_side=256).reason


def test_no_usable_sizes_is_a_clear_error():
    with pytest.raises(DataError, match="--size"):
        size_from_data([], max_side=128)
    with pytest.raises(DataError):
        size_from_data([(0, 10), (-5, 3)], max_side=128)


def test_model_rule_and_project(demo_project_dir):
    from defect_studio.project import Project

    assert input_rule("mixsup") == (8, 64) and input_rule("mffpa") == (8, 16)
    with Project.open(demo_project_dir, readonly=True) as p:  # 64x64 images
        # its defects are 1-3 px wide: at 48 they would thin below 1.5 px, so the defect
        # rule (issue 18) keeps the full 64 and trains on crops of 48 (tests/test_defect_sizing)
        c = choose_input_size(p, TrainConfig(max_side=48))
        assert (c.size, c.crop) == ((64, 64), (48, 48))
        assert choose_input_size(p, TrainConfig(model="mixsup", max_side=48)).size == (64, 64)
        assert choose_input_size(p, TrainConfig(input_size=(32, 40))).size == (32, 40)


@pytest.mark.parametrize("bad", [float("nan"), -1, 10, 10**6, "128", True])
def test_bad_max_side_is_refused(bad):
    with pytest.raises(TrainConfigError, match="max_side"):
        TrainConfig(max_side=bad)


def test_old_run_configs_keep_their_meaning(tmp_path):
    import json

    from defect_studio.kinds.segdec.runmodel import read_run_config

    old = {"model": "mffpa", "epochs": 3, "input_size": [64, 64], "channels": 1,
           "created": "2026-11-20T00:00:00Z"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = read_run_config(tmp_path)
    assert (cfg.norm, cfg.dec_target, cfg.loss_reduction, cfg.dilate_at) == \
        ("instance", "label", "mean", "input")
    assert cfg.keep_best is False and cfg.input_size == (64, 64)
