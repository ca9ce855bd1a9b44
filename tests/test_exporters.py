"""Exporters (masks + labels.csv, COCO) and the import/export CLI."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from import_fixtures import image, make_coco, make_folders, make_pairs

from defect_studio.cli import main
from defect_studio.errors import UserError
from defect_studio.io.exporters import export_project, mask_annotations
from defect_studio.io.importers import import_dataset
from defect_studio.io.importers.coco import _ann_mask
from defect_studio.project.store import Project


def _mixed_project(tmp_path) -> Project:
    """Images with every kind of label: masks with holes and single pixels, clean
    masks, rough box masks, defective without mask, unlabeled, pinned splits."""
    p = Project.create(tmp_path / "project")
    src = tmp_path / "imgs"
    blob = np.zeros((32, 32), np.uint8)
    cv2.circle(blob, (12, 12), 8, 255, -1)
    cv2.circle(blob, (12, 12), 3, 0, -1)  # a hole
    blob[30, 30] = 255  # a lone pixel
    cv2.line(blob, (20, 2), (30, 8), 255, 1)
    p.add_image(image(src / "holes.png", 1), mask=blob, split="train")
    p.add_image(image(src / "clean.png", 2), label="ok", mask=np.zeros((32, 32), np.uint8))
    box = np.zeros((32, 32), np.uint8)
    box[4:9, 6:20] = 255
    p.add_image(image(src / "box.png", 3, gray=False), mask=box, mask_rough=True, split="test")
    p.add_image(image(src / "nomask.png", 4), label="defective")
    p.add_image(image(src / "plain.png", 5))
    p.add_image(image(src / "good.png", 6), label="ok", split="val")
    p.assign_splits()
    return p


def _state(project: Project) -> dict:
    """name -> (label, split, has_mask, mask_rough, mask bytes)."""
    out = {}
    for r in project.images():
        m = project.load_mask(r.id)
        out[r.name.split("_")[0].split(".")[0]] = (r.label, r.split, r.has_mask, r.mask_rough,
                                                   None if m is None else (m > 0).tobytes())
    return out


def test_coco_export_reimports_to_the_same_labels_and_masks(tmp_path):
    with _mixed_project(tmp_path) as p:
        summary = export_project(p, "coco", tmp_path / "out")
        before = _state(p)
    assert summary["images"] == 6 and summary["masks"] == 3
    doc = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["name"] for c in doc["categories"]] == ["defect"]
    kinds = {type(a["segmentation"]).__name__ for a in doc["annotations"]}
    assert kinds == {"list", "dict"}  # polygons, RLE for the holed blob and the lone pixel
    for a in doc["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and a["area"] > 0
    with Project.create(tmp_path / "again") as q:
        report = import_dataset(tmp_path / "out", q, fmt="auto", copy=True)
        assert report.format == "coco" and report.imported == 6 and not report.skipped
        assert _state(q) == before


def test_masks_export_writes_pngs_and_labels_csv(tmp_path):
    with _mixed_project(tmp_path) as p:
        summary = export_project(p, "masks", tmp_path / "out")
        recs = {r.name: r for r in p.images()}
        masks = {r.name: p.load_mask(r.id) for r in recs.values()}
    assert summary["masks"] == 3
    with open(tmp_path / "out" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["file", "label", "split", "has_mask", "rough", "source", "mask"]
    assert len(rows) == 6
    by_name = {r["file"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["holes.png"]["mask"] == "masks/holes_mask.png"
    assert by_name["box.png"]["rough"] == "1" and by_name["nomask.png"]["mask"] == ""
    assert by_name["nomask.png"]["label"] == "defective"
    for name, row in by_name.items():
        assert row["label"] == recs[name].label and row["split"] == recs[name].split
        if row["mask"]:
            png = cv2.imread(str(tmp_path / "out" / row["mask"]), cv2.IMREAD_UNCHANGED)
            assert np.array_equal(png, masks[name])


def test_same_names_get_distinct_files(tmp_path):
    with Project.create(tmp_path / "project") as p:
        for i, sub in enumerate(("a", "b")):
            p.add_image(image(tmp_path / sub / "x.png", 10 + i), mask=np.ones((32, 32), np.uint8))
        export_project(p, "masks", tmp_path / "out")
        export_project(p, "coco", tmp_path / "coco")
    assert len(list((tmp_path / "out" / "masks").glob("*.png"))) == 2
    doc = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert len({i["file_name"] for i in doc["images"]}) == 2


def test_unknown_export_format(tmp_path):
    with Project.create(tmp_path / "project") as p, pytest.raises(UserError, match="masks"):
        export_project(p, "tiff", tmp_path / "out")


def test_mask_annotations_are_exact_for_random_masks():
    rng = np.random.default_rng(3)
    for _ in range(30):
        m = np.zeros((24, 40), np.uint8)
        for _ in range(3):
            c = (int(rng.integers(0, 40)), int(rng.integers(0, 24)))
            cv2.circle(m, c, int(rng.integers(1, 7)), 255, -1)
        m[rng.random(m.shape) < 0.02] = 255
        got = np.zeros(m.shape, bool)
        for a in mask_annotations(m):
            got |= _ann_mask(a, 24, 40)
        assert np.array_equal(got, m > 0)


# ---------------------------------------------------------------- CLI

def test_cli_import_summary_json_and_report(tmp_path, capsys):
    fx = make_pairs(tmp_path / "src")
    proj, rep = tmp_path / "proj", tmp_path / "rep.csv"
    rc = main(["import", str(fx.source), "--project", str(proj), "--link", "--json",
               "--report", str(rep)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["format"] == "pairs" and out["imported"] == 6
    assert out["by_label"] == {"ok": 2, "defective": 2, "unlabeled": 2}
    assert out["skipped_by_reason"]["mask without image"] == 1
    assert out["project"]["images"] == 6
    assert rep.read_text().startswith("file,status,detail")

    rc = main(["import", str(fx.source), "--project", str(proj)])
    text = capsys.readouterr().out
    assert rc == 0 and "duplicates  6" in text and "mask of the wrong size" in text

    rc = main(["export", "--project", str(proj), "--format", "coco", "--out",
               str(tmp_path / "coco")])
    assert rc == 0 and json.loads(capsys.readouterr().out)["images"] == 6


def test_cli_nothing_importable_exits_nonzero(tmp_path, capsys):
    src = tmp_path / "bad"
    (src / "OK").mkdir(parents=True)
    (src / "OK" / "a.png").write_bytes(b"junk")
    rc = main(["import", str(src), "--project", str(tmp_path / "p")])
    captured = capsys.readouterr()
    assert rc == 1 and "nothing could be imported" in captured.err
    assert "unreadable image" in captured.out
    assert not (tmp_path / "p").exists()


def test_cli_unknown_layout_exits_2(tmp_path, capsys):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    rc = main(["import", str(tmp_path / "odd"), "--project", str(tmp_path / "p")])
    assert rc == 2 and "Formats tried" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # no empty project left behind
    rc = main(["import", str(tmp_path / "odd"), "--project", str(tmp_path / "p"),
               "--format", "coco"])
    assert rc == 2 and "no COCO JSON" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_cli_folders_then_coco_round_trip(tmp_path, capsys):
    fx = make_folders(tmp_path / "src")
    assert main(["import", str(fx.source), "--project", str(tmp_path / "p"), "--copy"]) == 0
    assert main(["export", "--project", str(tmp_path / "p"), "--format", "masks", "--out",
                 str(tmp_path / "m")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "m" / "labels.csv", newline="")))
    assert sorted(r["label"] for r in rows) == sorted(["ok"] * 4 + ["defective"] * 4 +
                                                      ["unlabeled"])
    capsys.readouterr()


def test_coco_fixture_export_import(tmp_path):
    fx = make_coco(tmp_path / "src")
    with Project.create(tmp_path / "a") as p:
        import_dataset(fx.source, p, copy=False)
        export_project(p, "coco", tmp_path / "out")
        before = _state(p)
    with Project.create(tmp_path / "b") as q:
        import_dataset(tmp_path / "out" / "annotations.json", q, copy=False)
        assert _state(q) == before


class _Stream:
    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_progress_lines():
    """The one progress helper (defect_studio.progress): plain lines off a terminal, a bar on one;
    import passes it its stream (the old printer looked at the wrong one)."""
    from defect_studio.progress import progress_bar

    log = _Stream(tty=False)
    prog = progress_bar("importing", log)
    total = 1007
    for i in range(1, total + 1):
        prog(i, total)
    lines = log.text.splitlines()
    assert lines[-1] == f"importing {total}/{total}" and 10 <= len(lines) <= 12
    term = _Stream(tty=True)
    prog = progress_bar("importing", term)
    for i in range(1, 4):
        prog(i, 3)
    assert "importing" in term.text and "3/3" in term.text and "\r" in term.text
