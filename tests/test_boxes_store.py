"""Defect types and boxes in the store: API, validation, invariants, migration, crash safety."""

import math
import sqlite3

import numpy as np
import pytest

from defect_studio.errors import ProjectError, UserError
from defect_studio.io.images import write_png_atomic
from defect_studio.project import Project, schema
from defect_studio.project.boxes import Box, BoxError, clean_box


def _image(tmp_path, name="a.png", size=(40, 30), seed=0):
    p = tmp_path / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_png_atomic(p, rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
    return p


def test_types_and_boxes_round_trip(tmp_path):
    root = tmp_path / "proj"
    with Project.create(root) as p:
        rec = p.add_image(_image(tmp_path), label="ok")
        scratch = p.add_type("scratch")
        pit = p.add_type("pit", color="#FF0000", hotkey="P")
        assert (scratch.color, scratch.hotkey) == ("#e69f00", "Alt+1")
        assert (pit.color, pit.hotkey) == ("#ff0000", "P")
        assert p.add_type("Scratch").id == scratch.id  # names are case-insensitive
        out = p.set_boxes(rec.id, [("scratch", 1, 2, 10, 5), Box("pit", 20.5, 3, 4, 4)])
        assert out.label == "defective" and out.label_source == "user"
    with Project.open(root, readonly=True) as p:  # survives closing
        assert [t.name for t in p.defect_types()] == ["scratch", "pit"]
        assert p.boxes(rec.id) == [Box("scratch", 1, 2, 10, 5), Box("pit", 20.5, 3, 4, 4)]
        assert p.box_counts() == {"scratch": {"boxes": 1, "images": 1},
                                  "pit": {"boxes": 1, "images": 1}}
        assert [r.id for r in p.images_with_type("pit")] == [rec.id]
        assert p.all_boxes() == {rec.id: p.boxes(rec.id)}


def test_boxes_and_labels_never_contradict(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(_image(tmp_path))
        p.add_type("pit")
        p.set_boxes(rec.id, [("pit", 0, 0, 5, 5)])
        with pytest.raises(ProjectError, match="delete its boxes first"):
            p.set_label(rec.id, "ok")
        assert p.image(rec.id).label == "defective"
        p.set_boxes(rec.id, [])  # no boxes: the label stays, and may now change
        assert p.image(rec.id).label == "defective"
        assert p.set_label(rec.id, "ok").label == "ok"


@pytest.mark.parametrize("box, match", [
    ((float("nan"), 0, 5, 5), "finite"),
    ((0, 0, math.inf, 5), "finite"),
    ((0, 0, -5, 5), "positive"),
    ((0, 0, 0, 5), "positive"),
    ((500, 500, 5, 5), "outside"),
    ((-50, 0, 10, 10), "outside"),
    (("1", 0, 5, 5), "number"),
    ((True, 0, 5, 5), "number"),
    ((None, 0, 5, 5), "number"),
])
def test_bad_boxes_refused_and_nothing_changes(tmp_path, box, match):
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(_image(tmp_path), label="ok")
        p.add_type("pit")
        with pytest.raises(BoxError, match=match):
            p.set_boxes(rec.id, [("pit", 1, 1, 3, 3), ("pit", *box)])
        assert p.boxes(rec.id) == [] and p.image(rec.id).label == "ok"
        assert isinstance(BoxError("x"), UserError)


def test_boxes_clipped_to_the_image_and_huge_ones_too():
    assert clean_box(-3, 25, 10, 10, 40, 30) == (0.0, 25.0, 7.0, 5.0)
    assert clean_box(-1e300, -1e300, 1e308, 1e308, 40, 30) == (0.0, 0.0, 40.0, 30.0)
    assert clean_box(np.float32(1.5), np.int64(2), 3, 4, 40, 30) == (1.5, 2.0, 3.0, 4.0)


def test_unknown_types_and_bad_names(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(_image(tmp_path))
        with pytest.raises(BoxError, match="no defect type 'crack'"):
            p.set_boxes(rec.id, [("crack", 0, 0, 5, 5)])
        p.set_boxes(rec.id, [("crack", 0, 0, 5, 5)], create_types=True, source="import")
        assert [t.name for t in p.defect_types()] == ["crack"]
        for bad in ("", "  ", "a\x00b", "x" * 65, 3, None):
            with pytest.raises(BoxError):
                p.add_type(bad)
        with pytest.raises(BoxError, match="colour"):
            p.add_type("pit", color="red; DROP TABLE")
        with pytest.raises(BoxError, match="not \\(type"):
            p.set_boxes(rec.id, [("crack", 1, 2)])
        with pytest.raises(BoxError, match="used by 1 box;"):
            p.delete_type("crack")
        p.add_type("pit", hotkey="Alt+5")
        with pytest.raises(BoxError, match="hotkey"):
            p.add_type("dent", hotkey="Alt+5")
        with pytest.raises(BoxError, match="already has the name"):
            p.update_type("pit", new_name="CRACK")
        assert p.update_type("pit", new_name="pinhole", color="#00ff00").color == "#00ff00"
        p.delete_type("pinhole")
        assert [t.name for t in p.defect_types()] == ["crack"]


def test_set_boxes_is_one_transaction_in_a_failed_batch(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(_image(tmp_path))
        p.add_type("pit")
        with pytest.raises(RuntimeError):
            with p.batch():
                p.set_boxes(rec.id, [("pit", 0, 0, 5, 5)])
                raise RuntimeError("crash in the middle")
        assert p.boxes(rec.id) == [] and p.image(rec.id).label == "unlabeled"


def test_migrating_a_version_1_project_keeps_its_data(tmp_path):
    """A project written before types and boxes existed opens and gains them."""
    root = tmp_path / "old"
    root.mkdir()
    db = sqlite3.connect(root / "project.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    schema.MIGRATIONS[0](db)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    img = _image(tmp_path)
    db.execute("INSERT INTO images (path, hash, width, height, channels, bit_depth, label) "
               "VALUES (?, 'abc', 40, 30, 1, 8, 'ok')", (img.as_posix(),))
    db.close()
    with pytest.raises(ProjectError, match="older format"):
        Project.open(root, readonly=True)
    with Project.open(root) as p:
        (rec,) = p.images()
        assert rec.label == "ok" and p.defect_types() == [] and p.boxes(rec.id) == []
        p.set_boxes(rec.id, [("scratch", 1, 1, 4, 4)], create_types=True)
    db = sqlite3.connect(root / "project.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(schema.SCHEMA_VERSION),)
    assert db.execute("SELECT COUNT(*) FROM boxes").fetchone() == (1,)
    db.close()


def test_box_tables_do_not_import_the_store():
    # boxes.py and store.py used to import each other (a function-level import of the
    # record helpers); the record now lives in project/records.py, which both import
    import ast
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "core" / "project" / "boxes.py"
    imported = {n.module for n in ast.walk(ast.parse(src.read_text()))
                if isinstance(n, ast.ImportFrom)}
    assert "defect_studio.project.records" in imported
    assert not any(m and m.endswith("project.store") for m in imported), imported
    from defect_studio.project import ImageRecord
    from defect_studio.project.records import ImageRecord as Rec
    from defect_studio.project.store import ImageRecord as StoreRec

    assert ImageRecord is Rec is StoreRec
