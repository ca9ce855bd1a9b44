"""Fault matrix, "escapes" rows: nothing is read or written outside where the user pointed."""

from __future__ import annotations

import json

import pytest
from fault_helpers import cli, png, tiny_project

from defect_studio.errors import ProjectError
from defect_studio.io.importers import import_dataset
from defect_studio.project import Project
from defect_studio.project.runs import require_run_id


@pytest.mark.parametrize("bad", ["../../../x", "../x", "/tmp/x", "a/b", "..", "", "a\\b"])
def test_resume_with_a_path_as_run_id_is_refused(tmp_path, bad):
    with pytest.raises(ProjectError, match="invalid run id"):
        require_run_id(bad)


def test_train_resume_outside_the_project_writes_nothing(tmp_path, capsys):
    root = tiny_project(tmp_path / "p")
    victim = tmp_path / "x"  # what ../../x would reach from runs/
    victim.mkdir()
    (victim / "config.json").write_text("{}")
    (victim / "checkpoint.pt").write_bytes(b"")
    from defect_studio.cli import main

    assert main(["train", "--project", str(root), "--resume", "../../x", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "invalid run id" in err and "Traceback" not in err
    assert sorted(p.name for p in victim.iterdir()) == ["checkpoint.pt", "config.json"]


@pytest.fixture
def outside(tmp_path):
    """An image outside the source folder that annotation files try to reach."""
    secret = tmp_path / "secret"
    secret.mkdir()
    return png(secret / "private.png", seed=99)


def _import(src, tmp_path, **kw):
    with Project.create(tmp_path / "proj") as p:
        report = import_dataset(src, p, **kw)
        names = sorted(r.name for r in p.images())
    return report, names


def _refused(report, path):
    return any("outside the source folder" in reason and str(path.name) in f
               for f, reason in report.skipped)


def test_labelme_image_path_outside_is_refused(tmp_path, outside):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "inside.png", seed=1)
    for name, target in (("abs.json", str(outside)), ("rel.json", "../secret/private.png")):
        (src / name).write_text(json.dumps({"shapes": [], "imagePath": target}))
    report, names = _import(src, tmp_path, fmt="labelme")
    assert names == ["inside.png"] and _refused(report, outside)


def test_labelme_allow_outside_imports_it(tmp_path, outside):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.json").write_text(json.dumps({"shapes": [], "imagePath": str(outside)}))
    _, names = _import(src, tmp_path, fmt="labelme", allow_outside=True)
    assert names == ["private.png"]


def test_coco_file_name_outside_is_refused(tmp_path, outside):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "ok.png", seed=2)
    doc = {"images": [{"id": 1, "file_name": "ok.png"},
                      {"id": 2, "file_name": str(outside)},
                      {"id": 3, "file_name": "../secret/private.png"}],
           "annotations": [], "categories": []}
    (src / "ann.json").write_text(json.dumps(doc))
    report, names = _import(src / "ann.json", tmp_path, fmt="coco")
    assert names == ["ok.png"] and _refused(report, outside)


def test_voc_filename_outside_is_refused(tmp_path, outside):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.xml").write_text("<annotation><filename>../secret/private.png</filename>"
                               "</annotation>")
    png(src / "b.png", seed=3)
    report, names = _import(src, tmp_path, fmt="voc")
    assert names == ["b.png"] and _refused(report, outside)


def test_yolo_yaml_and_list_files_outside_are_refused(tmp_path, outside):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    png(src / "images" / "in.png", seed=4)
    listing = tmp_path / "secret" / "list.txt"
    listing.write_text(str(outside) + "\n")
    (src / "inlist.txt").write_text("images/in.png\n../secret/private.png\n")
    (src / "data.yaml").write_text(
        f"train: {tmp_path / 'secret'}\nval: {listing}\ntest: inlist.txt\nnames: [defect]\n")
    report, names = _import(src, tmp_path, fmt="yolo")
    assert names == ["in.png"]
    reasons = " | ".join(r for _, r in report.skipped)
    assert reasons.count("outside the source folder") >= 3


def test_cli_reports_the_refusal_and_the_flag(tmp_path, outside):
    src = tmp_path / "src"
    src.mkdir()
    png(src / "in.png", seed=5)
    (src / "a.json").write_text(json.dumps({"shapes": [], "imagePath": str(outside)}))
    r = cli("import", str(src), "--project", str(tmp_path / "p"), "--format", "labelme")
    assert r.returncode == 0 and "outside the source folder" in r.stdout
    r = cli("import", str(src), "--project", str(tmp_path / "p2"), "--format", "labelme",
            "--allow-outside", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["imported"] == 2


def test_coco_file_in_annotations_folder_may_use_the_sibling_images_folder(tmp_path, outside):
    ds = tmp_path / "ds"
    (ds / "annotations").mkdir(parents=True)
    (ds / "images").mkdir()
    png(ds / "images" / "a.png", seed=7)
    doc = {"images": [{"id": 1, "file_name": "a.png"},
                      {"id": 2, "file_name": "../../secret/private.png"}],
           "annotations": [], "categories": []}
    (ds / "annotations" / "instances.json").write_text(json.dumps(doc))
    report, names = _import(ds / "annotations" / "instances.json", tmp_path, fmt="coco")
    assert names == ["a.png"] and _refused(report, outside)
