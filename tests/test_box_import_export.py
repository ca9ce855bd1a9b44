"""Typed boxes through the importers (VOC, YOLO, COCO, labelme) and exporters (COCO,
YOLO, VOC), with hostile annotation values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from import_fixtures import image

from defect_studio.cli import main
from defect_studio.io.exporters import export_project
from defect_studio.io.importers import import_dataset
from defect_studio.project.boxes import Box
from defect_studio.project.store import Project


def _voc_xml(path: Path, filename: str, objects: list[tuple[str, str, str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                   f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
                   for n, a, b, c, d in objects)
    path.write_text(f"<annotation><filename>{filename}</filename>{objs}</annotation>")


def _boxes_by_name(p: Project) -> dict[str, list[Box]]:
    """name -> boxes, coordinates rounded to 1/1000 px (YOLO stores relative decimals)."""
    return {r.name.split("_")[0].split(".")[0]:
            [Box(b.type, *(round(v, 3) for v in (b.x, b.y, b.w, b.h))) for b in p.boxes(r.id)]
            for r in p.images()}


def test_voc_keeps_classes_and_boxes_and_reports_hostile_ones(tmp_path):
    src = tmp_path / "voc"
    image(src / "JPEGImages" / "a.jpg", 1)
    _voc_xml(src / "Annotations" / "a.xml", "a.jpg", [
        ("scratch", "3", "4", "10", "6"), ("pit", "1", "1", "32", "32"),
        ("pit", "nan", "1", "4", "4"), ("pit", "-90", "1", "-50", "4"),
        ("huge", "-1e300", "-1e300", "1e300", "1e300"), ("x" * 200, "1", "1", "3", "3")])
    image(src / "JPEGImages" / "b.jpg", 2)
    _voc_xml(src / "Annotations" / "b.xml", "b.jpg", [("pit", "40", "40", "50", "50")])
    # an entity bomb is refused by defusedxml, and the batch goes on
    (src / "Annotations" / "c.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]>'
        "<annotation><filename>&x;</filename></annotation>")
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="voc")
        boxes = _boxes_by_name(p)
        assert boxes["a"] == [Box("scratch", 2, 3, 8, 3), Box("pit", 0, 0, 32, 32),
                              Box("huge", 0, 0, 32, 32)]
        assert boxes["b"] == []  # its one box lies outside the 32x32 image
        assert p.image(p.images()[1].id).label == "defective"  # the rough mask says so
        reasons = [r for _, r in report.skipped]
        # the NaN box is refused by the importer itself ("finite"), the other three by the store
        assert sum("bad box" in r or "finite" in r for r in reasons) == 4
        assert any("finite" in r for r in reasons) and any("control" in r or "long" in r
                                                           for r in reasons)
        assert any("unreadable XML" in r for r in reasons)
        assert report.boxes == 3 and p.image(p.images()[0].id).mask_rough


def test_yolo_coco_labelme_keep_types(tmp_path):
    y = tmp_path / "yolo"
    image(y / "images" / "train" / "a.png", 3)
    (y / "labels" / "train").mkdir(parents=True)
    (y / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n0 0.1 0.1 inf 0.1\n")
    (y / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [crack, pit]\n")
    c = tmp_path / "coco"
    image(c / "images" / "b.png", 4)
    (c / "ann.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "images/b.png"}],
        "categories": [{"id": 3, "name": "dent"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 5, 6]},
                        {"id": 2, "image_id": 7, "category_id": 3, "bbox": ["1", 2, 5, 6]},
                        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [1, 2, None, 6]}]}))
    lm = tmp_path / "labelme"
    image(lm / "c.png", 5)
    (lm / "c.json").write_text(json.dumps({"imagePath": "c.png", "shapes": [
        {"label": "stain", "shape_type": "rectangle", "points": [[10, 12], [4, 2]]},
        {"label": "stain", "shape_type": "polygon", "points": [[1, 1], [5, 1], [5, 5]]}]}))
    with Project.create(tmp_path / "p") as p:
        r1 = import_dataset(y, p, fmt="yolo")
        r2 = import_dataset(c, p, fmt="coco")
        r3 = import_dataset(lm, p, fmt="labelme")
        got = _boxes_by_name(p)
        assert got["a"] == [Box("pit", 12, 8, 8, 16)]
        assert got["b"] == [Box("dent", 1, 2, 5, 6)]
        assert got["c"] == [Box("stain", 4, 2, 6, 10)]
        assert [t.name for t in p.defect_types()] == ["pit", "dent", "stain"]
        assert all(p.image(i.id).has_mask for i in p.images())  # rough masks kept too
        assert [n for r in (r1, r2) for _, m in r.skipped if "bad box" in m for n in [m]]
        assert sum("bad box" in m for _, m in r2.skipped) == 2 and r3.boxes == 1


def _typed_project(tmp_path) -> Project:
    src = tmp_path / "imgs"
    p = Project.create(tmp_path / "proj")
    p.add_type("scratch")
    p.add_type("pit")
    a = p.add_image(image(src / "a.png", 11, size=(40, 30)), split="train")
    p.set_boxes(a.id, [("scratch", 2, 3, 10, 5), ("pit", 20, 10, 7, 9)])
    b = p.add_image(image(src / "b.png", 12, size=(40, 30)), split="val")
    p.set_boxes(b.id, [("pit", 0, 0, 40, 30)])
    p.add_image(image(src / "c.png", 13, size=(40, 30)), label="ok", split="test")
    p.add_image(image(src / "d.png", 14, size=(40, 30)), label="unlabeled", split="test")
    return p


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc"])
def test_export_round_trip_keeps_boxes_and_types(tmp_path, fmt):
    with _typed_project(tmp_path) as p:
        before = _boxes_by_name(p)
        summary = export_project(p, fmt, tmp_path / "out")
    with Project.create(tmp_path / "again") as q:
        report = import_dataset(tmp_path / "out", q, fmt=fmt)
        after = _boxes_by_name(q)
        labels = {r.name.split("_")[0].split(".")[0]: r.label for r in q.images()}
        assert {t.name for t in q.defect_types()} == {"scratch", "pit"}
    assert report.skipped == []
    expect = dict(before) if fmt == "coco" else {k: v for k, v in before.items() if k != "d"}
    assert after == expect
    assert labels["c"] == "ok" and labels["a"] == labels["b"] == "defective"
    if fmt != "coco":
        assert summary["left_out"] == 1 and summary["boxes"] == 3


def test_export_cli_writes_voc_with_xml_etree(tmp_path, capsys):
    with _typed_project(tmp_path):
        pass
    assert main(["export", "--project", str(tmp_path / "proj"), "--format", "voc",
                 "--out", str(tmp_path / "voc")]) == 0
    text = (tmp_path / "voc" / "Annotations" / "a.xml").read_text()
    assert "<name>scratch</name>" in text and "<xmin>3</xmin>" in text
    assert "<xmax>12</xmax>" in text  # x 2..12 covers pixels 3..12 (1-based)


def test_hostile_labelme_and_yolo_box_fields(tmp_path):
    lm = tmp_path / "labelme"
    image(lm / "a.png", 21)
    (lm / "a.json").write_text(json.dumps({"imagePath": "a.png", "shapes": [
        {"label": "dent", "shape_type": "rectangle", "points": [[1, 1], [float("nan"), 5]]},
        {"label": {"x": 1}, "shape_type": "rectangle", "points": [[2, 2], [9, 9]]},
        {"label": "dent", "shape_type": "rectangle", "points": [[1e300, 1e300], [-1e300, 4]]},
        {"label": "../../etc/passwd", "shape_type": "rectangle", "points": [[3, 3], [3, 9]]},
    ]}))
    y = tmp_path / "yolo"
    image(y / "images" / "b.png", 22)
    (y / "labels").mkdir(parents=True)
    (y / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 -0.2 0.2\n")
    (y / "data.yaml").write_text("path: .\ntrain: images\nnames: ['bad\\x07name', 'ok']\n")
    with Project.create(tmp_path / "p") as p:
        r1 = import_dataset(lm, p, fmt="labelme")
        r2 = import_dataset(y, p, fmt="yolo")
        got = _boxes_by_name(p)
        # a label that is not text becomes "defect"; the huge box is clipped; the NaN one
        # and the zero-width one are reported
        assert got["a"] == [Box("defect", 2, 2, 7, 7), Box("dent", 0, 4, 32, 28)]
        assert sum("bad box" in m for _, m in r1.skipped) == 2
        # a quoted YAML name is text as written (no escapes); a negative size is reported
        assert got["b"] == [Box("bad\\x07name", 12.8, 12.8, 6.4, 6.4)]
        assert sum("positive" in m for _, m in r2.skipped) == 1
        assert not (tmp_path / "etc").exists()
