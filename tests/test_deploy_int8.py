"""INT8 packages (export-model --int8, NNCF) and the runtime's --device choice with its CPU
fallback (this machine has no GPU: the GPU path itself is not exercised here)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from defect_studio.cli import main

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
    assert json.loads((pkg_dir / "package.json").read_text()) == manifest
    assert "FakeQuantize" in (pkg_dir / "model.xml").read_text()
    assert sorted(p.name for p in pkg_dir.iterdir()) == ["model.bin", "model.xml",
                                                         "package.json"]

    imgs = [read_image(p) for p in sorted((_trained_template / "images").rglob("*.png"))[:16]]
    ref = Predictor(_trained_template / "runs" / "tiny", device="cpu")  # f32 = its package
    want = np.array([p.score for _, p in ref.predict_many(imgs)])
    pkg = load_package(pkg_dir, num_threads=2)
    assert pkg.inference_precision == "int8" and pkg.threshold == ref.threshold
    got = np.array([p.score for _, p in pkg.predict_many(imgs, batch_size=5)])
    one = np.array([pkg.predict(im).score for im in imgs[:3]])
    assert np.abs(got - want).max() <= INT8_TOLERANCE
    assert np.abs(one - got[:3]).max() <= 1e-5  # batches of 5 and of 1 (static shapes)


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
