"""Fault matrix, "crashes" rows: one bad item never aborts an import; read-only and
disk-full faults end in a clear message and a truthful report."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest
from fault_helpers import cli, png

from defect_studio.io.importers import import_dataset, runner
from defect_studio.project import Project


def _run(src, tmp_path, fmt):
    with Project.create(tmp_path / "proj") as p:
        report = import_dataset(src, p, fmt=fmt)
        recs = {r.name: r for r in p.images()}
    return report, recs


def _reasons(report) -> str:
    return " | ".join(f"{f}: {r}" for f, r in report.skipped)


def test_non_utf8_file_name_is_a_skipped_row(tmp_path):
    src = tmp_path / "src" / "OK"
    src.mkdir(parents=True)
    png(src / "good.png", seed=1)
    bad = os.path.join(os.fsencode(src), b"bad\xff.png")
    with open(bad, "wb") as fh:
        fh.write((src / "good.png").read_bytes()[:-4] + b"\x00\x00\x00\x01")  # other bytes
    png(src / "good2.png", seed=2)
    r = cli("import", str(tmp_path / "src"), "--project", str(tmp_path / "p"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["imported"] == 2
    assert any("not valid UTF-8" in s["reason"] for s in out["skipped"])


def test_labelme_nan_and_huge_points(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shapes = {
        "nan_circle": [{"shape_type": "circle", "points": [[5, 5], [float("nan"), 3]]}],
        "nan_poly": [{"shape_type": "polygon", "points": [[1, 1], [float("nan"), 2], [3, 9]]}],
        "inf_rect": [{"shape_type": "rectangle", "points": [[1, 1], [float("inf"), 5]]}],
        "huge_poly": [{"shape_type": "polygon", "points": [[0, 0], [1e20, 0], [0, 1e20]]}],
        "good": [{"shape_type": "polygon", "points": [[2, 2], [10, 2], [10, 10]]}],
    }
    for i, (name, sh) in enumerate(shapes.items()):
        png(src / f"{name}.png", seed=10 + i)
        (src / f"{name}.json").write_text(json.dumps({"shapes": sh, "imagePath": f"{name}.png"}))
    t0 = time.monotonic()
    report, recs = _run(src, tmp_path, "labelme")
    assert time.monotonic() - t0 < 10  # 1e20 took 27 s per image before
    assert len(recs) == 5  # every image kept
    assert recs["good.png"].has_mask and recs["good.png"].label == "defective"
    for name in ("nan_circle", "nan_poly", "inf_rect", "huge_poly"):
        assert not recs[f"{name}.png"].has_mask, name  # no garbage mask stored
        assert f"{name}.json" in _reasons(report)
    assert "finite" in _reasons(report) and "far outside" in _reasons(report)


def test_coco_hostile_fields_each_skip_one_item(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        png(src / f"i{i}.png", seed=20 + i)
    doc = {
        "images": [{"id": [1], "file_name": "i0.png"},          # id is a list
                   {"id": 2, "file_name": ["i1.png"]},           # file_name a list
                   {"id": 3, "file_name": "i2.png", "width": 16, "height": 16},
                   {"id": 4, "file_name": "i3.png"},
                   {"id": 5, "file_name": "i4.png"},
                   {"id": 6, "file_name": "i5.png"},
                   {"id": 7, "file_name": "i6.png"},
                   {"id": 8, "file_name": "i7.png"}],
        "annotations": [
            {"id": 1, "image_id": 3, "category_id": 1, "bbox": [float("nan"), 0, 4, 4]},
            {"id": 2, "image_id": 4, "category_id": 1,
             "segmentation": {"size": ["16", "x"], "counts": [0, 256]}},
            {"id": 3, "image_id": 5, "category_id": 1,
             "segmentation": {"size": [16, 16], "counts": [10**23, 5]}},
            {"id": 4, "image_id": 6, "category_id": 1, "segmentation": "polygon"},
            {"id": 5, "image_id": 7, "category_id": 1, "segmentation": [["a", "b", "c", 1, 2, 3]]},
            {"id": 6, "image_id": [8], "category_id": 1, "bbox": [0, 0, 2, 2]},
            {"id": 7, "image_id": 8, "category_id": [1], "bbox": [0, 0, 2, 2]},
            "not an annotation",
        ],
        "categories": [{"id": 1, "name": "defect"}],
    }
    (src / "ann.json").write_text(json.dumps(doc))
    report, recs = _run(src / "ann.json", tmp_path, "coco")
    assert sorted(recs) == [f"i{i}.png" for i in range(2, 8)]
    text = _reasons(report)
    assert "malformed image entry" in text and "bad RLE" in text and "RLE size" in text
    assert "finite" in text and "unknown image id" in text and "unknown class" in text


def test_coco_annotations_that_is_a_number(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "a.png", seed=30)
    (src / "ann.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.png"}], "annotations": 5, "categories": []}))
    report, recs = _run(src / "ann.json", tmp_path, "coco")
    assert recs["a.png"].label == "unlabeled" and "not a list" in _reasons(report)


def test_yolo_and_voc_nan_coordinates(tmp_path):
    src = tmp_path / "yolo"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for i, line in enumerate(["0 nan 0.5 0.2 0.2", "0 0.5 0.5 inf 0.2", "0 1e30 0 0 1 1 1",
                              "0 0.5 0.5 0.2 0.2"]):
        png(src / "images" / f"y{i}.png", seed=40 + i)
        (src / "labels" / f"y{i}.txt").write_text(line + "\n")
    report, recs = _run(src, tmp_path / "a", "yolo")
    assert len(recs) == 4 and recs["y3.png"].has_mask
    assert not any(recs[f"y{i}.png"].has_mask for i in range(3))
    assert _reasons(report).count("finite numbers") == 3
    voc = tmp_path / "voc"
    voc.mkdir()
    for i, box in enumerate(["nan", "1e400", "8"]):
        png(voc / f"v{i}.png", seed=50 + i)
        (voc / f"v{i}.xml").write_text(
            f"<annotation><filename>v{i}.png</filename><object><bndbox><xmin>1</xmin>"
            f"<ymin>1</ymin><xmax>{box}</xmax><ymax>8</ymax></bndbox></object></annotation>")
    report, recs = _run(voc, tmp_path / "b", "voc")
    assert len(recs) == 3 and recs["v2.png"].has_mask and not recs["v0.png"].has_mask
    assert _reasons(report).count("finite") == 2


def test_disk_full_during_import_reports_what_was_saved(tmp_path, monkeypatch):
    src = tmp_path / "src" / "OK"
    src.mkdir(parents=True)
    for i in range(7):
        png(src / f"x{i}.png", seed=60 + i)
    monkeypatch.setattr(runner, "CHUNK", 3)
    from defect_studio.project import store

    real = store.atomic_write_bytes
    calls = {"n": 0}

    def full(path, data):
        calls["n"] += 1
        if calls["n"] > 4:  # the second chunk runs out of space half-way
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", full)
    with Project.create(tmp_path / "proj") as p:
        with pytest.raises(runner.ImportStopped) as info:
            import_dataset(tmp_path / "src", p, fmt="folders")
        msg = str(info.value)
        assert "3 images were saved" in msg and "No space left" in msg
        assert "nothing was changed" not in msg
        assert info.value.report.imported == 3 == p.counts()["images"]
        assert p.counts()["unassigned"] == 0  # splits were still assigned
        assert [r[1] for r in info.value.report.rows].count("imported") == 3
    # the rolled-back copies were removed: a re-import does not name them *_1
    monkeypatch.setattr(store, "atomic_write_bytes", real)
    with Project.open(tmp_path / "proj") as p:
        import_dataset(tmp_path / "src", p, fmt="folders")
        assert not any("_1" in r.name for r in p.images()) and p.counts()["images"] == 7


def test_evaluate_on_a_read_only_project_prints_its_metrics(trained_project, monkeypatch,
                                                            capsys):
    from defect_studio.cli import main
    from defect_studio.io import atomic

    root = trained_project.root
    trained_project.close()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(root / "runs"))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    code = main(["evaluate", "--project", str(root), "--run", "tiny", "--split", "val"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "AP" in out and "ROC AUC" in out  # the metrics were printed
    assert "could not be saved" in err and "Read-only" in err and "Traceback" not in err


def test_train_on_a_read_only_project_is_a_clear_message(tmp_path, monkeypatch, capsys):
    from defect_studio.cli import main

    root = tmp_path / "p"
    from fault_helpers import tiny_project

    tiny_project(root)

    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    code = main(["train", "--project", str(root), "--epochs", "1", "--size", "32x32",
                 "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Read-only file system" in err and "copy the project" in err
    assert not list((root / "runs").iterdir())


def test_disk_full_during_training_is_one_line_and_a_truthful_status(tmp_path, monkeypatch,
                                                                      capsys):
    from fault_helpers import tiny_project

    from defect_studio.cli import main
    from defect_studio.io import atomic
    from defect_studio.project.runs import read_run

    root = tiny_project(tmp_path / "p", n=12)
    real = atomic.tempfile.mkstemp

    def full(*a, prefix="", **k):
        if "checkpoint" in prefix or "model" in prefix:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, prefix=prefix, **k)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full)
    code = main(["train", "--project", str(root), "--epochs", "1", "--size", "32x32",
                 "--threads", "1", "--run-id", "r", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    run = read_run(root / "runs" / "r")
    assert run.state == "failed"  # not "running" forever


def test_deeply_nested_json_is_a_skipped_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "a.png", seed=70)
    (src / "a.json").write_text(json.dumps({"shapes": [], "imagePath": "a.png"}))
    (src / "bomb.json").write_text('{"shapes": ' + "[" * 100000 + "]" * 100000 + "}")
    report, recs = _run(src, tmp_path, "labelme")
    assert list(recs) == ["a.png"] and "unreadable JSON" in _reasons(report)
