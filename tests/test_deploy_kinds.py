"""Export packages of the anomaly and detector kinds: parity of the torch-free runtime
(ONNX Runtime, OpenVINO) with the kinds' torch predictors, the manifest fields of each
kind, predict --model without torch, and packages the runtime must refuse."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from defect_studio.cli import main

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_support import compare, with_odd_copies  # noqa: E402
from detection_fixtures import make_box_project  # noqa: E402


def _images(files: list[Path]) -> list[np.ndarray]:
    """The files as read_image gives them, plus a non-square crop and a gray copy (other
    geometry and channels than the runs)."""
    from defect_studio.io.images import read_image

    return with_odd_copies([read_image(p) for p in files], crop_from=1, gray_from=2)


def _split_threshold(preds) -> float:
    """A threshold that calls some of these predictions NG and some OK, half-way between
    two of their scores (so that a difference of 1e-7 cannot flip a decision)."""
    scores = sorted({p.score for p in preds})
    assert len(scores) >= 2, scores
    k = len(scores) // 2
    return (scores[k - 1] + scores[k]) / 2


# -- anomaly -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def anomaly(_demo_template, tmp_path_factory):
    """A tiny trained anomaly run (non-square input) and its ONNX and OpenVINO packages."""
    from defect_studio.deploy.export import convert_package
    from defect_studio.kinds.anomaly.config import AnomalyConfig
    from defect_studio.training import train

    base = tmp_path_factory.mktemp("anomaly_pkgs")
    project = base / "demo"
    shutil.copytree(_demo_template, project, ignore=shutil.ignore_patterns("project.lock"))
    cfg = AnomalyConfig(model="anomaly", epochs=1, input_size=(64, 48), batch=8, seed=0,
                        device="cpu", num_threads=1, sigma=2.0, width=32)
    train(project, cfg, run_id="a1")
    assert main(["export-model", "--run", "a1", "--project", str(project), "--format", "onnx",
                 "--out", str(base / "a-onnx")]) == 0
    files = sorted((project / "images").rglob("*.png"))[:10]
    return {"run": project / "runs" / "a1", "onnx": base / "a-onnx",
            "openvino": convert_package(base / "a-onnx", base / "a-ov"), "images": files}


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_anomaly_package_scores_like_the_torch_predictor(anomaly, fmt):
    from defect_studio.deploy import load_package
    from defect_studio.kinds.anomaly.predictor import AnomalyPredictor

    ref = AnomalyPredictor(anomaly["run"], device="cpu")
    pkg = load_package(anomaly[fmt], num_threads=1)
    assert (pkg.run_id, pkg.threshold, pkg.threshold_source) == \
        (ref.run_id, ref.threshold, ref.threshold_source)
    images = _images(anomaly["images"])
    r = compare(ref, pkg, images, _split_threshold)  # batches of 5, 5, 2
    want, got, d_score, d_batch, d_heat = r.want, r.got, r.d_score, r.d_batch, r.d_heat
    # measured: ~3e-7 (ONNX Runtime and OpenVINO f32) on maps in [0, 1)
    assert d_score <= 1e-4 and d_heat <= 1e-4 and d_batch <= 1e-5, (d_score, d_heat, d_batch)
    assert all(a.heatmap.shape == b.heatmap.shape == img.shape[:2]
               for a, b, img in zip(want, got, images))
    decisions = [p.is_ng for p in want]
    assert decisions == [p.is_ng for p in got] and True in decisions and False in decisions
    # the score is the maximum of the calibrated map, before it is resized to the image
    assert all(p.heatmap.max() <= p.score + 1e-6 for p in got)


def test_anomaly_package_records_the_calibration(anomaly):
    import onnx
    import torch

    from defect_studio.deploy.package import read_package

    info = read_package(anomaly["onnx"])
    m = info.manifest
    cfg = json.loads((anomaly["run"] / "config.json").read_text())
    saved = torch.load(anomaly["run"] / "model.pt", weights_only=True)
    assert (info.kind, info.model, m["model"]) == ("anomaly", "anomaly", "anomaly")
    assert m["threshold"] == 0.5 and m["preprocess"]["input_size"] == cfg["input_size"] == [64, 48]
    assert m["calibration"]["raw_threshold"] == pytest.approx(float(saved["raw_threshold"]))
    assert m["calibration"]["map_taps"] == cfg["map_taps"] and m["model_spec"]["sigma"] == 2.0
    assert set(m["outputs"]) == {"score", "heatmap"} and "box_types" not in m
    model = onnx.load(str(anomaly["onnx"] / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch
    assert [o.name for o in model.graph.output] == ["score", "heatmap"]


# -- detector ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """A tiny trained detector run ("trained": after one epoch it finds few boxes or none),
    a copy whose background bias is lowered ("bold": 50 boxes an image, of both types),
    and their packages."""
    import torch

    from defect_studio.deploy.export import export_model
    from defect_studio.kinds.detector.config import DetectorConfig
    from defect_studio.training import train
    from defect_studio.training.checkpoint import load_torch, save_torch

    base = tmp_path_factory.mktemp("detector_pkgs")
    project = make_box_project(base / "proj")
    cfg = DetectorConfig(model="relational", epochs=1, input_size=(64, 64), device="cpu",
                         num_threads=1, seed=0)
    train(project, cfg, run_id="d1")
    runs = project / "runs"
    shutil.copytree(runs / "d1", runs / "bold")
    sd = load_torch(runs / "bold" / "model.pt")
    with torch.no_grad():
        sd["roi_heads.box_predictor.cls_score.bias"][0] -= 3.0
    save_torch(runs / "bold" / "model.pt", sd)
    (runs / "bold" / "threshold.json").write_text(json.dumps({"threshold": 0.3,
                                                              "source": "user"}))
    out = {"runs": {"trained": runs / "d1", "bold": runs / "bold"}, "project": project,
           "images": sorted((project / "images").rglob("*.png"))}
    out["trained", "onnx"] = export_model(runs / "d1", base / "d1-onnx", "onnx")
    out["bold", "onnx"] = export_model(runs / "bold", base / "bold-onnx", "onnx")
    from defect_studio.deploy.export import convert_package  # no second torch export

    out["bold", "openvino"] = convert_package(out["bold", "onnx"], base / "bold-ov")
    return out


def _iou(a, b) -> float:
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else float(a == b)


def _same_boxes(want, got) -> None:
    """Every box of ``want`` has one in ``got`` of the same type, IoU > 0.99 and a score
    within 1e-4 (order-free: boxes of equal score may come in either order)."""
    assert len(want.boxes) == len(got.boxes), (len(want.boxes), len(got.boxes))
    assert [b.score for b in got.boxes] == sorted((b.score for b in got.boxes), reverse=True)
    free = list(got.boxes)
    for a in want.boxes:
        best = max(free, key=lambda b: (b.type == a.type, _iou(a, b)))
        assert best.type == a.type and _iou(a, best) > 0.99, (a, best)
        assert abs(best.score - a.score) <= 1e-4, (a, best)
        free.remove(best)


@pytest.mark.parametrize("run,fmt", [("trained", "onnx"), ("bold", "onnx"),
                                     ("bold", "openvino")])
def test_detector_package_gives_the_boxes_of_the_torch_predictor(detector, run, fmt):
    from defect_studio.deploy import load_package
    from defect_studio.inference.prediction import DetectionPrediction
    from defect_studio.kinds.detector.predictor import DetectorPredictor

    ref = DetectorPredictor(detector["runs"][run], device="cpu")
    pkg = load_package(detector[run, fmt], num_threads=1)
    assert (pkg.run_id, pkg.threshold, pkg.threshold_source, pkg.classes) == \
        (ref.run_id, ref.threshold, ref.threshold_source, ref.classes)
    images = _images(detector["images"][:8])
    got = [p for _, p in pkg.predict_many(images, batch_size=3)]  # one image per graph call
    want = [p for _, p in ref.predict_many(images)]
    assert len(got) == len(want) == len(images)
    for img, a, b in zip(images, want, got):
        assert isinstance(b, DetectionPrediction) and b.heatmap.shape == img.shape[:2]
        _same_boxes(a, b)
        assert abs(a.score - b.score) <= 1e-4 and a.is_ng == b.is_ng
        assert float(np.abs(a.heatmap - b.heatmap).max()) <= 1e-4
        assert b.score == (b.boxes[0].score if b.boxes else 0.0)
    if run == "bold":
        assert all(len(p.boxes) == 50 for p in want)  # the model's boxes_per_image
        assert {b.type for p in got for b in p.boxes} == {"spot", "bar"}
        ref.threshold = pkg.threshold = _split_threshold(want)
        decisions = [ref.predict(img).is_ng for img in images]
        assert decisions == [pkg.predict(img).is_ng for img in images]
        assert True in decisions and False in decisions
        shown = pkg.predict(images[0]).boxes_at(pkg.threshold)
        assert shown and all(b.score >= pkg.threshold for b in shown)


def test_detector_graph_heatmap_and_manifest(detector):
    """The graph's own score and heatmap (for consumers that read only those) are the
    runtime's on an image of the input size; the manifest names the outputs and types."""
    import onnx
    import onnxruntime as ort

    from defect_studio.deploy import load_package
    from defect_studio.deploy.package import read_package
    from defect_studio.io.images import read_image
    from defect_studio.preprocess import preprocess_array

    pkg_dir = detector["bold", "onnx"]
    m = read_package(pkg_dir).manifest
    assert m["kind"] == "detector" and m["model"] == "relational"
    assert m["box_types"] == ["spot", "bar"] and m["min_box_score"] == 0.05
    assert m["box_outputs"] == ["boxes", "box_scores", "box_labels"]
    assert set(m["outputs"]) == {"score", "heatmap", "boxes", "box_scores", "box_labels"}
    assert m["threshold"] == 0.3 and m["threshold_source"] == "user"
    model = onnx.load(str(pkg_dir / "model.onnx"))
    assert [o.name for o in model.graph.output] == ["score", "heatmap", "boxes", "box_scores",
                                                    "box_labels"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1  # one image a call
    session = ort.InferenceSession(str(pkg_dir / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    pkg = load_package(pkg_dir, num_threads=1)
    for path in detector["images"][:3]:
        img = read_image(path)
        assert img.shape[:2] == (64, 64)  # the input size: the boxes are not rescaled
        x = preprocess_array(img, pkg.config)[None]
        score, heat, boxes, box_scores, labels = session.run(None, {"image": x})
        p = pkg.predict(img)
        assert heat.shape == (1, 64, 64) and labels.dtype == np.int64
        assert float(score[0]) == p.score == float(box_scores.max())
        assert np.array_equal(heat[0], p.heatmap)
        assert len(boxes) == len(p.boxes) and set(labels.tolist()) <= {0, 1}


# -- without torch, and hostile packages -----------------------------------------------------

def test_new_kinds_run_and_predict_without_torch(anomaly, detector, tmp_path):
    """Both kinds' packages in a process where `import torch` fails: the torch predictors'
    scores and boxes, and `predict --model` writes the CSV of a detector package."""
    from defect_studio.io.images import read_image
    from defect_studio.kinds.anomaly.predictor import AnomalyPredictor
    from defect_studio.kinds.detector.predictor import DetectorPredictor

    a_img, d_img = anomaly["images"][0], detector["images"][1]
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None\n"  # any import of torch raises ImportError
        "from defect_studio.deploy import load_package\n"
        "from defect_studio.io.images import read_image\n"
        "from defect_studio.cli import main\n"
        "a, d = sys.argv[1:3]\n"
        f"sa = load_package(a).predict(read_image({str(a_img)!r})).score\n"
        f"pd = load_package(d).predict(read_image({str(d_img)!r}))\n"
        f"rc = main(['predict', '--model', d, {str(d_img)!r}, '--out', sys.argv[3]])\n"
        "assert rc == 0, rc\n"
        "print(json.dumps({'anomaly': sa, 'detector': pd.score, "
        "'boxes': [[b.type, b.x, b.y, b.w, b.h, b.score] for b in pd.boxes], 'torch_modules': "
        "[m for m in sys.modules if m.startswith('torch') and sys.modules[m] is not None]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", script, str(anomaly["onnx"]),
                          str(detector["bold", "openvino"]), str(tmp_path / "pred")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["torch_modules"] == []
    ref_a = AnomalyPredictor(anomaly["run"], device="cpu").predict(read_image(a_img))
    ref_d = DetectorPredictor(detector["runs"]["bold"], device="cpu").predict(read_image(d_img))
    assert abs(out["anomaly"] - ref_a.score) <= 1e-4 and abs(out["detector"] - ref_d.score) <= 1e-4
    assert len(out["boxes"]) == len(ref_d.boxes) == 50
    assert out["boxes"][0][0] == ref_d.boxes[0].type
    assert np.allclose(out["boxes"][0][1:], [ref_d.boxes[0].x, ref_d.boxes[0].y, ref_d.boxes[0].w,
                                             ref_d.boxes[0].h, ref_d.boxes[0].score], atol=1e-3)
    with open(tmp_path / "pred" / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["path"] == str(d_img) and rows[0]["run_id"] == "bold"
    assert abs(float(rows[0]["score"]) - ref_d.score) <= 1e-4 and rows[0]["error"] == ""
    assert rows[0]["decision"] == ("NG" if ref_d.score >= 0.3 else "OK")
    assert float(rows[0]["threshold"]) == 0.3
    assert (tmp_path / "pred" / rows[0]["overlay"]).is_file()


def _edit_manifest(pkg: Path, drop=(), **changes) -> None:
    m = json.loads((pkg / "package.json").read_text())
    m.update(changes)
    for key in drop:
        m.pop(key, None)
    (pkg / "package.json").write_text(json.dumps(m))


def test_packages_of_unknown_kinds_or_without_box_outputs_are_refused(anomaly, detector,
                                                                      tmp_path):
    from defect_studio.deploy import load_package
    from defect_studio.deploy.package import PackageError

    def copy(src: Path, name: str) -> Path:
        return Path(shutil.copytree(src, tmp_path / name))

    pkg = copy(anomaly["onnx"], "unknown-kind")
    _edit_manifest(pkg, kind="keypoints")
    with pytest.raises(PackageError, match=r"kind 'keypoints'.*cannot run.*segdec, anomaly, "
                                           r"detector"):
        load_package(pkg)
    cases = {"no-box-outputs": dict(drop=("box_outputs",)),
             "other-box-outputs": dict(box_outputs=["boxes", "scores", "labels"]),
             "no-box-types": dict(drop=("box_types",)),
             "empty-box-type": dict(box_types=["spot", ""])}
    for name, change in cases.items():
        pkg = copy(detector["bold", "onnx"], name)
        _edit_manifest(pkg, **change)
        key = "box_types" if "type" in name else "box_outputs"
        with pytest.raises(PackageError, match=rf"'{key}' must be .*export the model again"):
            load_package(pkg)
    # a manifest that says detector over a graph without the box outputs
    pkg = copy(anomaly["onnx"], "maps-as-boxes")
    _edit_manifest(pkg, kind="detector", box_outputs=["boxes", "box_scores", "box_labels"],
                   box_types=["spot"])
    with pytest.raises(PackageError, match=r"has inputs .* outputs .*not 'image' -> .*box_scores"):
        load_package(pkg)
    # the same for OpenVINO IR
    pkg = copy(anomaly["openvino"], "maps-as-boxes-ov")
    _edit_manifest(pkg, kind="detector", box_outputs=["boxes", "box_scores", "box_labels"],
                   box_types=["spot"])
    with pytest.raises(PackageError, match=r"has outputs .*not \[.*'boxes'"):
        load_package(pkg)
