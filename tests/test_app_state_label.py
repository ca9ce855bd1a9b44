"""LabelState (defect_studio.app.label.state): filters, search, order, counts, next and
next-unlabeled navigation, what a labelling key writes, on a real tiny project. No
QApplication here."""

from __future__ import annotations

import dataclasses

import pytest

from defect_studio.app.label.state import ALL_LABELLED, LabelState


@pytest.fixture
def state(demo_project):
    st = LabelState()
    st.set_images(demo_project.images())
    return st


def shown(st: LabelState) -> list:
    return [st.records[i] for i in st.ordered_ids()]


def test_filters_split_filter_search_and_type_limit(state, demo_project):
    c = demo_project.counts()
    for label in ("ok", "defective"):
        state.set_filter(label)
        assert len(state.ordered_ids()) == c[label]
        assert all(r.label == label for r in shown(state))
    state.set_filter("masked")
    assert len(state.ordered_ids()) == c["masked"] > 0
    state.set_filter("defective")
    state.set_split_filter("test")
    assert {r.id for r in shown(state)} == {r.id for r in demo_project.images(
        split="test", label="defective")}
    state.set_filter("all")
    state.set_split_filter("all")
    name = demo_project.images()[5].name
    state.set_search("  " + name.upper() + " ")  # any case, spaces trimmed
    assert [r.name for r in shown(state)] == [name]
    state.set_search("")
    some = {r.id for r in demo_project.images()[:4]}
    state.set_only_ids(some)
    assert set(state.ordered_ids()) == some
    state.set_only_ids(None)
    assert len(state.ordered_ids()) == c["images"]
    with pytest.raises(ValueError):
        state.set_filter("nope")


def test_order_and_prediction_filters(state, demo_project):
    recs = demo_project.images()
    assert [state.records[i].name.lower() for i in state.ordered_ids()] == sorted(
        r.name.lower() for r in recs)
    ok = [r for r in recs if r.label == "ok"]
    bad = [r for r in recs if r.label == "defective"]
    # a model that calls one good part NG and misses one defect
    state.predictions = {ok[0].id: (0.9, True), bad[0].id: (0.1, False), bad[1].id: (0.7, True)}
    state.set_sort("score")
    order = state.ordered_ids()
    assert order[:3] == [ok[0].id, bad[1].id, bad[0].id]  # highest first, unscored last
    state.set_sort("id")
    assert state.ordered_ids() == sorted(r.id for r in recs)
    state.set_filter("pred_ng")
    assert set(state.ordered_ids()) == {ok[0].id, bad[1].id}
    state.set_filter("disagree")
    assert set(state.ordered_ids()) == {ok[0].id, bad[0].id}


def test_next_and_next_unlabeled(state, demo_project):
    ids = state.ordered_ids()
    assert state.step(ids, ids[0], +1) == ids[1]
    assert state.step(ids, ids[0], -1) is None
    assert state.step(ids, -1, +1) == ids[0] and state.step(ids, -1, -1) == ids[-1]
    # all labelled: next image, with the note to train
    assert state.next_unlabeled(ids, ids[3]) == (ids[4], ALL_LABELLED)
    ok_at = [n for n, i in enumerate(ids) if state.records[i].label == "ok"]
    a, b = ok_at[1], ok_at[6]
    for i in (ids[a], ids[b]):
        state.update_record(demo_project.set_label(i, "unlabeled"))
    assert state.next_unlabeled(ids, ids[a]) == (ids[b], "")  # the next one ahead
    assert state.next_unlabeled(ids, ids[b]) == (ids[a], "")  # wraps to the first one
    assert state.step(ids, ids[b], -1, unlabeled_only=True) == ids[a]
    # unlabeled ones exist but none is shown: just the next image, no note
    state.set_filter("ok")
    view = state.ordered_ids()
    assert state.next_unlabeled(view, view[0]) == (view[1], "")


def test_what_a_labelling_key_writes_and_what_follows(state, demo_project):
    assert [state.label_of_key(k) for k in ("label_ok", "label_defective", "label_clear")] == [
        "ok", "defective", "unlabeled"]
    with pytest.raises(ValueError):
        state.label_of_key("review_ok")
    rec = demo_project.set_split(demo_project.images(label="ok")[0].id, "train")
    written = demo_project.set_label(rec.id, state.label_of_key("label_defective"))
    state.update_record(written)
    assert state.counts()["defective"] == demo_project.counts()["defective"]
    assert not state.needs_split(written, "defective")  # already in a split
    no_split = dataclasses.replace(written, split=None)
    assert state.needs_split(no_split, "ok") and not state.needs_split(no_split, "unlabeled")
    assert state.goes_next("ok", True) and not state.goes_next("ok", False)
    assert not state.goes_next("unlabeled", True)  # clearing stays on the image
    # the end of a mask stroke
    assert state.mask_action(True, False) == "save"
    assert state.mask_action(False, False) == "restore"  # had none: undo it all
    assert state.mask_action(False, True) == "delete"  # cleared: the label stays
    assert state.mask_action(False, None) == "delete"


def test_counts_and_the_info_line(state, demo_project):
    c = state.counts()
    p = demo_project.counts()
    assert {k: c[k] for k in ("images", "ok", "defective", "unlabeled", "masked")} == {
        k: p[k] for k in ("images", "ok", "defective", "unlabeled", "masked")}
    assert (c["train"], c["val"], c["test"]) == (p["splits"]["train"], p["splits"]["val"],
                                                  p["splits"]["test"])
    text = state.counts_text(len(state.ordered_ids()))
    assert text.startswith(f"{p['images']} images, {p['images']} shown")
    assert "All images are labelled" in text
    rec = demo_project.images(label="defective")[0]
    state.predictions = {rec.id: (0.875, True)}
    info = state.info_text(rec)
    assert f"<b>{rec.name}</b>" in info and "label: <b>defective</b>" in info
    assert "score 0.875 (NG)" in info
