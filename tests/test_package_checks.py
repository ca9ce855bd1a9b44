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
