"""INT8 packages (export-model --int8, NNCF) and the runtime's --device choice with its CPU
fallback (this machine has no GPU: the GPU path itself is not exercised here)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from defect_studio.cli import main
from defect_studio.errors import UserError as UserErrorType

# Measured on the tiny 64x64 demo run (48 images, scores 0.44-0.49): max |score f32 - int8|
# 0.024 (OpenVINO IR) and 0.021 (ONNX QDQ), mean 0.006-0.007.
INT8_TOLERANCE = 0.05


def _onnx_package(root: Path) -> Path:
    """A valid ONNX package of a small hand-made graph (heatmap = the mean over the channels,
    score = its mean): enough for the runtime's device choice, no torch export needed."""
    import onnx
    from onnx import TensorProto, helper

    from defect_studio.deploy.package import PACKAGE_FORMAT
    from defect_studio.io.atomic import sha256_file

    root.mkdir(parents=True)
    axes_c = helper.make_tensor("axes_c", TensorProto.INT64, [1], [1])
    axes_hw = helper.make_tensor("axes_hw", TensorProto.INT64, [2], [1, 2])
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image", "axes_c"], ["heatmap"], keepdims=0),
         helper.make_node("ReduceMean", ["heatmap", "axes_hw"], ["score"], keepdims=0)],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["n", 16, 16])],
        initializer=[axes_c, axes_hw])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, str(root / "model.onnx"))
    manifest = {"package_format": PACKAGE_FORMAT, "kind": "segdec", "format": "onnx",
                "model": "mean", "run_id": "mean", "threshold": 0.5,
                "preprocess": {"input_size": [16, 16], "resize": "resize", "channels": 3},
                "files": {"model.onnx": sha256_file(root / "model.onnx")}}
    (root / "package.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def int8_package(_trained_template, tmp_path_factory):
    """The tiny run exported as an INT8 OpenVINO package through the CLI (--json): the one
    export of this module (the torch export dominates its time)."""
    import io
    from contextlib import redirect_stdout

    out = tmp_path_factory.mktemp("int8") / "ov8"
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["export-model", "--run", "tiny", "--project", str(_trained_template),
                   "--format", "openvino", "--int8", "--calibration-images", "12", "--json",
                   "--out", str(out)])
    assert rc == 0
    return out, json.loads(buf.getvalue())  # NNCF's progress bars kept off stdout


def test_int8_export_records_calibration_and_stays_close(int8_package, _trained_template):
    from defect_studio.deploy.runtime import load_package
    from defect_studio.io.images import read_image
    from defect_studio.kinds.segdec.predictor import Predictor
    from defect_studio.project import Project

    pkg_dir, manifest = int8_package
    with Project.open(_trained_template, readonly=True) as project:
        n_train = len([r for r in project.images(split="train") if r.label in ("ok", "defective")])
    q = manifest["quantization"]
    assert manifest["precision"] == "int8" and q["tool"] == "nncf" and q["nncf_version"]
    assert q["calibration"]["split"] == "train"
    assert q["calibration"]["train_images"] == n_train
    assert q["calibration"]["images"] == min(12, n_train)
    # the stem convolution reads the image: it stays f32 (the default since the sensitivity
    # measurement), and the IR says so: its weights are not quantized
    assert q["input_layers_f32"] is True and "read the input image and" in q["method"]
    import openvino as ov

    # the normalizations' inputs are not quantized: no FakeQuantize feeds an MVN
    assert q["norm_inputs_f32"] is True and q["kept_f32_types"] == ["MVN"]
    int8_ir = ov.Core().read_model(str(pkg_dir / "model.xml"))
    mvn = [op for op in int8_ir.get_ops() if op.get_type_name() == "MVN"]
    assert mvn and all(op.input_value(0).get_node().get_type_name() != "FakeQuantize"
                       for op in mvn)

    f32_ir = ov.Core().read_model(str(pkg_dir / "model_f32.xml"))
    first = [op.get_friendly_name() for op in f32_ir.get_ops()
             if op.get_type_name() == "Convolution"
             and op.input_value(0).get_node().get_type_name() == "Parameter"]
    assert len(first) == 1 and first[0] in q["kept_f32"]
    assert json.loads((pkg_dir / "package.json").read_text()) == manifest
    assert "FakeQuantize" in (pkg_dir / "model.xml").read_text()
    assert sorted(p.name for p in pkg_dir.iterdir()) == [
        "model.bin", "model.xml", "model_f32.bin", "model_f32.xml", "package.json"]

    imgs = [read_image(p) for p in sorted((_trained_template / "images").rglob("*.png"))[:16]]
    ref = Predictor(_trained_template / "runs" / "tiny", device="cpu")  # f32 = its package
    want = np.array([p.score for _, p in ref.predict_many(imgs)])
    pkg = load_package(pkg_dir, num_threads=2)
    assert pkg.inference_precision == "int8" and pkg.threshold == ref.threshold
    got = np.array([p.score for _, p in pkg.predict_many(imgs, batch_size=5)])
    one = np.array([pkg.predict(im).score for im in imgs[:3]])
    assert np.abs(got - want).max() <= INT8_TOLERANCE
    assert np.abs(one - got[:3]).max() <= 1e-5  # batches of 5 and of 1 (static shapes)


def test_input_layers_are_the_weighted_nodes_reading_the_input(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from defect_studio.deploy.quantize import input_layers

    def w(name, *shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape, [0.1] * int(np.prod(shape)))

    pads = helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 2 * 10 * 10])
    nodes = [helper.make_node("Pad", ["image", "pads"], ["padded"], name="pad"),
             helper.make_node("Conv", ["padded", "w1"], ["c1"], name="first", pads=[0] * 4,
                              kernel_shape=[3, 3]),
             helper.make_node("Conv", ["c1", "w2"], ["c2"], name="second",
                              kernel_shape=[1, 1]),
             helper.make_node("Add", ["image", "image"], ["twice"], name="add"),
             helper.make_node("Conv", ["twice", "w3"], ["c3"], name="after_add",
                              kernel_shape=[1, 1]),
             helper.make_node("Reshape", ["image", "shape"], ["flat"], name="flat"),
             helper.make_node("Gemm", ["flat", "w4"], ["g"], name="linear", transB=1),
             # a tiled graph (segdec/tiles.py): two tiles sliced off the image, concatenated
             helper.make_node("Slice", ["image", "s0", "e0", "ax"], ["t0"], name="tile0"),
             helper.make_node("Slice", ["image", "s1", "e1", "ax"], ["t1"], name="tile1"),
             helper.make_node("Concat", ["t0", "t1"], ["tiles"], name="tiles", axis=0),
             helper.make_node("Conv", ["tiles", "w3"], ["c4"], name="tiled",
                              kernel_shape=[1, 1])]
    ints = {n: helper.make_tensor(n, TensorProto.INT64, [2], v) for n, v in
            (("s0", [0, 0]), ("e0", [5, 5]), ("s1", [5, 5]), ("e1", [10, 10]), ("ax", [2, 3]))}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 10, 10])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
         for n in ("c2", "c3", "g", "c4")],
        initializer=[w("w1", 4, 2, 3, 3), w("w2", 4, 4, 1, 1), w("w3", 4, 2, 1, 1),
                     w("w4", 3, 200), pads, shape, *ints.values()])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    # through layout-only ops (Pad, Reshape, the tiles' Slice + Concat), not through
    # arithmetic (Add) or a first conv
    assert input_layers(path) == ["first", "linear", "tiled"]


def test_int8_arguments_are_checked_before_exporting(_trained_template, tmp_path, capsys):
    base = ["export-model", "--run", "tiny", "--project", str(_trained_template)]
    for extra, words in ((["--int8", "--calibration-images", "0"], "from 1 to"),
                         (["--int8", "--calibration-images", "-3"], "from 1 to"),
                         (["--int8", "--calibration-images", str(10**9)], "from 1 to"),
                         (["--calibration-images", "5"], "goes with --int8")):
        out = tmp_path / f"out{len(extra)}{extra[-1]}"
        assert main(base + extra + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
        assert not out.exists()
    # a run copied out of its project has no training images to calibrate on
    lone = tmp_path / "lone" / "tiny"
    shutil.copytree(_trained_template / "runs" / "tiny", lone)
    assert main(["export-model", "--run", str(lone), "--int8", "--out",
                 str(tmp_path / "p")]) == 2
    assert "not inside its project" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_provider_and_device_selection():
    from defect_studio.deploy.runtime import check_device, onnx_providers, openvino_device
    from defect_studio.errors import UserError

    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    assert onnx_providers("cpu", [cuda, cpu]) == ([cpu], None)
    assert onnx_providers("auto", [cuda, cpu]) == ([cuda, cpu], None)
    assert onnx_providers("gpu", [cuda, cpu]) == ([cuda, cpu], None)
    assert onnx_providers("auto", ["AzureExecutionProvider", cpu]) == ([cpu], None)
    providers, note = onnx_providers("cuda", [cpu])
    assert providers == [cpu] and "no CUDA provider" in note and "\n" not in note
    assert openvino_device("auto", ["CPU", "GPU.0", "GPU.1"]) == ("GPU", None)
    assert openvino_device("gpu", ["CPU", "GPU"]) == ("GPU", None)
    assert openvino_device("cpu", ["CPU", "GPU"]) == ("CPU", None)
    assert openvino_device("auto", ["CPU", "NPU"]) == ("CPU", None)
    device, note = openvino_device("cuda", ["CPU"])
    assert device == "CPU" and "no GPU" in note
    for bad in ("mps", "GPU", "", "cuda:0", None, 1):
        with pytest.raises(UserError, match="unknown device"):
            check_device(bad)


def test_gpu_request_falls_back_to_the_cpu_with_one_line(int8_package, _trained_template,
                                                         tmp_path, capsys):
    import onnxruntime
    import openvino

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() or any(
            d.startswith("GPU") for d in openvino.Core().available_devices):
        pytest.skip("this machine has a GPU: the fallback is not what happens here")
    pk = {"onnx": _onnx_package(tmp_path / "onnx-pkg"), "openvino": int8_package[0]}
    images = sorted((_trained_template / "images").rglob("*.png"))[:3]
    for name, device, words in (("onnx", "cuda", "no CUDA provider"),
                                ("openvino", "gpu", "OpenVINO finds no GPU")):
        out = tmp_path / name
        rc = main(["predict", "--model", str(pk[name]), "--device", device, "--out", str(out),
                   "--no-overlays", *map(str, images)])
        assert rc == 0
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if words in line]
        assert len(lines) == 1 and "scoring on the CPU" in lines[0], err
        assert len((out / "predictions.csv").read_text().splitlines()) == 1 + len(images)
    assert main(["predict", "--model", str(pk["onnx"]), "--device", "mps", "--out",
                 str(tmp_path / "m"), str(images[0])]) == 2
    assert "--device mps applies to --run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["watch", str(tmp_path), "--model", str(pk["onnx"]), "--out", str(tmp_path / "w"),
              "--device", "tpu"])


# -- the float32 re-check of INT8 packages (defect_studio.deploy.recheck) -----------------

def test_recheck_band_is_calibrated_in_logit_space():
    from defect_studio.deploy.recheck import (
        MAX_BAND_LOGIT,
        SAFETY_FACTOR,
        calibrate_band,
        in_band,
        logit,
    )

    f32 = np.array([0.1, 0.5, 0.9, 1.0, 0.0])
    int8 = np.array([0.12, 0.45, 0.9, 0.999, 0.0])  # 1.0 vs 0.999: 9.2 logits apart
    facts = calibrate_band(f32, int8, threshold=0.48)
    diff = np.abs(logit(int8) - logit(f32))
    assert np.isfinite(diff).all() and diff.max() == pytest.approx(16.118 - 6.9068, abs=1e-3)
    assert facts["band_logit"] == pytest.approx(SAFETY_FACTOR * diff.max(), abs=1e-5)
    cal = facts["calibration"]
    assert cal["images"] == 5 and cal["decisions_differing"] == 1  # 0.5 vs 0.45 at 0.48
    assert cal["abs_logit_diff_max"] == pytest.approx(diff.max(), abs=1e-5)
    assert "largest |logit" in facts["rule"] and "nearest the threshold" in facts["rule"]
    # many images: the band follows the errors of the images INT8 moves at least as far as
    # the threshold and of the MIN_NEAR nearest, not a large error far from it
    near = 1 / (1 + np.exp(-np.linspace(-0.5, 0.5, 30)))  # logits -0.5..0.5, threshold 0.5
    far = np.array([0.99, 0.995])  # logits 4.6, 5.3
    f = np.concatenate([near, far])
    q = 1 / (1 + np.exp(-(logit(f) + np.r_[np.full(30, 0.1), 2.0, -2.0])))
    facts = calibrate_band(f, q, 0.5)
    assert facts["band_logit"] == pytest.approx(1.5 * 0.1, abs=1e-5)
    assert facts["calibration"]["images_reaching_threshold"] == int(np.sum(np.abs(
        logit(f)) <= 0.1 + 1e-9))
    q[0] = 1 / (1 + np.exp(-(logit(f[0]) + 0.7)))  # -0.5 -> +0.2: flipped, in the band
    facts = calibrate_band(f, q, 0.5)
    assert facts["band_logit"] == pytest.approx(1.5 * 0.7, abs=1e-5)
    assert facts["calibration"]["decisions_differing"] == int(np.sum((f >= 0.5) != (q >= 0.5)))
    # a band from wildly different networks is capped where it re-checks every image
    assert calibrate_band([1e-9], [1 - 1e-9], 0.5)["band_logit"] == pytest.approx(MAX_BAND_LOGIT)
    for a, b in (([0.5], [0.5, 0.4]), ([], []), ([float("nan")], [0.5])):
        with pytest.raises(ValueError):
            calibrate_band(a, b, 0.5)
    # a band that holds most images: the export warns that INT8 gains little
    from defect_studio.deploy.export import recheck_warning

    wide = calibrate_band(f, 1 / (1 + np.exp(-(logit(f) + 3.0))), 0.5)
    line = recheck_warning(wide)
    assert wide["calibration"]["share_in_band"] >= 0.5 and "little or no faster" in line
    assert f"{wide['calibration']['share_in_band']:.0%} of the calibration" in line
    few = {"band_logit": 0.2, "calibration": {"share_in_band": 0.1}}
    assert recheck_warning(few) == "" and recheck_warning({"calibration": "x"}) == ""
    # 0.5 +- 0.2 logit; a NaN score is re-checked
    scores = [0.5, 0.549, 0.551, 0.451, 0.449, float("nan"), 1.0]
    assert in_band(scores, 0.5, 0.2).tolist() == [0, 1, 3, 5]


def _with_band(pkg: Path, dest: Path, **recheck) -> Path:
    """A copy of the INT8 package whose package.json's recheck has these fields (None:
    removed, like an INT8 package made before the re-check, with its f32 files)."""
    shutil.copytree(pkg, dest)
    mf = json.loads((dest / "package.json").read_text())
    if recheck.get("recheck", 1) is None:
        del mf["recheck"]
        for name in ("model_f32.xml", "model_f32.bin"):
            del mf["files"][name]
            (dest / name).unlink()
    else:
        mf["recheck"].update(recheck)
    (dest / "package.json").write_text(json.dumps(mf))
    return dest


def test_recheck_rescores_exactly_the_images_in_the_band(int8_package, _trained_template,
                                                         tmp_path, capsys):
    from defect_studio.deploy.recheck import in_band, logit
    from defect_studio.deploy.runtime import graph_scores, load_package
    from defect_studio.io.images import read_image
    from defect_studio.preprocess import preprocess_array

    pkg_dir, manifest = int8_package
    r = manifest["recheck"]
    assert r["model"] == "model_f32.xml" and r["band_logit"] > 0
    assert r["calibration"]["images"] == manifest["quantization"]["calibration"]["images"]
    worst = r["calibration"]["abs_logit_diff_max_reaching_or_nearest"]
    assert r["band_logit"] == pytest.approx(1.5 * worst, abs=1e-5)
    paths = sorted((_trained_template / "images").rglob("*.png"))[:12]
    imgs = [read_image(p) for p in paths]
    alone = load_package(pkg_dir, num_threads=2, int8_recheck="off")
    assert alone.recheck_band is None and "turned off" in alone.recheck_note
    s8 = np.array([p.score for _, p in alone.predict_many(imgs, batch_size=12)])
    f32 = graph_scores(pkg_dir / "model_f32.xml", "openvino",
                       [preprocess_array(im, alone.config) for im in imgs], threads=2, batch=12)
    # a band of half the spread of the INT8 logits, the threshold at their median: some
    # images inside, some outside
    band = float(np.ptp(logit(s8))) / 4
    thr = float(np.median(s8))
    pkg = load_package(_with_band(pkg_dir, tmp_path / "pkg", band_logit=band), num_threads=2)
    pkg.threshold = thr
    preds = [p for _, p in pkg.predict_many(imgs, batch_size=12)]
    inside = in_band(s8, thr, band)
    assert 0 < len(inside) < len(imgs)
    assert pkg.recheck_counts == {"scored": len(imgs), "rechecked": len(inside)}
    got = np.array([p.score for p in preds])
    outside = np.setdiff1d(np.arange(len(imgs)), inside)
    assert np.abs(got[inside] - f32[inside]).max() <= 1e-5
    assert np.abs(got[outside] - s8[outside]).max() <= 1e-6
    assert [preds[i].is_ng for i in inside] == [bool(f32[i] >= thr) for i in inside]
    # predict says how many were re-checked (--int8-recheck off: the predictor above)
    assert main(["predict", "--model", str(tmp_path / "pkg"), "--threshold", str(thr),
                 "--out", str(tmp_path / "o"), "--no-overlays", "--batch-size", "12",
                 *map(str, paths)]) == 0
    assert (f"INT8: {len(inside)} of {len(imgs)} image(s) re-checked in float32 (within "
            f"{band:.3f} logit") in capsys.readouterr().out
    assert main(["model-info", "--model", str(pkg_dir)]) == 0
    assert f"within {r['band_logit']:.3f} logit" in capsys.readouterr().out


def test_hostile_recheck_values_and_packages_without_the_f32_model(int8_package, tmp_path,
                                                                   capsys):
    from defect_studio.deploy.runtime import load_package

    pkg_dir, _ = int8_package
    for i, (field, value, words) in enumerate((
            ("band_logit", float("nan"), "band_logit"), ("band_logit", -0.1, "band_logit"),
            ("band_logit", 1e308, "band_logit"), ("band_logit", "0.5", "band_logit"),
            ("band_logit", True, "band_logit"), ("model", "../model_f32.xml", "recheck.model"),
            ("model", "model.xml", "recheck.model"))):
        bad = _with_band(pkg_dir, tmp_path / f"bad{i}", **{field: value})
        assert main(["model-info", "--model", str(bad)]) == 2
        err = capsys.readouterr().err
        assert words in err and "export the model again" in err and "Traceback" not in err
    # an INT8 package without the float32 model (made before the re-check) still runs
    old = _with_band(pkg_dir, tmp_path / "old", recheck=None)
    pkg = load_package(old, num_threads=1)
    assert pkg.recheck_band is None and "holds no float32 model" in pkg.recheck_note
    assert main(["model-info", "--model", str(old)]) == 0
    assert "no re-check: the package holds no float32 model" in capsys.readouterr().out
    with pytest.raises(UserErrorType, match="holds no float32 model"):
        load_package(old, int8_recheck="on")
    with pytest.raises(UserErrorType, match="--int8-recheck must be"):
        load_package(pkg_dir, int8_recheck="maybe")



def _norm_graph(path: Path, norm: bool) -> Path:
    """Conv -> InstanceNormalization (or nothing) -> Relu -> Conv, 4 channels, 16x16."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)

    def t(name, *shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape,
                                  rng.normal(size=int(np.prod(shape))).astype(np.float32))

    nodes = [helper.make_node("Conv", ["image", "w0"], ["c0"], name="c0", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c0", "w1"], ["c1"], name="c1", kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1])]
    if norm:
        nodes.append(helper.make_node("InstanceNormalization", ["c1", "g", "b"], ["n1"],
                                      name="norm"))
    nodes += [helper.make_node("Relu", ["n1" if norm else "c1"], ["r1"], name="relu"),
              helper.make_node("Conv", ["r1", "w2"], ["out"], name="c2", kernel_shape=[1, 1])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        initializer=[t("w0", 4, 3, 3, 3), t("w1", 4, 4, 3, 3), t("w2", 1, 4, 1, 1),
                     t("g", 4), t("b", 4)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("fmt", ["openvino", "onnx"])
def test_normalization_inputs_stay_float32(tmp_path, fmt):
    """quantize() leaves the input of an instance norm unquantized in both formats (OpenVINO
    quantizes it when told not to); a graph without a normalization quantizes as before."""
    import onnx
    import openvino as ov

    from defect_studio.deploy.quantize import quantize

    rng = np.random.default_rng(1)
    images = [rng.random((3, 16, 16), dtype=np.float32) for _ in range(4)]

    def quantized_norm_input(norm_inputs_f32: bool, norm: bool = True) -> tuple[bool, dict]:
        src = _norm_graph(tmp_path / f"f32_{norm}.onnx", norm)
        out = tmp_path / f"q_{norm_inputs_f32}_{norm}.{'xml' if fmt == 'openvino' else 'onnx'}"
        manifest = {"quantization": {}}
        quantize(src, fmt, images, out, manifest, norm_inputs_f32=norm_inputs_f32,
                 input_layers_f32=False)
        if fmt == "openvino":
            ops = ov.Core().read_model(str(out)).get_ops()
            fq = [op for op in ops if op.get_type_name() == "FakeQuantize"]
            assert fq  # something is quantized
            hit = any(op.get_type_name() == "MVN"
                      and op.input_value(0).get_node().get_type_name() == "FakeQuantize"
                      for op in ops)
        else:
            nodes = onnx.load(str(out)).graph.node
            assert any(n.op_type == "QuantizeLinear" for n in nodes)
            made_by = {o: n.op_type for n in nodes for o in n.output}
            hit = any(n.op_type == "InstanceNormalization"
                      and made_by.get(n.input[0]) == "DequantizeLinear" for n in nodes)
        return hit, manifest["quantization"]

    hit, q = quantized_norm_input(True)
    assert not hit
    assert q["kept_f32_types"] == (["MVN"] if fmt == "openvino" else ["InstanceNormalization"])
    hit, q = quantized_norm_input(False)
    # NNCF's OpenVINO backend quantizes an MVN's input unless told not to; its ONNX backend
    # leaves an InstanceNormalization's input alone either way
    assert hit == (fmt == "openvino") and q["kept_f32_types"] == []
    hit, q = quantized_norm_input(True, norm=False)  # no norm in the graph: nothing to keep
    assert not hit and q["kept_f32_types"] == []


def test_model_info_says_how_the_package_was_quantized(int8_package, capsys):
    pkg_dir, manifest = int8_package
    assert main(["model-info", "--model", str(pkg_dir)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.split()[:1] == ["int8"]
            and x.split()[1] != "re-check"]
    assert len(line) == 1
    n = manifest["quantization"]["calibration"]["images"]
    assert f"calibrated on {n} training image(s)" in line[0]
    assert "float32 kept: the input layer, the inputs of MVN" in line[0]


@pytest.mark.parametrize("q", [None, "x", 3, [], {"calibration": "NaN"},
                               {"nncf_version": 1, "kept_f32_types": "MVN",
                                "norm_inputs_f32": "yes", "calibration": {"images": -1.5}}])
def test_quantization_text_of_odd_manifests(q):
    from defect_studio.deploy.info import quantization_text

    text = quantization_text(q)
    assert text == ("" if not isinstance(q, dict) else "NNCF")
