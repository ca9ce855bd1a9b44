"""Export packages and the torch-free runtime: export-model, parity with the torch
Predictor, tampered packages, hostile arguments, predict --model."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from deploy_support import compare, read_jsonl, with_odd_copies

from defect_studio.cli import main
from defect_studio.errors import ModelFileError, UserError

REPO = Path(__file__).resolve().parents[1]


def _mixsup_run(root: Path) -> Path:
    """A MixSup run (1 channel, "pad", own threshold) with seeded untrained weights, "trained
    on crops" of 64x64 of its 96x64 input: it scores 2 overlapping tiles (segdec/tiles.py),
    so its packages' parity covers the tiling in the graph (the MFFPA run scores whole
    images)."""
    import torch

    from defect_studio.kinds.segdec.config import TrainConfig
    from defect_studio.kinds.segdec.runmodel import build_run_model
    from defect_studio.training.checkpoint import save_model_weights

    run = root / "runs" / "mixsup-pad"
    run.mkdir(parents=True)
    cfg = TrainConfig(model="mixsup", input_size=(96, 64), channels=1, resize="pad", epochs=1,
                      crop_size=(64, 64), crops_per_step=2)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "status.json").write_text(json.dumps({"state": "finished", "epoch": 1}))
    (run / "threshold.json").write_text(json.dumps({"threshold": 0.5, "source": "user"}))
    torch.manual_seed(3)
    save_model_weights(run, build_run_model(cfg))
    return run


@pytest.fixture(scope="module")
def packages(_trained_template, tmp_path_factory):
    """ONNX and OpenVINO packages of the tiny trained MFFPA run (through the CLI) and of a
    MixSup run; exported once for the module."""
    from defect_studio.deploy.export import convert_package

    base = tmp_path_factory.mktemp("packages")
    out = {}
    rc = main(["export-model", "--run", "tiny", "--project", str(_trained_template),
               "--format", "onnx", "--out", str(base / "mffpa-onnx")])
    assert rc == 0
    out["mffpa", "onnx"] = base / "mffpa-onnx"
    out["mffpa", "openvino"] = convert_package(base / "mffpa-onnx", base / "mffpa-ov")
    mixsup = _mixsup_run(base / "other")
    out["mixsup", "openvino"] = base / "mixsup-ov"
    assert main(["export-model", "--run", str(mixsup), "--format", "openvino",
                 "--out", str(out["mixsup", "openvino"])]) == 0
    from defect_studio.deploy.export import export_model

    out["mixsup", "onnx"] = export_model(mixsup, base / "mixsup-onnx", "onnx")
    out["runs"] = {"mffpa": _trained_template / "runs" / "tiny", "mixsup": mixsup}
    return out


def _project_images(root: Path) -> list[np.ndarray]:
    """The project's image files as read_image gives them, plus a non-square crop and a
    gray copy (other geometry and channels than the runs)."""
    from defect_studio.io.images import read_image

    files = sorted((root / "images").rglob("*.png"))[:12]
    imgs = [read_image(p) for p in files]
    return with_odd_copies(imgs, crop_from=0, gray_from=1)


@pytest.mark.parametrize("model", ["mffpa", "mixsup"])
@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_package_scores_like_the_torch_predictor(packages, _trained_template, model, fmt):
    from defect_studio.deploy import load_package
    from defect_studio.kinds.segdec.predictor import Predictor

    ref = Predictor(packages["runs"][model], device="cpu")
    pkg = load_package(packages[model, fmt], num_threads=1)
    assert (pkg.run_id, pkg.threshold) == (ref.run_id, ref.threshold)
    assert pkg.threshold_source == ref.threshold_source
    images = _project_images(_trained_template)
    # batches of 5, 5, 4; a threshold that splits these images both ways, to compare decisions
    r = compare(ref, pkg, images, lambda first: float(np.median([p.score for p in first])))
    want, got, d_score, d_batch, d_heat = r.want, r.got, r.d_score, r.d_batch, r.d_heat
    # heatmaps: 1e-3, well under one grey level; OpenVINO's f32 kernels differ from torch's
    # by ~1e-4 at 192x192 (benchmarks/deploy_parity_magnetic_tile.py)
    assert d_score <= 1e-4 and d_heat <= 1e-3 and d_batch <= 1e-5, (d_score, d_heat, d_batch)
    assert all(a.heatmap.shape == b.heatmap.shape == img.shape[:2]
               for a, b, img in zip(want, got, images))
    decisions = [p.is_ng for p in want]
    assert decisions == [p.is_ng for p in got]
    assert True in decisions and False in decisions
    if fmt == "openvino":
        assert pkg.backend == "openvino" and pkg.inference_precision == "f32"


def test_package_records_the_decision(packages, _trained_template):
    import onnx

    from defect_studio.deploy.package import read_package, sha256_file

    root = packages["mffpa", "onnx"]
    info = read_package(root)
    m = info.manifest
    cfg = json.loads((_trained_template / "runs" / "tiny" / "config.json").read_text())
    thr = json.loads((_trained_template / "runs" / "tiny" / "threshold.json").read_text())
    assert m["kind"] == "segdec" and m["model"] == "mffpa" and m["run_id"] == "tiny"
    assert m["threshold"] == thr["threshold"] and m["threshold_source"] == thr["source"]
    assert m["preprocess"]["input_size"] == cfg["input_size"]
    assert m["preprocess"]["resize"] == cfg["resize"]
    assert m["preprocess"]["channels"] == cfg["channels"]
    assert m["training_data"]["n_train"] > 0 and "ap" in m["training_data"]["metrics"]
    assert m["model_sha256"] == sha256_file(root / "model.onnx") == m["files"]["model.onnx"]
    assert m["package_version"] and m["onnx_opset"] >= 18
    model = onnx.load(str(root / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["run_id"] == "tiny" and float(props["threshold"]) == thr["threshold"]
    assert json.loads(props["preprocess"])["input_size"] == cfg["input_size"]
    assert json.loads(props["training_data"]) == m["training_data"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch
    ov = read_package(packages["mffpa", "openvino"]).manifest
    assert ov["runtime"]["openvino"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert set(ov["files"]) == {"model.xml", "model.bin"}
    assert "defect_studio" in (packages["mffpa", "openvino"] / "model.xml").read_text()


def test_tiled_package_tiles_in_its_graph(packages, capsys):
    """A run trained on crops (the MixSup run): the package takes whole images (dynamic
    batch), its manifest says how the graph tiles and merges (segdec/tiles.py), model-info
    prints it; the parity tests above compare its scores with the tiled Predictor's."""
    import onnx

    from defect_studio.deploy.package import read_package
    from defect_studio.kinds.segdec.predictor import Predictor
    from defect_studio.kinds.segdec.tiles import TiledNet, tile_boxes

    assert isinstance(Predictor(packages["runs"]["mixsup"], device="cpu").model, TiledNet)
    assert not isinstance(Predictor(packages["runs"]["mffpa"], device="cpu").model, TiledNet)
    t = read_package(packages["mixsup", "onnx"]).manifest["tiling"]
    assert t["mode"] == "whole_image" and t["tiled_in_graph"] is True
    assert t["tiles"] == 2 and t["tile"] == [64, 64] and t["stride"] == [48, 48]
    assert t["boxes"] == [list(b) for b in tile_boxes((96, 64), (64, 64))]
    assert t["trained_on_crops"] == [64, 64] and "max" in t["score"] and "max" in t["heatmap"]
    assert read_package(packages["mixsup", "openvino"]).manifest["tiling"] == t
    model = onnx.load(str(packages["mixsup", "onnx"] / "model.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # dynamic batch
    assert [d.dim_value for d in dims[2:]] == [64, 96]  # whole images at the input size
    whole = read_package(packages["mffpa", "onnx"]).manifest["tiling"]
    assert whole == {"mode": "whole_image", "tiles": 1, "trained_on_crops": None}
    assert main(["model-info", "--model", str(packages["mixsup", "onnx"])]) == 0
    assert "2 tiles of 64x64, stride 48x48 in the graph" in capsys.readouterr().out
    assert main(["model-info", "--model", str(packages["mffpa", "onnx"])]) == 0
    assert "whole image in one pass" in capsys.readouterr().out
    from defect_studio.deploy.info import tiling_text

    for odd in (None, "grid", 3, {"tiles": "9", "tile": [32]}, {"tiles": 9, "tile": None},
                {"trained_on_crops": "x"}, {"tiles": float("nan")}):
        assert tiling_text(odd) in ("", "whole image in one pass")


def test_runtime_and_predict_run_without_torch(packages, _trained_template, tmp_path):
    """The runtime in a process where `import torch` fails: same scores as the Predictor."""
    from defect_studio.kinds.segdec.predictor import Predictor

    image = sorted((_trained_template / "images").rglob("*.png"))[0]
    script = (
        "import sys, json\n"
        "sys.modules['torch'] = None\n"  # any import of torch raises ImportError
        "from defect_studio.deploy import load_package\n"
        "from defect_studio.io.images import read_image\n"
        "from defect_studio.cli import main\n"
        f"img = read_image({str(image)!r})\n"
        "scores = [load_package(p).predict(img).score for p in sys.argv[1:3]]\n"
        f"rc = main(['predict', '--model', sys.argv[1], {str(image)!r}, '--out', sys.argv[3]])\n"
        "assert rc == 0, rc\n"
        "print(json.dumps({'scores': scores, 'torch_modules': "
        "[m for m in sys.modules if m.startswith('torch') and sys.modules[m] is not None]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", script, str(packages["mffpa", "onnx"]),
                          str(packages["mffpa", "openvino"]), str(tmp_path / "pred")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["torch_modules"] == []
    ref = Predictor(packages["runs"]["mffpa"], device="cpu").predict(
        __import__("defect_studio.io.images", fromlist=["read_image"]).read_image(image)).score
    assert all(abs(s - ref) <= 1e-4 for s in out["scores"])
    rows = list((tmp_path / "pred" / "predictions.csv").read_text().splitlines())
    assert rows[0].endswith("run_id,threshold") and ",tiny," in rows[1]


# -- damaged packages --------------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(pkg: Path, **changes) -> None:
    m = json.loads((pkg / "package.json").read_text())
    m.update(changes)
    (pkg / "package.json").write_text(json.dumps(m))


def test_tampered_or_incomplete_packages_are_refused(packages, tmp_path):
    from defect_studio.deploy import load_package
    from defect_studio.deploy.package import PackageError

    src = packages["mixsup", "openvino"]
    pkg = _copy(src, tmp_path / "bin-changed")
    data = bytearray((pkg / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (pkg / "model.bin").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="checksum"):
        load_package(pkg)
    pkg = _copy(src, tmp_path / "bin-missing")
    (pkg / "model.bin").unlink()
    with pytest.raises(PackageError, match="incomplete: model.bin is missing"):
        load_package(pkg)
    pkg = _copy(src, tmp_path / "escape")
    _edit_manifest(pkg, files={"../../etc/passwd": "0" * 64, "model.xml": "0" * 64})
    with pytest.raises(PackageError, match="not a plain file name"):
        load_package(pkg)
    for bad in ({"threshold": float("nan")}, {"threshold": 1.5}, {"threshold": "0.5"},
                {"preprocess": {"input_size": [-8, 1e9], "resize": "pad", "channels": 1}},
                {"format": "tensorrt"}, {"package_format": 99}):
        pkg = tmp_path / f"bad{len(list(tmp_path.iterdir()))}"
        _copy(src, pkg)
        _edit_manifest(pkg, **bad)
        with pytest.raises(PackageError):
            load_package(pkg)
    pkg = _copy(src, tmp_path / "garbage")
    (pkg / "package.json").write_bytes(b"\x00\xffnot json")
    with pytest.raises(PackageError, match="damaged"):
        load_package(pkg)
    with pytest.raises(PackageError, match="not found"):
        load_package(tmp_path / "nowhere")
    with pytest.raises(PackageError, match="is a file"):
        load_package(src / "model.xml")
    with pytest.raises(PackageError, match="no package.json"):
        load_package(tmp_path)
    # the command line says so too, with exit code 2
    assert main(["predict", "--model", str(tmp_path / "bin-changed"), str(src / "model.xml"),
                 "--out", str(tmp_path / "o")]) == 2


def test_package_predictor_interface_and_bad_images(packages):
    from defect_studio.deploy.runtime import PackagePredictor
    from defect_studio.inference import load_predictor

    pkg = load_predictor(packages["mixsup", "onnx"], num_threads=1)  # a package folder
    assert isinstance(pkg, PackagePredictor) and pkg.run_id == "mixsup-pad"
    with pytest.raises(UserError, match="between 0 and 1"):
        pkg.threshold = float("nan")
    with pytest.raises(UserError, match="shape"):
        pkg.predict(np.zeros((4, 4, 2), np.uint8))
    items = [np.zeros((30, 50), np.uint8), "/no/such/image.png", np.zeros((0, 5), np.uint8)]
    results = list(pkg.predict_many(items, batch_size=2))
    assert [r[0] is i for r, i in zip(results, items)] == [True] * 3
    assert not isinstance(results[0][1], str) and results[0][1].heatmap.shape == (30, 50)
    assert isinstance(results[1][1], str) and "not found" in results[1][1]
    assert isinstance(results[2][1], str)


# -- hostile export arguments ------------------------------------------------------------

def test_export_refuses_bad_runs_and_outputs(trained_project, tmp_path, capsys):
    from defect_studio.deploy.export import ExportError, export_model

    root = trained_project.root
    trained_project.close()
    run = root / "runs" / "tiny"
    cases = [
        (["--run", "../tiny", "--project", str(root)], "not found"),
        (["--run", "nope", "--project", str(root)], "runs are: tiny"),
        (["--run", str(tmp_path / "missing")], "not found"),
        (["--run", str(run), "--out", str(root / "exports")], "inside the project"),
        (["--run", "tiny", "--project", str(root), "--out", str(root)], "inside the project"),
    ]
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.onnx").write_text("x")
    cases += [(["--run", str(run), "--out", str(tmp_path / "a-file")], "is a file"),
              (["--run", str(run), "--out", str(tmp_path / "full")], "not empty")]
    for args, message in cases:
        if "--out" not in args:
            args = args + ["--out", str(tmp_path / "pkg")]
        assert main(["export-model", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    # a run still training, a run without weights, a damaged one
    partial = root / "runs" / "partial"
    shutil.copytree(run, partial)
    (partial / "status.json").write_text(json.dumps({"state": "running", "epoch": 0}))
    with pytest.raises(ExportError, match="interrupted"):  # no process holds its run lock
        export_model(partial, tmp_path / "p1")
    from defect_studio.project.runs import hold_run, release_run

    lock = hold_run(partial)  # a live training process
    try:
        with pytest.raises(ExportError, match="still training"):
            export_model(partial, tmp_path / "p1")
    finally:
        release_run(lock)
    (partial / "status.json").write_text(json.dumps({"state": "cancelled", "epoch": 0}))
    (partial / "model.pt").unlink()
    with pytest.raises(ModelFileError, match="not found|no trained model"):
        export_model(partial, tmp_path / "p2")
    (partial / "status.json").write_text("{broken")
    with pytest.raises(ExportError, match="damaged"):
        export_model(partial, tmp_path / "p3")
    with pytest.raises(ExportError, match="unknown export format"):
        export_model(run, tmp_path / "p4", "tflite")
    # nothing half-written was left behind, and nothing written into the project
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full", "proj"]
    assert not (root / "exports").exists()


def test_predict_model_json_and_argument_errors(packages, _trained_template, tmp_path, capsys):
    images = sorted((_trained_template / "images").rglob("*.png"))[:3]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rc = main(["predict", "--model", str(packages["mffpa", "openvino"]), *map(str, images),
               str(bad), "--out", str(tmp_path / "out"), "--json", "--no-overlays"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["run_id"] == "tiny" and report["ok"] + report["ng"] == 3
    assert report["errors"] == 1 and len(report["results"]) == 4
    scored = [r for r in report["results"] if r["score"] is not None]
    assert all(r["decision"] == ("NG" if r["score"] >= report["threshold"] else "OK")
               for r in scored)
    assert main(["predict", "--model", str(packages["mffpa", "onnx"]), "--project",
                 str(_trained_template), str(images[0]), "--out", str(tmp_path / "o2")]) == 2
    assert "--project goes with --run" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --run and --model together
        main(["predict", "--model", "x", "--run", "y", str(images[0]), "--out", "z"])


# -- the watch folder --------------------------------------------------------------------

def _wait_for(check, timeout=60.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the watcher")


def _start(watcher):
    import threading

    t = threading.Thread(target=watcher.run, daemon=True)
    t.start()
    return t


def _stop(watcher, thread):
    watcher.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_watch_scores_slowly_written_files_once(packages, _trained_template, tmp_path):
    import time

    from defect_studio.deploy import load_package
    from defect_studio.deploy.watch import Watcher
    from defect_studio.io.images import read_image

    src = sorted((_trained_template / "images").rglob("*.png"))[:2]
    pkg = load_package(packages["mffpa", "onnx"], num_threads=1)
    scores = [pkg.predict(read_image(p)).score for p in src]
    pkg.threshold = (scores[0] + scores[1]) / 2  # one OK part and one NG part
    inbox, out, done = tmp_path / "inbox", tmp_path / "out", tmp_path / "done"
    inbox.mkdir()
    w = Watcher(inbox, pkg, out, done, settle_s=0.4, poll_s=0.05, rescan_s=0.5)
    thread = _start(w)
    try:
        # part 1 arrives slowly, in pieces 0.2 s apart (a camera over a slow share)
        data = src[0].read_bytes()
        with open(inbox / "part1.png", "wb") as f:
            for i in range(0, len(data), len(data) // 4 + 1):
                f.write(data[i:i + len(data) // 4 + 1])
                f.flush()
                time.sleep(0.2)
                assert read_jsonl(out / "results.jsonl") == []
                assert read_jsonl(out / "rejected.jsonl") == []
        # part 2 is written under a temporary name and renamed when complete
        shutil.copy(src[1], inbox / "part2.png.part")
        os.replace(inbox / "part2.png.part", inbox / "part2.png")
        (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
        (inbox / "notes.txt").write_text("not an image")
        _wait_for(lambda: len(read_jsonl(out / "results.jsonl")) == 2
                  and len(read_jsonl(out / "rejected.jsonl")) == 1)
        time.sleep(1.0)  # a few more polls and rescans: nothing is scored twice
    finally:
        _stop(w, thread)
    results = {Path(r["file"]).name: r for r in read_jsonl(out / "results.jsonl")}
    assert sorted(results) == ["part1.png", "part2.png"]
    for name, s in zip(("part1.png", "part2.png"), scores):
        r = results[name]
        assert abs(r["score"] - s) <= 1e-5 and r["run_id"] == "tiny"
        assert r["threshold"] == pkg.threshold
        assert r["decision"] == ("NG" if s >= pkg.threshold else "OK")
        assert bool(r["overlay"]) == (r["decision"] == "NG")
        if r["overlay"]:
            assert read_image(out / r["overlay"]).shape[:2] == read_image(src[0]).shape[:2]
    rejected = read_jsonl(out / "rejected.jsonl")[0]
    assert Path(rejected["file"]).name == "broken.png" and rejected["error"]
    assert sorted(p.name for p in done.iterdir()) == ["broken.png", "part1.png", "part2.png"]
    assert sorted(p.name for p in inbox.iterdir()) == [".ds-claims", "notes.txt"]
    # moved parts leave no claim or done mark behind, a stopped station no heartbeat
    assert [p.name for p in (inbox / ".ds-claims").iterdir()] == ["stations"]
    assert list((inbox / ".ds-claims" / "stations").iterdir()) == []
    assert w.counts == {"OK": 1, "NG": 1, "rejected": 1}


def test_watch_survives_restarts(packages, _trained_template, tmp_path):
    from defect_studio.deploy import load_package
    from defect_studio.deploy.watch import Watcher

    src = sorted((_trained_template / "images").rglob("*.png"))[:4]
    pkg = load_package(packages["mixsup", "openvino"], num_threads=1)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(src[0], inbox / "a.png")
    shutil.copy(src[1], inbox / "b.png")
    w = Watcher(inbox, pkg, out, settle_s=0.2, poll_s=0.05, rescan_s=0.3)
    thread = _start(w)
    _wait_for(lambda: len(read_jsonl(out / "results.jsonl")) == 2)
    _stop(w, thread)
    # while the watcher is down: a new part, a part copied again with the same bytes, a
    # part replaced by other bytes, and a crash that cut the last result line in half
    shutil.copy(src[2], inbox / "c.png")
    shutil.copy(src[0], inbox / "a.png")
    shutil.copy(src[3], inbox / "b.png")
    with open(out / "results.jsonl", "a") as f:
        f.write('{"file": "half a line')
    w2 = Watcher(inbox, pkg, out, settle_s=0.2, poll_s=0.05, rescan_s=0.3)
    assert len(w2.done) == 2
    thread = _start(w2)
    _wait_for(lambda: len(read_jsonl(out / "results.jsonl")) == 4)
    import time

    time.sleep(0.8)
    _stop(w2, thread)
    names = [Path(r["file"]).name for r in read_jsonl(out / "results.jsonl")]
    assert sorted(names) == ["a.png", "b.png", "b.png", "c.png"]
    keys = [r["key"] for r in read_jsonl(out / "results.jsonl")]
    assert len(set(keys)) == 4
    assert w2.counts == {"OK": w2.counts["OK"], "NG": w2.counts["NG"], "rejected": 0}
    assert w2.counts["OK"] + w2.counts["NG"] == 2


def test_watch_refuses_bad_folders(packages, tmp_path, capsys):
    from defect_studio.deploy.watch import Watcher, WatchError

    (tmp_path / "file").write_text("x")
    (tmp_path / "in").mkdir()
    with pytest.raises(WatchError, match="does not exist"):
        Watcher(tmp_path / "nope", None, tmp_path / "out")
    with pytest.raises(WatchError, match="is a file"):
        Watcher(tmp_path / "in", None, tmp_path / "file")
    with pytest.raises(WatchError, match="is a file"):
        Watcher(tmp_path / "in", None, tmp_path / "out", tmp_path / "file")
    with pytest.raises(WatchError, match="watch folder itself"):
        Watcher(tmp_path / "in", None, tmp_path / "in")
    assert main(["watch", str(tmp_path / "in"), "--model", str(tmp_path / "in"),
                 "--out", str(tmp_path / "out")]) == 2
    assert "no package.json" in capsys.readouterr().err
    assert main(["watch", str(tmp_path / "in"), "--model", str(packages["mffpa", "onnx"]),
                 "--out", str(tmp_path / "out"), "--settle", "nan"]) == 2


def test_package_folders_follow_the_umask(packages, tmp_path):
    """Issue 16: exported model folders were created mode 700 (mkdtemp); the line's service
    account could not read them. They now get the mode the user's umask gives."""
    import stat

    from defect_studio.deploy.export import _temp_beside

    umask = os.umask(0o022)
    os.umask(umask)
    for key in (("mffpa", "onnx"), ("mixsup", "openvino")):
        mode = stat.S_IMODE(packages[key].stat().st_mode)
        assert mode == 0o777 & ~umask, (key, oct(mode))
    old = os.umask(0o002)
    try:
        tmp = _temp_beside(tmp_path / "pkg")
    finally:
        os.umask(old)
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o775 and ".dstmp-" in tmp.name
