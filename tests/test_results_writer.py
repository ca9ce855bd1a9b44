"""defect_studio.inference.results: the one writer of results tables and overlay PNGs
(predict, the watch folder, the Review export)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from defect_studio.inference.results import (
    PREDICT_COLUMNS,
    REVIEW_COLUMNS,
    ResultsTable,
    ResultsWriter,
)
from defect_studio.io.images import read_image, write_png_atomic

REPO = Path(__file__).resolve().parents[1]


def _image(h: int = 20, w: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8)


def _heat(h: int = 5, w: int = 8) -> np.ndarray:
    return np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)


# -- tables ------------------------------------------------------------------------------

def test_csv_rows_are_on_disk_as_soon_as_they_are_added(tmp_path):
    t = ResultsTable(tmp_path / "p.csv", PREDICT_COLUMNS)
    t.add({"path": "a,b.png", "score": "0.500000", "decision": "NG", "overlay": "a_overlay.png",
           "run_id": "r1", "threshold": "0.5"})
    # readable while the job goes on (an interrupted job keeps its rows)
    text = (tmp_path / "p.csv").read_bytes().decode()
    assert text == ("path,score,decision,error,overlay,run_id,threshold\r\n"
                    '"a,b.png",0.500000,NG,,a_overlay.png,r1,0.5\r\n')  # csv.writer's dialect
    t.add({"path": "b.png", "error": "unreadable", "score": None})
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["a,b.png", "b.png"] and rows[1]["score"] == ""
    assert t.rows == 2
    with pytest.raises(ValueError, match="not columns"):
        t.add({"path": "c.png", "label": "ok"})
    with pytest.raises(ValueError, match="columns"):
        ResultsTable(tmp_path / "x.csv")
    # a fresh (non-append) table starts over
    ResultsTable(tmp_path / "p.csv", PREDICT_COLUMNS)
    assert (tmp_path / "p.csv").read_text().count("\n") == 1


def test_appended_jsonl_ends_a_cut_off_line_and_csv_header_is_written_once(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": "a"}\n{"key": "b", "sc')  # a crash cut the last line
    t = ResultsTable(path, append=True, durable=True)
    t.add({"file": "c.png", "key": "c"})
    lines = path.read_text().splitlines()
    assert lines[1] == '{"key": "b", "sc' and json.loads(lines[2]) == {"file": "c.png",
                                                                       "key": "c"}
    csv_path = tmp_path / "a.csv"
    for i in range(2):
        ResultsTable(csv_path, ["x", "y"], append=True).add({"x": i, "y": "v"})
    assert csv_path.read_text().splitlines() == ["x,y", "0,v", "1,v"]


def test_atomic_table_replaces_the_old_file_only_on_commit(tmp_path):
    out = tmp_path / "review.csv"
    out.write_text("old\n")
    with ResultsWriter(tmp_path, "review.csv", REVIEW_COLUMNS, atomic=True) as w:
        w.add({"path": "a.png", "score": "0.1", "decision": "OK", "label": "ok"})
        assert out.read_text() == "old\n"  # not yet
    assert out.read_text().splitlines() == [
        "path,score,decision,label,overlay,run_id,threshold", "a.png,0.1,OK,ok,,,"]
    with pytest.raises(RuntimeError):
        with ResultsWriter(tmp_path, "review.csv", REVIEW_COLUMNS, atomic=True) as w:
            w.add({"path": "b.png"})
            raise RuntimeError("stopped half-way")
    assert "a.png" in out.read_text() and not (tmp_path / "review.csv.tmp").exists()
    with pytest.raises(ValueError):
        ResultsTable(out, REVIEW_COLUMNS, append=True, atomic=True)


def test_undecodable_file_names_do_not_sink_the_table(tmp_path):
    bad = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name on a UTF-8 system: a lone surrogate
    t = ResultsTable(tmp_path / "p.csv", PREDICT_COLUMNS)
    t.add({"path": bad, "decision": "OK"})
    t.add({"path": "next.png", "decision": "NG"})
    text = (tmp_path / "p.csv").read_text(encoding="utf-8")
    assert "caf\\udce9.png" in text and "next.png" in text
    j = ResultsTable(tmp_path / "r.jsonl")
    j.add({"file": bad})
    assert json.loads((tmp_path / "r.jsonl").read_text())["file"] == bad


# -- overlays ----------------------------------------------------------------------------

def test_overlay_names_follow_each_users_convention(tmp_path):
    predict = ResultsWriter(tmp_path / "p", "predictions.csv", PREDICT_COLUMNS)
    names = [predict.write_overlay(f"/in/{d}/A.png", _image(), _heat(), 0.9, True)
             for d in ("x", "y")]
    names.append(predict.write_overlay("/in/z/a.jpg", _image(), _heat(), 0.1, False))
    assert names == ["A_overlay.png", "A_2_overlay.png", "a_3_overlay.png"]  # any case
    review = ResultsWriter(tmp_path / "r", "review.csv", REVIEW_COLUMNS, overlay_dir="overlays",
                           overlay_suffix="", atomic=True)
    assert [review.write_overlay(p, _image(), _heat(), 0.5, True)
            for p in ("a/x.png", "b/x.png")] == ["overlays/x.png", "overlays/x_2.png"]
    # the watch folder appends across restarts: names already on disk are not reused
    for _ in range(2):
        watch = ResultsWriter(tmp_path / "w", "results.jsonl", overlay_dir="overlays",
                              append=True, durable=True)
        last = watch.write_overlay("/line/part.png", _image(), _heat(), 0.9, True)
    assert last == "overlays/part_2_overlay.png"
    assert read_image(tmp_path / "w" / last).shape == (20, 30, 3)
    long = ResultsWriter(tmp_path / "l", "p.csv", ["path"])
    name = long.write_overlay("x" * 250 + ".png", _image(), _heat(), 0.5, True)
    assert name == "x" * 150 + "_overlay.png" and (tmp_path / "l" / name).is_file()


def test_overlays_are_bounded_in_size(tmp_path):
    w = ResultsWriter(tmp_path, "p.csv", ["path"], max_overlay_side=64)
    name = w.write_overlay("big.png", _image(100, 200), _heat(), 0.9, True)
    assert read_image(tmp_path / name).shape == (32, 64, 3)
    name = w.write_overlay("big16.png", (_image(300, 90).astype(np.uint16) * 257), _heat(), 0.9,
                           True)
    assert read_image(tmp_path / name).shape == (64, 19, 3)
    name = w.write_overlay("small.png", _image(10, 12), _heat(), 0.9, True)
    assert read_image(tmp_path / name).shape == (10, 12, 3)  # never enlarged


def test_a_bad_overlay_is_recorded_and_the_batch_goes_on(tmp_path):
    w = ResultsWriter(tmp_path, "p.csv", ["path", "overlay"], overlay_dir="overlays")
    assert w.write_overlay("a.png", np.zeros((4, 4, 2), np.uint8), _heat(), 0.5, True) == ""
    assert w.write_overlay("b.png", _image(), np.zeros((2, 2, 2, 2)), 0.5, True) == ""
    assert w.write_overlay("c.png", _image(), _heat(), 0.5, True, colormap="nope") == ""
    (tmp_path / "blocked").write_text("a file where the overlay folder should be")
    blocked = ResultsWriter(tmp_path, "q.csv", ["path"], overlay_dir="blocked")
    assert blocked.write_overlay("d.png", _image(), _heat(), 0.5, True) == ""
    assert w.write_overlay("e.png", _image(), _heat(), 0.5, True) == "overlays/e_overlay.png"
    assert [s for s, _ in w.problems] == ["a.png", "b.png", "c.png"]
    assert "colormap" in w.problems[2][1] and blocked.problems[0][0] == "d.png"


def test_the_writer_needs_neither_torch_nor_qt(tmp_path):
    code = (
        "import sys\n"
        "for m in ('torch', 'PySide6', 'onnxruntime', 'openvino'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np\n"
        "from defect_studio.inference.results import ResultsWriter\n"
        "w = ResultsWriter(sys.argv[1], 'r.csv', ['path', 'overlay'])\n"
        "w.add({'path': 'a', 'overlay': w.write_overlay('a.png', np.zeros((8, 8), np.uint8),"
        " np.ones((2, 2), np.float32), 0.9, True)})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6') "
        "and sys.modules[m] is not None))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    assert (tmp_path / "a_overlay.png").is_file()


def test_the_review_export_writes_through_the_shared_writer(tmp_path):
    """The Review page's export: review.csv with the run's decisions and one overlay per part,
    named uniquely when two folders hold the same file name (no Qt needed)."""
    from defect_studio.app.common.heatmaps import expand_heatmap
    from defect_studio.app.review.state import write_review_export
    from defect_studio.inference.overlay import decision_overlay

    src = tmp_path / "src"
    rows = []
    for i, (sub, name) in enumerate((("a", "x.png"), ("b", "x.png"), ("a", "y.png"))):
        img = _image(24, 32, seed=i)
        write_png_atomic(src / sub / name, img)
        rows.append((str(src / sub / name), 0.3 * i, i % 2 == 1, "ok", _heat()))
    assert write_review_export(tmp_path / "gui", tmp_path / "no-run", rows) == 3
    lines = (tmp_path / "gui" / "review.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(REVIEW_COLUMNS)
    # each row names the run and its threshold (this run folder has no threshold file)
    assert lines[1:] == [f"{src / 'a' / 'x.png'},0.000000,OK,ok,overlays/x.png,no-run,",
                         f"{src / 'b' / 'x.png'},0.300000,NG,ok,overlays/x_2.png,no-run,",
                         f"{src / 'a' / 'y.png'},0.600000,OK,ok,overlays/y.png,no-run,"]
    for (path, score, is_ng, _, small), name in zip(rows, ("x.png", "x_2.png", "y.png")):
        image = read_image(path)
        expected = decision_overlay(image, expand_heatmap(small, image.shape[:2]), score, is_ng)
        assert np.array_equal(read_image(tmp_path / "gui" / "overlays" / name), expected)
    assert not list((tmp_path / "gui").glob("*.tmp"))
