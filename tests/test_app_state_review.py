"""ReviewState (defect_studio.app.review.state): the queue order, what a decision key
writes and when it asks, labels written to the store, and the review export, on a real
tiny project. No QApplication here."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from defect_studio.app.review.state import (
    ReviewItem,
    ReviewQueue,
    ReviewState,
    decide,
    write_review_export,
)
from defect_studio.io.images import read_image, write_png_atomic


@pytest.fixture
def state(trained_project):
    st = ReviewState()
    st.set_project(trained_project)
    assert st.run_id == "tiny"
    return st


def test_queue_is_worst_first_from_the_stored_predictions(state):
    project = state.project
    recs = project.images()[:5]
    scores = [(recs[0].id, 0.2, False), (recs[1].id, 0.9, True), (recs[2].id, 0.6, True),
              (recs[3].id, 0.4, False), (recs[4].id, 0.7, True)]
    project.save_predictions("tiny", scores)
    state.queue.set_items(state.stored_items())
    order = [it.image_id for it in state.queue.items()]
    # NG by score descending, then OK by score descending
    assert order == [recs[1].id, recs[4].id, recs[2].id, recs[3].id, recs[0].id]
    assert state.queue.counts_text() == "5 parts, 3 NG"
    # a new result goes to its place; an unreadable part goes last
    new = ReviewItem(path="/x/new.png", name="new.png", score=0.8, is_ng=True)
    state.queue.insert(state.queue.insertion_row(new), new)
    bad = ReviewItem(path="/x/bad.png", name="bad.png", error="cannot read")
    state.queue.insert(state.queue.insertion_row(bad), bad)
    assert state.queue.row_of(new) == 1 and state.queue.row_of_path("/x/bad.png") == 6
    assert state.queue.next_row(5) == 6 and state.queue.next_row(6) is None


def test_what_a_key_writes_and_when_it_asks():
    fresh = ReviewItem(path="p", name="a.png", image_id=1, score=0.9, is_ng=True)
    d = decide(fresh, "review_accept")
    assert (d.action, d.label, d.source) == ("write", "defective", "prediction")
    same = ReviewItem(path="p", name="b.png", image_id=2, score=0.1, is_ng=False, label="ok",
                      label_source="user")
    assert decide(same, "review_accept").action == "keep"
    by_person = ReviewItem(path="p", name="c.png", image_id=3, score=0.9, is_ng=True,
                           label="ok", label_source="user")
    d = decide(by_person, "review_accept")
    assert d.action == "ask" and "labelled ok by a person; the model says defective" in d.question
    by_model = ReviewItem(path="p", name="d.png", image_id=4, score=0.9, is_ng=True,
                          label="ok", label_source="prediction")
    assert decide(by_model, "review_accept").action == "write"  # its own earlier decision
    for key, label in (("review_ok", "ok"), ("review_defective", "defective")):
        d = decide(by_person, key)  # a correction is written as is, never asked
        assert (d.action, d.label, d.source) == ("write", label, "user")
    assert decide(None, "review_ok").action == "none"
    assert decide(ReviewItem(path="p", name="e", error="bad"), "review_accept").action == "none"
    with pytest.raises(ValueError):
        decide(fresh, "label_ok")


def test_labels_are_written_to_the_store(state, tmp_path):
    project = state.project
    rec = project.set_label(project.images(label="ok")[0].id, "unlabeled")
    item = state.item_for(rec, score=0.8, is_ng=True)
    d = decide(item, "review_accept")
    stored, before = state.write_label(item, d.label, d.source)
    assert before == ("unlabeled", "user")
    again = project.image(rec.id)
    assert (again.label, again.label_source) == ("defective", "prediction")
    assert (item.label, item.label_source) == ("defective", "prediction")
    # a new part from a folder becomes training data with a split and its prediction
    src = tmp_path / "new" / "part.png"
    src.parent.mkdir()
    write_png_atomic(src, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    part = ReviewItem(path=str(src), name="part.png", score=0.3, is_ng=False)
    n = project.counts()["images"]
    stored, before = state.write_label(part, "ok", "user")
    assert project.counts()["images"] == n + 1 and part.image_id == stored.id
    assert before == ("unlabeled", "import")
    assert stored.label == "ok" and stored.split in ("train", "val", "test")
    assert project.predictions("tiny")[stored.id] == (pytest.approx(0.3), False)


def test_sources_and_labels_read_again(state, tmp_path):
    project = state.project
    cleared = project.set_label(project.images(label="ok")[1].id, "unlabeled")
    assert [r.id for r in state.images_of("unlabeled")] == [cleared.id]
    assert {r.id for r in state.images_of("test")} == {r.id for r in project.images(split="test")}
    assert len(state.images_of("all")) == project.counts()["images"]
    with pytest.raises(ValueError):
        state.images_of("folder")
    (tmp_path / "f" / "sub").mkdir(parents=True)
    for name in ("b.png", "sub/a.PNG", "notes.txt"):
        (tmp_path / "f" / name).write_bytes(b"")
    assert [p.name for p in state.folder_images(tmp_path / "f")] == ["b.png", "a.PNG"]
    rec = project.images(label="ok")[0]
    state.queue.set_items([state.item_for(rec, score=0.1)])
    project.set_label(rec.id, "defective")  # changed on the Label page
    assert state.reload_labels() == [0]
    assert state.queue.item(0).label == "defective"
    assert state.reload_labels() == []


def test_empty_hint_says_the_next_step(state):
    assert "Open a project" in ReviewState().empty_hint()
    assert state.empty_hint().endswith("press Predict (model: run tiny).")
    assert state.empty_hint(predicting=True) == "Scoring\u2026"
    state.queue.set_items([ReviewItem(path="p", name="a")])
    assert state.empty_hint() == "Select a part in the list."
    state.run_id = None
    assert "No trained model yet" in state.empty_hint()


def test_review_export_writes_the_csv_and_overlays(state, tmp_path):
    project = state.project
    recs = project.images()[:3]
    state.queue.set_items([state.item_for(r, score=s, is_ng=s > 0.5)
                           for r, s in zip(recs, (0.9, 0.2, 0.6), strict=True)])
    for it in state.queue.items():  # small heatmaps, as the prediction worker keeps them
        it.heatmap = np.full((8, 8), 200, np.uint8)
    state.queue.insert(3, ReviewItem(path="/x/bad.png", name="bad.png", error="unreadable"))
    rows = state.export_rows()
    assert len(rows) == 3  # the unreadable part is left out
    n = write_review_export(tmp_path / "out", state.run_dir(), rows)
    assert n == 3
    with open(tmp_path / "out" / "review.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["path"] for r in table] == [it.path for it in state.queue.items()[:3]]
    assert [r["decision"] for r in table] == ["NG", "NG", "OK"]
    assert [float(r["score"]) for r in table] == [0.9, 0.6, 0.2]
    for r in table:
        overlay = read_image(tmp_path / "out" / r["overlay"])
        assert overlay.shape[:2] == read_image(r["path"]).shape[:2]
    # without overlays: the CSV alone, the overlay column empty
    write_review_export(tmp_path / "csv_only", state.run_dir(), rows, overlays=False)
    assert not (tmp_path / "csv_only" / "overlays").exists()
    with open(tmp_path / "csv_only" / "review.csv", newline="", encoding="utf-8") as f:
        assert all(r["overlay"] == "" for r in csv.DictReader(f))


def test_queue_alone_keeps_its_order_when_items_are_replaced():
    q = ReviewQueue()
    q.set_items([ReviewItem(path=f"/p/{i}.png", name=f"{i}.png", score=s, is_ng=s > 0.5)
                 for i, s in enumerate((0.1, 0.8, 0.55, 0.3))])
    assert [it.name for it in q.items()] == ["1.png", "2.png", "3.png", "0.png"]
    row = q.row_of_path("/p/0.png")
    q.remove(row)  # scored again: now the worst
    worse = ReviewItem(path="/p/0.png", name="0.png", score=0.95, is_ng=True)
    q.insert(q.insertion_row(worse), worse)
    assert [it.name for it in q.items()] == ["0.png", "1.png", "2.png", "3.png"]
