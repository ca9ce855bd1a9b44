"""A package checked against its own network when it is loaded, hostile package.json files
and links, and per-part failures of the runtime (a rejected line, never the end of watch).
Hand-made ONNX packages (tests/deploy_support.py): no torch, no training."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from deploy_support import tiny_package

from defect_studio.cli import main
from defect_studio.deploy.package import PackageError


def _load(pkg):
    from defect_studio.deploy import load_package

    return load_package(pkg, num_threads=1)


def _edit(pkg: Path, **changes) -> None:
    m = json.loads((pkg / "package.json").read_text())
    m.update(changes)
    (pkg / "package.json").write_text(json.dumps(m))


def test_package_that_does_not_match_its_network_is_refused_at_load(tmp_path):
    # input size and channels against a network of fixed input [N, 3, 64, 64]
    pkg = tiny_package(tmp_path / "fixed", size=(64, 64), channels=3, graph_size=(64, 64),
                       graph_channels=3)
    assert _load(pkg).predict(np.zeros((40, 50, 3), np.uint8)).score > 0
    _edit(pkg, preprocess={"input_size": [128, 96], "resize": "resize", "channels": 3})
    with pytest.raises(PackageError, match="gives the network 128x96 images.*takes 64x64"):
        _load(pkg)
    _edit(pkg, preprocess={"input_size": [64, 64], "resize": "resize", "channels": 1})
    with pytest.raises(PackageError, match="1-channel images.*takes 3 channels"):
        _load(pkg)
    # a network of free size: the settings stamped into it at export are compared
    pkg = tiny_package(tmp_path / "stamped", size=(32, 32), stamp=True)
    _load(pkg)
    _edit(pkg, preprocess={"input_size": [48, 32], "resize": "resize", "channels": 1})
    with pytest.raises(PackageError, match="exported with"):
        _load(pkg)
    # a huge input size is refused before anything is allocated
    pkg = tiny_package(tmp_path / "huge", size=(8192, 8192))
    t = time.monotonic()
    with pytest.raises(PackageError, match="megapixels"):
        _load(pkg)
    assert time.monotonic() - t < 2


def test_hostile_package_json_gives_clear_errors(tmp_path, capsys):
    pkg = tiny_package(tmp_path / "p")
    good = (pkg / "package.json").read_text()
    cases = [
        ("[" * 200_000 + "]" * 200_000, "nested too deep"),
        (json.dumps(dict(json.loads(good), runtime="notadict")), "'runtime' must map"),
        (json.dumps(dict(json.loads(good), runtime={"openvino": [1, 2]})), "'runtime' must"),
        (json.dumps(dict(json.loads(good), kind="ufo")), "kind 'ufo'"),
        (json.dumps(dict(json.loads(good), preprocess={"input_size": [32, 32],
                                                        "resize": "stretch", "channels": 1})),
         "preprocessing settings are invalid"),
        (json.dumps(dict(json.loads(good), preprocess={"input_size": [32, float("nan")],
                                                        "resize": "pad", "channels": 1})),
         "preprocessing settings are invalid"),
        ('{"pad": "' + "x" * (2 << 20) + '"}', "not a package manifest"),
    ]
    for text, said in cases:
        (pkg / "package.json").write_text(text)
        with pytest.raises(PackageError, match=said):
            _load(pkg)
        assert main(["predict", "--model", str(pkg), str(pkg), "--out",
                     str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and "unexpected" not in err


def test_package_files_linking_out_of_the_package_are_refused(tmp_path):
    pkg = tiny_package(tmp_path / "p")
    outside = tmp_path / "elsewhere.onnx"
    os.replace(pkg / "model.onnx", outside)
    (pkg / "model.onnx").symlink_to(outside)  # same bytes, so its checksum matches
    with pytest.raises(PackageError, match="link to a file outside the package"):
        _load(pkg)
    (pkg / "model.onnx").unlink()
    os.replace(outside, pkg / "net.onnx")  # a link inside the package is its own file
    (pkg / "model.onnx").symlink_to("net.onnx")
    _load(pkg)
    good = (pkg / "package.json").read_text()
    (pkg / "package.json").unlink()
    (tmp_path / "other.json").write_text(good)
    (pkg / "package.json").symlink_to(tmp_path / "other.json")
    with pytest.raises(PackageError, match="link to a file outside"):
        _load(pkg)


def test_a_part_the_runtime_fails_on_is_rejected_and_never_retried(tmp_path, capsys):
    """ONNX Runtime's own exception (not a RuntimeError) on a part: predict reports it per
    image; watch writes a rejected line, goes on, and does not try it again after a
    restart."""
    import cv2

    from defect_studio.deploy.watch import Watcher

    pkg = tiny_package(tmp_path / "p", channels=3, broken=True)  # 3x32x32 -> [1,1,32,32]
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(inbox / name), np.full((20, 20, 3), 9, np.uint8))
    assert main(["predict", "--model", str(pkg), str(inbox), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected error" not in err
    assert err.count("prediction failed: onnxruntime:") == 2

    def look(w):
        w._rescan()
        w.scan_once()
        w.scan_once()
        w.claims.close()

    w = Watcher(inbox, _load(pkg), out, settle_s=0.0, poll_s=0.02)
    look(w)  # returns: the watcher lives on
    assert w.counts == {"OK": 0, "NG": 0, "rejected": 2}
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert sorted(Path(r["file"]).name for r in rejected) == ["a.png", "b.png"]
    assert all("onnxruntime" in r["error"] for r in rejected)
    w2 = Watcher(inbox, _load(pkg), out, settle_s=0.0, poll_s=0.02)  # a restart
    look(w2)
    assert w2.counts == {"OK": 0, "NG": 0, "rejected": 0}
    assert len((out / "rejected.jsonl").read_text().splitlines()) == 2


def _fake_run(root: Path, threshold=0.5) -> Path:
    """A finished run folder as far as export-model looks before it exports (no weights)."""
    from defect_studio.kinds.segdec.config import TrainConfig

    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    cfg = TrainConfig(model="mixsup", input_size=(32, 32), channels=1, epochs=1)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "status.json").write_text(json.dumps({"state": "finished", "epoch": 1}))
    (run / "threshold.json").write_text(json.dumps({"threshold": threshold, "source": "user"}))
    return run


def test_export_model_refuses_a_linked_out_and_a_bad_threshold_before_the_work(tmp_path,
                                                                                capsys):
    from defect_studio.deploy.export import convert_package

    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    (tmp_path / "empty").mkdir()
    run = _fake_run(tmp_path / "proj")
    for target in (full, tmp_path / "empty"):
        link = tmp_path / f"link-{target.name}"
        link.symlink_to(target)
        assert main(["export-model", "--run", str(run), "--out", str(link)]) == 2
        err = capsys.readouterr().err
        assert "is a link" in err and "Not a directory" not in err
        with pytest.raises(Exception, match="is a link"):
            convert_package(tiny_package(tmp_path / f"pkg-{target.name}"), link)
    assert (full / "keep.txt").read_text() == "user data" and link.is_symlink()
    # a run whose saved threshold is -5: the message says what to do (not "export again")
    run = _fake_run(tmp_path / "proj2", threshold=-5)
    assert main(["export-model", "--run", str(run), "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "holds -5.0, not a threshold between 0 and 1" in err and "export again" not in err
    assert not (tmp_path / "new").exists()


def test_temporary_folders_of_killed_exports_are_removed(tmp_path):
    """An export killed mid-way leaves .<out>.dstmp-<pid>-*; the next export beside it
    removes those whose process is gone (and old ones of the previous naming), never a
    running export's."""
    import subprocess
    import sys

    from defect_studio.deploy.export import remove_stale_temps

    out = tmp_path / "pkg"
    code = ("import os, sys; from pathlib import Path; "
            "from defect_studio.deploy.export import _temp_beside; "
            "t = _temp_beside(Path(sys.argv[1])); (t / 'model.onnx').write_bytes(b'x' * 1000); "
            "os.kill(os.getpid(), 9)")
    killed = subprocess.run([sys.executable, "-c", code, str(out)])
    assert killed.returncode == -9
    left = [p for p in tmp_path.iterdir() if ".dstmp-" in p.name]
    assert len(left) == 1
    running = tmp_path / f".pkg.dstmp-{os.getpid()}-abc"  # this process: an export running
    running.mkdir()
    old = tmp_path / ".pkg.dstmp-old"
    old.mkdir()
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    other = tmp_path / ".other.dstmp-1-x"  # beside another package: not ours to judge
    other.mkdir()
    assert sorted(remove_stale_temps(out)) == sorted([left[0], old])
    assert running.is_dir() and other.is_dir() and not left[0].exists()


def test_predict_on_a_full_disk_names_the_file_and_keeps_no_partial_csv(tmp_path, capsys,
                                                                         monkeypatch):
    import errno

    import cv2

    from defect_studio.inference.results import ResultsTable

    pkg = tiny_package(tmp_path / "p")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(5):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((16, 16), 40 * i, np.uint8))
    real = ResultsTable._write
    calls = {"n": 0}

    def filling(self, text, truncate=False):
        calls["n"] += 1
        if calls["n"] > 3:  # the header and two rows fit
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, text, truncate)

    monkeypatch.setattr(ResultsTable, "_write", filling)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(pkg), str(imgs), "--out", str(out),
                 "--no-overlays"]) == 2
    err = capsys.readouterr().err
    assert f"could not write {out / 'predictions.csv'}: the disk is full" in err
    assert "Traceback" not in err and not (out / "predictions.csv").exists()
    monkeypatch.setattr(ResultsTable, "_write", real)
    assert main(["predict", "--model", str(pkg), str(imgs), "--out", str(out), "--no-overlays",
                 "--batch-size", "100000"]) == 2
    assert "--batch-size must be between 1 and 1024" in capsys.readouterr().err


def test_overlay_of_a_huge_image_is_bounded(tmp_path):
    """The overlay of a huge part (a 100 MP one took 5.5 GB and 35 s): at most 2048 px on
    its longer side, and the memory it takes does not grow with the image."""
    import tracemalloc

    import cv2

    from defect_studio.inference.results import MAX_OVERLAY_SIDE, ResultsWriter

    assert MAX_OVERLAY_SIDE == 2048  # the default; below, the same bound at 1/8 the scale
    w = ResultsWriter(tmp_path, "r.jsonl", overlay_dir="overlays", max_overlay_side=256)
    peaks = []
    for h, wd in ((400, 500), (1600, 2000)):
        img = np.random.default_rng(0).integers(0, 255, (h, wd), dtype=np.uint8)
        heat = np.zeros((h, wd), np.float32)
        heat[h // 4:h // 3, wd // 3:wd // 2] = 0.9
        tracemalloc.start()
        try:
            name = w.write_overlay(f"big{h}.png", img, heat, 0.9, True)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert name and w.problems == []
        assert cv2.imread(str(tmp_path / name)).shape == (205, 256, 3)
    # 16x the pixels: a float RGB copy of the larger image alone would add 38 MB
    assert peaks[1] < peaks[0] + 5e6, peaks
