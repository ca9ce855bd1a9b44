"""YOLO data.yaml through PyYAML: the export writes it with yaml.safe_dump, the importer reads
it with PyYAML's BaseLoader; hostile type names round-trip, hostile documents are refused
clearly, class ids that are not in `names` never become types, and paths in data.yaml stay
in the source folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from import_fixtures import image

from defect_studio.errors import ImportFormatError
from defect_studio.io.exporters import export_project
from defect_studio.io.importers import import_dataset
from defect_studio.io.importers.yolo import MAX_YAML_BYTES, load_data_yaml
from defect_studio.project.store import Project

HOSTILE_NAMES = ["it's", 'say "hi"', "a: b", "x #y", "#hash", "ünï cödé ✓", "- x", "{}", "[1]",
                 "yes", "null", "1.0", "0x1F", "~", "&anchor", "*alias", "!tag", "%d", "@at",
                 "back\\slash", "trailing:", "? q", "| pipe", "> fold", "'",
                 "''", '"', "…", "日本"]


def _yolo_source(root: Path, yaml_text: str, labels: dict[str, str]) -> Path:
    """root/images/<name>.png + root/labels/<name>.txt, root/data.yaml."""
    for i, (name, text) in enumerate(labels.items()):
        image(root / "images" / f"{name}.png", 300 + i)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text(yaml_text, encoding="utf-8")
    return root


def _reasons(report) -> str:
    return " | ".join(r for _, r in report.skipped)


def test_export_then_import_keeps_hostile_type_names(tmp_path):
    src = tmp_path / "imgs"
    with Project.create(tmp_path / "proj") as p:
        for n in HOSTILE_NAMES:
            p.add_type(n)
        rec = p.add_image(image(src / "a.png", 1, size=(40, 30)), split="train")
        p.set_boxes(rec.id, [(n, 1 + i, 2, 3, 4) for i, n in enumerate(HOSTILE_NAMES)])
        rec2 = p.add_image(image(src / "b.png", 2, size=(40, 30)), split="val")
        p.set_boxes(rec2.id, [(" lead", 0, 0, 5, 5)], create_types=True)  # stored stripped
        before = [(b.type, b.x) for b in p.boxes(rec.id)]
        export_project(p, "yolo", tmp_path / "out")
    text = (tmp_path / "out" / "data.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)  # what other YOLO tools (safe_load) read: the same names
    assert data["path"] == "." and data["train"] == "images/train"
    assert data["val"] == "images/val"
    assert list(data["names"].values()) == HOSTILE_NAMES + ["lead"]
    assert list(data["names"]) == list(range(len(HOSTILE_NAMES) + 1))
    with Project.create(tmp_path / "again") as q:
        report = import_dataset(tmp_path / "out", q, fmt="yolo")
        assert report.skipped == []
        assert [t.name for t in q.defect_types()] == HOSTILE_NAMES + ["lead"]
        a = next(r for r in q.images() if r.name.startswith("a"))
        assert [(b.type, round(b.x, 3)) for b in q.boxes(a.id)] == before


@pytest.mark.parametrize("names", [
    "names: [crack, pit]\n",
    "names:\n  - crack\n  - pit\n",
    "names:\n  0: crack\n  1: pit\n",
    "names: {1: pit, 0: crack}\n",
    "names: {'0': crack, '1': pit}\n",
])
def test_names_as_list_or_mapping(tmp_path, names):
    src = _yolo_source(tmp_path / "y", "train: images\n" + names,
                       {"a": "1 0.5 0.5 0.25 0.5\n0 0.2 0.2 0.1 0.1\n"})
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="yolo")
        assert report.skipped == []
        assert sorted(t.name for t in p.defect_types()) == ["crack", "pit"]


def test_class_ids_not_in_names_are_skipped_lines_never_types(tmp_path):
    src = _yolo_source(tmp_path / "y", "train: images\nnames: [crack, pit]\n", {
        "a": "0 0.5 0.5 0.2 0.2\n-1 0.5 0.5 0.2 0.2\n999999 0.5 0.5 0.2 0.2\n"
             "2 0.5 0.5 0.2 0.2\n1.5 0.5 0.5 0.2 0.2\n1e400 0.5 0.5 0.2 0.2\n",
        "b": "-1 0.5 0.5 0.2 0.2\n",
    })
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="yolo")
        assert [t.name for t in p.defect_types()] == ["crack"]
        recs = {r.name: r for r in p.images()}
        assert [b.type for b in p.boxes(recs["a.png"].id)] == ["crack"]
        assert p.boxes(recs["b.png"].id) == [] and recs["b.png"].label == "unlabeled"
    reasons = _reasons(report)
    assert "class id -1 is negative" in reasons
    assert "999999 is not in data.yaml names" in reasons and "2 is not in data.yaml" in reasons
    assert "1.5 is not a whole number" in reasons
    assert reasons.count("labels/a.txt") == 0  # reasons name the reason, files the file
    assert sum(f.endswith("a.txt:2") or f.endswith("a.txt:3") for f, _ in report.skipped) == 2


def test_without_data_yaml_ids_are_bounded_and_never_negative(tmp_path):
    root = tmp_path / "y"
    image(root / "images" / "a.png", 5)
    (root / "labels").mkdir(parents=True)
    (root / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.2\n-1 0.5 0.5 0.2 0.2\n999999 0.5 0.5 0.2 0.2\n3 0.2 0.2 0.1 0.1\n")
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(root, p, fmt="yolo")
        assert sorted(t.name for t in p.defect_types()) == ["0", "3"]
    reasons = _reasons(report)
    assert "negative" in reasons and "only class ids 0..999" in reasons


@pytest.mark.parametrize("text, why", [
    ("- a\n- b\n", "must be a mapping"),
    ("just text\n", "must be a mapping"),
    ("train: [images\nnames: {0: a\n", "not valid YAML"),
    ("a: [" * 5000 + "]" * 5000 + "\n", "nested too deeply|not valid YAML"),
    ("train: images\nnames: 7\n", "names must be a list or a mapping"),
    ("train: images\nnames: crack\n", "names must be a list or a mapping"),
    ("key: \x00\n", "not valid YAML"),
])
def test_hostile_documents_are_clear_errors(tmp_path, text, why):
    src = _yolo_source(tmp_path / "y", text, {"a": "0 0.5 0.5 0.2 0.2\n"})
    with Project.create(tmp_path / "p") as p:
        with pytest.raises(ImportFormatError, match=why):
            import_dataset(src, p, fmt="yolo")
        assert p.images() == [] and p.defect_types() == []


def test_python_tags_build_nothing(tmp_path):
    marker = tmp_path / "hacked"
    src = _yolo_source(tmp_path / "y", f"train: !!python/object/apply:os.system ['touch {marker}']"
                       "\nval: images\nnames: !!python/name:os.system [a]\n",
                       {"a": "0 0.5 0.5 0.2 0.2\n"})
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="yolo")
        assert [t.name for t in p.defect_types()] == ["a"]
    assert not marker.exists()
    assert "split folder in data.yaml not found" in _reasons(report)


def test_yaml_bomb_is_not_expanded(tmp_path):
    # billion laughs: nine levels of nine aliases; names and splits must be texts, so
    # nothing walks the shared structure
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines += ["train: *a9", "val: images", "names: *a9"]
    src = _yolo_source(tmp_path / "y", "\n".join(lines) + "\n", {"a": "0 0.5 0.5 0.2 0.2\n"})
    t0 = time.monotonic()
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="yolo")
        assert [r.name for r in p.images()] == ["a.png"]
        assert p.defect_types() == []  # class 0 has no usable name
    assert time.monotonic() - t0 < 10
    reasons = _reasons(report)
    assert "bad split entry: train is a list" in reasons
    assert "bad class name in names: class 0 is a list" in reasons
    assert "0 is not in data.yaml names" in reasons


def test_bad_names_entries_are_reported_and_left_out(tmp_path):
    src = _yolo_source(tmp_path / "y", "train: images\nnames:\n  0: crack\n  -1: neg\n"
                       "  x: word\n  2: [a, b]\n  3: ''\n  4: {k: v}\n", {
                           "a": "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n"})
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="yolo")
        assert [t.name for t in p.defect_types()] == ["crack"]
    reasons = _reasons(report)
    assert "bad class id in names: -1" in reasons and "bad class id in names: x" in reasons
    assert "class 2 is a list" in reasons and "class 3 is empty" in reasons
    assert "class 4 is a mapping" in reasons and "2 is not in data.yaml names" in reasons


def test_huge_data_yaml_is_refused_after_a_bounded_read(tmp_path):
    src = _yolo_source(tmp_path / "y", "train: images\nnames: [a]\n", {"a": "0 0.5 0.5 0.2 0.2\n"})
    with open(src / "data.yaml", "a") as f:
        f.write("# " + "x" * (MAX_YAML_BYTES + 10) + "\n")
    with pytest.raises(ImportFormatError, match="larger than 1024 KiB"):
        load_data_yaml(src / "data.yaml")
    # just under the bound is read (and parsed quickly)
    (src / "data.yaml").write_text("train: images\nnames: [a]\n# " + "x" * (MAX_YAML_BYTES - 40))
    t0 = time.monotonic()
    assert load_data_yaml(src / "data.yaml")["names"] == ["a"]
    assert time.monotonic() - t0 < 10


def test_empty_and_bom_documents(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("")
    assert load_data_yaml(p) == {}
    p.write_bytes("\ufefftrain: images\nnames: [é]\n".encode("utf-8"))
    assert load_data_yaml(p) == {"train": "images", "names": ["é"]}


def test_paths_in_data_yaml_never_leave_the_source(tmp_path):
    secret = tmp_path / "secret"
    image(secret / "images" / "private.png", 7)
    (secret / "labels").mkdir()
    (secret / "labels" / "private.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    src = _yolo_source(tmp_path / "src", "path: ../secret\ntrain: images\n"
                       "val: ../secret/images\ntest: [images/../../secret/images, "
                       f"'{secret / 'images'}']\nnames: [a]\n", {"in": "0 0.5 0.5 0.2 0.2\n"})
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(src, p, fmt="yolo")
        assert [r.name for r in p.images()] == ["in.png"]  # path: ../secret was not used
    assert _reasons(report).count("outside the source folder") == 3
    # the same from the data.yaml file itself as the source
    with Project.create(tmp_path / "p2") as p:
        report = import_dataset(src / "data.yaml", p, fmt="yolo")
        assert [r.name for r in p.images()] == ["in.png"]
    assert _reasons(report).count("outside the source folder") == 3
