"""Importers on small generated data sets in every format (tests/import_fixtures.py)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from import_fixtures import (
    MAKERS,
    SIZE,
    image,
    make_folders,
    make_pairs,
    mask_to_rle_counts,
    rect_mask,
)

from defect_studio.errors import ImportFormatError, MaskError, ProjectError
from defect_studio.io.importers import detect_format, import_dataset, label_from_name
from defect_studio.io.importers.coco import decode_rle, encode_rle
from defect_studio.io.importers.rle_csv import mask_to_rle_pairs, rle_pairs_to_mask
from defect_studio.io.importers.yolo import load_data_yaml
from defect_studio.project.store import Project


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "project") as p:
        yield p


def _check_import(fx, project, report):
    counts = project.counts()
    assert (counts["ok"], counts["defective"], counts["unlabeled"]) == \
        (fx.ok, fx.defective, fx.unlabeled), report.rows
    assert report.imported == fx.ok + fx.defective + fx.unlabeled
    assert report.by_label == {k: v for k, v in (("ok", fx.ok), ("defective", fx.defective),
                                                 ("unlabeled", fx.unlabeled)) if v}
    assert counts["masked"] == fx.masked == report.masks
    assert sum(r.mask_rough for r in project.images()) == fx.rough
    reasons = [r for _, r in report.skipped]
    for expected in fx.skipped:
        assert any(expected in r for r in reasons), (expected, report.skipped)
    assert len(report.skipped) == len(fx.skipped), report.skipped
    assert counts["unassigned"] == 0  # every image gets a split
    if fx.splits is not None:
        pinned = Counter(r.split for r in project.images() if r.split_pinned)
        assert dict(pinned) == fx.splits
    for name, expected in fx.masks.items():
        recs = [r for r in project.images() if ("/" + r.path).endswith("/" + name)]
        assert len(recs) == 1, name
        mask = project.load_mask(recs[0].id)
        assert mask is not None, name
        assert np.array_equal(mask > 0, expected), (name, np.argwhere((mask > 0) != expected))


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_import_each_format(name, tmp_path, project):
    fx = MAKERS[name](tmp_path / "src")
    report = import_dataset(fx.source, project, fmt=fx.fmt, copy=False)
    assert report.format == fx.fmt
    _check_import(fx, project, report)
    # linked, not copied: the project records the original absolute paths
    assert all(Path(r.path).is_absolute() for r in project.images())
    assert not project.images_dir.exists() or not any(project.images_dir.iterdir())


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_auto_detection_picks_the_format(name, tmp_path):
    fx = MAKERS[name](tmp_path / "src")
    assert detect_format(fx.source) == fx.fmt


def test_detect_annotation_files(tmp_path):
    for name in ("coco", "voc", "rle-csv", "labelme", "yolo"):
        fx = MAKERS[name](tmp_path / name)
        files = {"coco": "annotations.json", "voc": "Annotations/a.xml", "rle-csv": "train.csv",
                 "labelme": "a.json", "yolo": "data.yaml"}
        assert detect_format(fx.source / files[name]) == fx.fmt


def test_import_from_annotation_file(tmp_path, project):
    fx = MAKERS["coco"](tmp_path / "src")
    report = import_dataset(fx.source / "annotations.json", project, copy=False)
    assert report.format == "coco"
    _check_import(fx, project, report)


def test_unknown_layout_names_every_format(tmp_path):
    src = tmp_path / "odd"
    src.mkdir()
    (src / "notes.txt").write_text("hello")
    (src / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ImportFormatError) as e:
        detect_format(src)
    msg = str(e.value)
    for fmt in ("folders", "pairs", "mvtec", "dagm", "yolo", "labelme", "coco", "voc",
                "rle-csv"):
        assert f"  {fmt}:" in msg
    with pytest.raises(ImportFormatError):
        detect_format(tmp_path / "missing")


def test_plain_image_folder_imports_unlabeled(tmp_path, project):
    src = tmp_path / "batch1"
    image(src / "one.png", 1)
    image(src / "sub" / "two.jpg", 2)
    assert detect_format(src) == "folders"
    report = import_dataset(src, project, copy=False)
    assert report.imported == 2 and report.by_label == {"unlabeled": 2}


def test_folder_names_above_the_source_do_not_matter(tmp_path):
    # "labels" and "images" above the source must not make every image a mask
    fx = make_pairs(tmp_path / "labels" / "images")
    with Project.create(tmp_path / "p") as project:
        report = import_dataset(fx.source, project, copy=False)
        _check_import(fx, project, report)


def test_project_inside_the_source_is_not_imported(tmp_path):
    fx = make_folders(tmp_path / "src")
    with Project.create(fx.source / "NG" / "project") as project:
        import_dataset(fx.source, project, copy=True)
        again = import_dataset(fx.source, project, copy=True)
        assert again.imported == 0
        assert [f for f, _ in again.skipped] == [str(fx.source / "train" / "NG" / "broken.png")]
        assert project.counts()["images"] == fx.ok + fx.defective + fx.unlabeled


def test_read_only_project_is_refused(tmp_path, project):
    fx = make_folders(tmp_path / "src")
    with Project.open(project.root, readonly=True) as ro:
        with pytest.raises(ProjectError, match="read-only"):
            import_dataset(fx.source, ro)


def test_several_mvtec_categories_or_dagm_classes_are_refused(tmp_path, project):
    mvtec = tmp_path / "mvtec"
    for cat in ("bottle", "cable"):
        image(mvtec / cat / "train" / "good" / "000.png", len(cat))
    assert detect_format(mvtec) == "mvtec"
    with pytest.raises(ImportFormatError, match="bottle, cable"):
        import_dataset(mvtec, project)
    dagm = tmp_path / "dagm"
    for i in (1, 2):
        image(dagm / f"Class{i}" / "Train" / "0000.PNG", 10 + i)
        image(dagm / f"Class{i}" / "Train" / "Label" / "0000_label.PNG", 20 + i)
    assert detect_format(dagm) == "dagm"
    with pytest.raises(ImportFormatError, match="Class1, Class2"):
        import_dataset(dagm, project)
    assert project.counts()["images"] == 0


def test_wrong_format_or_empty_source_is_an_error(tmp_path, project):
    fx = make_folders(tmp_path / "src")
    with pytest.raises(ImportFormatError, match="DAGM"):
        import_dataset(fx.source, project, fmt="dagm")
    with pytest.raises(ImportFormatError, match="no COCO JSON"):
        import_dataset(fx.source, project, fmt="coco")
    with pytest.raises(ImportFormatError, match="MVTec"):
        import_dataset(make_pairs(tmp_path / "p").source, project, fmt="mvtec")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImportFormatError, match="no images"):
        import_dataset(empty, project, fmt="folders")
    assert project.counts()["images"] == 0


def test_copy_mode_copies_into_project(tmp_path, project):
    fx = make_pairs(tmp_path / "src")
    import_dataset(fx.source, project, copy=True)
    recs = project.images()
    assert recs and all(r.path.startswith("images/") for r in recs)
    assert all(project.image_path(r).is_file() for r in recs)


def test_reimport_counts_duplicates_and_keeps_labels(tmp_path, project):
    fx = make_folders(tmp_path / "src")
    import_dataset(fx.source, project, copy=False)
    again = import_dataset(fx.source, project, copy=False)
    assert again.imported == 0
    assert again.duplicates == fx.ok + fx.defective + fx.unlabeled
    assert project.counts()["images"] == fx.ok + fx.defective + fx.unlabeled
    statuses = Counter(status for _, status, _ in again.rows)
    assert statuses["duplicate"] == again.duplicates


def test_same_image_in_ok_and_ng_folders_is_reported(tmp_path, project):
    src = tmp_path / "conflict"
    image(src / "OK" / "a.png", 5)
    (src / "NG").mkdir()
    (src / "NG" / "a_copy.png").write_bytes((src / "OK" / "a.png").read_bytes())
    report = import_dataset(src, project, copy=False)
    assert report.imported == 1 and report.duplicates == 1
    detail = [d for _, s, d in report.rows if s == "duplicate"][0]
    assert re.search(r"labelled (ok|defective) here but (defective|ok) there: kept", detail)


def test_progress_and_csv_report(tmp_path, project):
    fx = make_pairs(tmp_path / "src")
    calls = []
    report = import_dataset(fx.source, project, progress=lambda d, t: calls.append((d, t)))
    n = len(calls)
    assert n > 0 and calls[-1] == (n, n) and [d for d, _ in calls] == list(range(1, n + 1))
    out = tmp_path / "report.csv"
    report.write_csv(out)
    lines = out.read_text().splitlines()
    assert lines[0] == "file,status,detail"
    assert any("mask without image" in line for line in lines)
    assert len(lines) - 1 == len(report.rows)
    d = report.to_dict()
    json.dumps(d)
    assert d["skipped_by_reason"]["mask without image"] == 1


def test_project_in_use_is_refused(tmp_path, project):
    # the fixture's project holds the write lock: a second writer gets a clear error
    import subprocess
    import sys

    fx = make_folders(tmp_path / "src")
    code = "import sys; from defect_studio.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, "import", str(fx.source), "--project",
                          str(project.root)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "in use" in res.stderr and "Traceback" not in res.stderr
    assert project.counts()["images"] == 0


def test_label_words():
    assert label_from_name("OK") == "ok"
    assert label_from_name("good") == "ok"
    assert label_from_name("MT_Free") == "ok"
    assert label_from_name("defect_free") == "ok"
    assert label_from_name("Pass") == "ok"
    assert label_from_name("NG") == "defective"
    assert label_from_name("bad") == "defective"
    assert label_from_name("Defects") == "defective"
    assert label_from_name("fail") == "defective"
    assert label_from_name("not_ok") == "defective"
    assert label_from_name("MT_Blowhole") is None
    assert label_from_name("images") is None


def test_data_yaml_shapes(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("path: ../data  # root\ntrain: [images/a, 'images/b']\nval: images/val\n"
                 "test:\nnames:\n  - scratch\n  - 'dent # big'\nnc: 2\n")
    assert load_data_yaml(p) == {"path": "../data", "train": ["images/a", "images/b"],
                                 "val": "images/val", "test": "",
                                 "names": ["scratch", "dent # big"], "nc": "2"}
    p.write_text("names: {0: a, 1: b}")
    assert load_data_yaml(p)["names"] == {"0": "a", "1": "b"}


def test_coco_rle_codec():
    # hand-computed compressed counts: deltas from the third count on, 5-bit groups with a
    # sign bit (the strings the hand-written encoder gave before pycocotools replaced it)
    m = np.zeros((1, 10), bool)
    m[0, 3:5] = True  # runs 3, 2, 5
    assert encode_rle(m) == {"size": [1, 10], "counts": "325"}
    m = np.zeros((1, 33), bool)
    m[0, 10:30] = True
    m[0, 31:33] = True  # runs 10, 20, 1, 2
    assert encode_rle(m)["counts"] == ":d01^O"
    assert np.array_equal(decode_rle({"size": [1, 33], "counts": ":d01^O"}, 1, 33), m)
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((13, 7)) < 0.3
        counts = mask_to_rle_counts(m)
        assert sum(counts) == m.size
        assert np.array_equal(decode_rle(encode_rle(m), 13, 7), m)
        assert np.array_equal(decode_rle({"size": [13, 7], "counts": counts}, 13, 7), m)
    with pytest.raises(MaskError, match="cover 10 pixels"):
        decode_rle({"size": [4, 4], "counts": [5, 5]}, 4, 4)


@pytest.mark.parametrize("seg, why", [
    ({"size": [4, 4], "counts": [-5, 21]}, "negative"),
    ({"size": [4, 4], "counts": [5, 100]}, "longer than the image"),
    ({"size": [4, 4], "counts": [5, 5]}, "cover 10 pixels"),             # runs fall short
    ({"size": [4, 4], "counts": [8, 8, 1]}, "cover 17 pixels"),          # runs run past
    ({"size": [4, 4], "counts": [10**23, 5]}, "longer than the image"),
    ({"size": [4, 4], "counts": [2.5, 13.5]}, "whole numbers"),
    ({"size": [4, 4], "counts": [float("nan"), 16]}, "whole numbers"),
    ({"size": [4, 4], "counts": ["8", "8"]}, "numbers"),
    ({"size": [4, 4], "counts": [[8], 8]}, "numbers"),
    ({"size": [4, 4], "counts": [0] * 18}, "more runs than pixels"),
    ({"size": [4, 4], "counts": {"a": 1}}, "counts must be"),
    ({"size": [4, 4], "counts": None}, "counts must be"),
    ({"size": [4, 4], "counts": 16}, "counts must be"),
    ({"size": [4, 4], "counts": "0a"}, "cut off"),                       # continuation at end
    ({"size": [4, 4], "counts": "9"}, "cover 9 pixels"),
    ({"size": [4, 4], "counts": "<"}, "cover 12 pixels"),
    ({"size": [4, 4], "counts": "2\x7f"}, "outside '0'..'o'"),
    ({"size": [4, 4], "counts": "2\u00e9"}, "outside '0'..'o'"),
    ({"size": [4, 4], "counts": "o" * 12 + "0"}, "too long"),
    ({"size": [4, 4], "counts": "ooo"}, "cut off"),
    ({"size": [4, 4], "counts": "21O"}, "negative"),                    # 2, 1, then 1 - 2
    ({"size": [4, 4], "counts": "x" * 10**6}, "longer than the image"),
    ({"size": [10**9, 10**9], "counts": [10**18]}, "does not match"),
    ({"size": [4, "4"], "counts": [16]}, "size must be"),
    ({"size": [4, True], "counts": [16]}, "size must be"),
    ({"size": "4x4", "counts": [16]}, "size must be"),
])
def test_hostile_coco_rle_is_a_clear_mask_error(seg, why):
    with pytest.raises(MaskError, match=why):
        decode_rle(seg, 4, 4)


def test_coco_rle_without_size_and_all_background_or_defect():
    assert not decode_rle({"counts": [16]}, 4, 4).any()
    assert decode_rle({"counts": [0, 16]}, 4, 4).all()
    assert decode_rle({"counts": encode_rle(np.ones((4, 4), bool))["counts"]}, 4, 4).all()


def test_hostile_rle_in_a_coco_file_skips_only_its_image(tmp_path):
    src = tmp_path / "coco"
    for i in range(4):
        image(src / f"i{i}.png", 40 + i)
    hostile = [{"size": [SIZE, SIZE], "counts": [-1, SIZE * SIZE + 1]},
               {"size": [SIZE, SIZE], "counts": "0a"},
               {"size": [SIZE, SIZE], "counts": [5, 5]}]
    anns = [{"id": k + 1, "image_id": k + 1, "category_id": 1, "segmentation": seg}
            for k, seg in enumerate(hostile)]
    good = rect_mask(3, 3, 9, 9)
    anns.append({"id": 4, "image_id": 4, "category_id": 1, "segmentation": encode_rle(good)})
    (src / "ann.json").write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": f"i{i}.png"} for i in range(4)],
        "annotations": anns, "categories": [{"id": 1, "name": "defect"}]}))
    project = Project.create(tmp_path / "proj")
    report = import_dataset(src, project, fmt="coco", copy=False)
    recs = {r.name: r for r in project.images()}
    assert sorted(recs) == ["i0.png", "i1.png", "i2.png", "i3.png"]  # the batch went on
    assert [r.has_mask for n, r in sorted(recs.items())] == [False, False, False, True]
    assert np.array_equal(project.load_mask(recs["i3.png"].id) > 0, good)
    reasons = " ".join(r for _, r in report.skipped)
    assert reasons.count("bad RLE") == 3, reasons
    project.close()


def test_severstal_rle_is_column_major_one_based():
    m = rle_pairs_to_mask("1 3 10 2", 4, 3)  # h=4, w=3: pixel 1..3 = column 0 rows 0..2
    assert m[:, 0].tolist() == [True, True, True, False]
    assert m[:, 2].tolist() == [False, True, True, False]  # pixels 10, 11 = column 2 rows 1, 2
    assert m.sum() == 5
    assert mask_to_rle_pairs(m) == "1 3 10 2"
