"""defect_studio.project: round trip, imports, labels, masks, splits, schema, lock, settings,
runs."""

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from defect_studio.errors import ImageReadError, MaskError, ProjectError, ProjectInUseError
from defect_studio.io.images import write_png_atomic
from defect_studio.project import Project, RunInfo, list_runs, read_run, write_json_atomic
from defect_studio.project.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, size=(24, 20), seed=0) -> list[Path]:
    """n distinct small RGB PNGs (W x H = size)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"part_{i:03d}.png"
        write_png_atomic(p, rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))
        paths.append(p)
    return paths


def test_round_trip_copy_link_labels_masks(tmp_path):
    src = make_images(tmp_path / "src", 4)
    root = tmp_path / "proj"
    with Project.create(root) as p:
        copied = p.add_image(src[0], copy=True, label="ok")
        linked = p.add_image(src[1], copy=False)
        mask = np.zeros((20, 24), np.uint8)
        mask[3:6, 4:9] = 1
        with_mask = p.add_image(src[2], mask=mask, mask_rough=True)
        plain = p.add_image(src[3], split="test")
        p.set_label(linked.id, "defective")
        clean = p.save_mask(plain.id, np.zeros((20, 24), bool))
        assert clean.has_mask and clean.label == "unlabeled"  # a clean mask keeps the label
        p.set_setting("ui", {"zoom": 2.5, "names": ["a", "ü"]})

    assert copied.path == "images/part_000.png" and (root / copied.path).is_file()
    assert linked.path == src[1].resolve().as_posix() and Path(linked.path).is_absolute()
    assert with_mask.label == "defective" and with_mask.has_mask and with_mask.mask_rough
    assert plain.split == "test" and plain.split_pinned

    with Project.open(root) as p:
        recs = p.images()
        assert [r.id for r in recs] == [copied.id, linked.id, with_mask.id, plain.id]
        a, b, c, d = recs
        assert (a.label, a.label_source, a.name) == ("ok", "import", "part_000.png")
        assert (b.label, b.label_source) == ("defective", "user")
        assert (a.width, a.height, a.channels, a.bit_depth) == (24, 20, 3, 8)
        assert len(a.hash) == 40
        m = p.load_mask(c.id)
        assert m.dtype == np.uint8 and m.shape == (20, 24)
        assert set(np.unique(m)) == {0, 255} and (m > 0).sum() == 15
        assert p.load_mask(d.id).max() == 0
        assert p.load_mask(a.id) is None
        np.testing.assert_array_equal(p.read_image(b), p.read_image(p.image(b.id)))
        assert p.image_path(a) == root / "images" / "part_000.png"
        assert p.get_setting("ui") == {"zoom": 2.5, "names": ["a", "ü"]}
        assert p.get_setting("missing", 7) == 7
        assert p.images(label="defective") == [b, c]
        assert p.images(has_mask=True) == [c, d]
        assert p.images(split="test") == [d]
        assert p.counts() == {
            "images": 4, "ok": 1, "defective": 2, "unlabeled": 1, "masked": 2,
            "defective_masked": 1,
            "splits": {"train": 0, "val": 0, "test": 1}, "unassigned": 3,
        }
        p.delete_mask(c.id)
        assert not p.image(c.id).has_mask and not p.mask_path(c.id).exists()
        assert p.image(c.id).label == "defective"


def test_duplicates_and_unique_copy_names(tmp_path):
    src = make_images(tmp_path / "a", 2)
    other = tmp_path / "b" / "part_000.png"  # same name, other content
    make_images(tmp_path / "b", 1, seed=5)
    with Project.create(tmp_path / "proj") as p:
        first = p.add_image(src[0])
        again = p.add_image(src[0], label="ok")
        assert again == first and len(p.images()) == 1  # same content: existing record
        same_bytes = tmp_path / "copy_of_first.png"
        same_bytes.write_bytes(src[0].read_bytes())
        assert p.add_image(same_bytes, copy=False).id == first.id
        second = p.add_image(other)
        assert second.path == "images/part_000_1.png"
        assert p.find_image("part_000_1.png").id == second.id
        assert p.find_image("images/part_000.png").id == first.id
        assert p.find_image(str(tmp_path / "proj" / "images" / "part_000.png")).id == first.id
        assert p.find_image("nothing.png") is None


def test_file_inside_project_is_not_copied(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        (inside,) = make_images(p.images_dir / "sub", 1)
        rec = p.add_image(inside, copy=True)
        assert rec.path == "images/sub/part_000.png"
        assert sorted(x.name for x in (p.images_dir).iterdir()) == ["sub"]


def test_bad_image_and_bad_mask_lose_nothing(tmp_path):
    (good,) = make_images(tmp_path / "src", 1)
    bad = tmp_path / "src" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(good, label="ok")
        with pytest.raises(ImageReadError, match="broken.png"):
            p.add_image(bad)
        with pytest.raises(MaskError) as e:
            p.save_mask(rec.id, np.ones((10, 10), np.uint8))
        assert "10x10" in str(e.value) and "24x20" in str(e.value)
        with pytest.raises(MaskError):
            p.add_image(make_images(tmp_path / "more", 1, seed=3)[0], mask=np.ones((3, 3)))
        assert len(p.images()) == 1
        assert p.image(rec.id).label == "ok" and not p.image(rec.id).has_mask
        assert list(p.masks_dir.iterdir()) == []
        with pytest.raises(ProjectError, match="unknown label"):
            p.set_label(rec.id, "broken")
        with pytest.raises(ProjectError, match="no image with id 99"):
            p.set_label(99, "ok")


def test_labels_and_masks_stay_consistent(tmp_path):
    src = make_images(tmp_path / "src", 3)
    with Project.create(tmp_path / "proj") as p:
        ids = [p.add_image(s).id for s in src]
        mask = np.zeros((20, 24), np.uint8)
        mask[0, 0] = 255
        p.save_mask(ids[0], mask)
        with pytest.raises(ProjectError, match="delete its mask"):
            p.set_labels([(ids[1], "ok"), (ids[0], "ok")])
        assert p.image(ids[1]).label == "unlabeled"  # one transaction: nothing changed
        p.set_labels([(ids[1], "ok"), (ids[2], "defective")])
        assert [r.label for r in p.images()] == ["defective", "ok", "defective"]
        p.delete_mask(ids[0])
        assert p.set_label(ids[0], "ok").label == "ok"


def _project_with_labels(root, n_def, n_ok, n_unl=0):
    src = make_images(root.parent / "src", n_def + n_ok + n_unl)
    p = Project.create(root)
    with p.batch():
        for i, s in enumerate(src):
            label = "defective" if i < n_def else "ok" if i < n_def + n_ok else "unlabeled"
            p.add_image(s, label=label)
    return p


def test_splits_stratified_seeded_and_pinned(tmp_path):
    p = _project_with_labels(tmp_path / "a" / "proj", 10, 30, 4)
    assigned = p.assign_splits((0.6, 0.2, 0.2), seed=3)
    assert sum(assigned.values()) == 44
    by = {(r.label, r.split) for r in p.images()}
    for split in ("train", "val", "test"):
        assert ("defective", split) in by and ("ok", split) in by
    defect_splits = [r.split for r in p.images(label="defective")]
    assert defect_splits.count("train") == 6 and defect_splits.count("val") == 2
    ok_splits = [r.split for r in p.images(label="ok")]
    assert (ok_splits.count("train"), ok_splits.count("val"), ok_splits.count("test")) == (18, 6, 6)
    first = {r.id: r.split for r in p.images()}

    # same seed, same split; another seed, another split
    assert p.assign_splits((0.6, 0.2, 0.2), seed=3, only_unassigned=False)
    assert {r.id: r.split for r in p.images()} == first
    p.assign_splits((0.6, 0.2, 0.2), seed=4, only_unassigned=False)
    assert {r.id: r.split for r in p.images()} != first

    # pinned images never move
    pinned = p.images(label="ok")[0]
    p.set_split(pinned.id, "test")
    for seed in range(5):
        p.assign_splits(seed=seed, only_unassigned=False)
        assert p.image(pinned.id).split == "test" and p.image(pinned.id).split_pinned

    # only_unassigned leaves existing assignments alone and places new images
    before = {r.id: r.split for r in p.images()}
    new = p.add_image(make_images(tmp_path / "new", 1, seed=9)[0], label="ok")
    assigned = p.assign_splits(seed=0)
    placed = p.image(new.id).split
    assert placed is not None and assigned == {"train": 0, "val": 0, "test": 0, placed: 1}
    assert all(p.image(i).split == s for i, s in before.items())
    assert p.counts()["unassigned"] == 0
    p.close()


def test_split_reproducible_across_projects(tmp_path):
    splits = []
    for name in ("a", "b"):
        p = _project_with_labels(tmp_path / name / "proj", 5, 15)
        p.assign_splits(seed=11)
        splits.append([r.split for r in p.images()])
        p.close()
    assert splits[0] == splits[1]


@pytest.mark.parametrize("n_def,expected", [(3, (1, 1, 1)), (2, (1, 1, 0)), (1, (1, 0, 0))])
def test_tiny_defect_class_reaches_every_split(tmp_path, n_def, expected):
    p = _project_with_labels(tmp_path / "proj", n_def, 8)
    p.assign_splits()
    d = [r.split for r in p.images(label="defective")]
    assert (d.count("train"), d.count("val"), d.count("test")) == expected
    p.close()


def test_bad_ratios(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        for bad in [(1, 2), (0, 0, 0), (-1, 1, 1), ("a", 1, 1)]:
            with pytest.raises(ProjectError, match="split ratios"):
                p.assign_splits(bad)


def test_not_a_project_and_create_twice(tmp_path):
    with pytest.raises(ProjectError, match="does not exist"):
        Project.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ProjectError, match="not a Defect Studio project"):
        Project.open(tmp_path / "plain", readonly=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ProjectError, match="it is a file"):
        Project.create(tmp_path / "file")
    Project.create(tmp_path / "proj").close()
    with pytest.raises(ProjectError, match="already a Defect Studio project"):
        Project.create(tmp_path / "proj")
    Project.create(tmp_path / "proj", exist_ok=True).close()
    Project.open_or_create(tmp_path / "proj").close()
    Project.open_or_create(tmp_path / "new").close()
    assert (tmp_path / "new" / "project.sqlite").is_file()


def test_damaged_database(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "project.sqlite").write_bytes(b"garbage, not sqlite" * 100)
    with pytest.raises(ProjectError, match="cannot be read"):
        Project.open(root)
    with pytest.raises(ProjectError, match="cannot be read"):
        Project.open(root, readonly=True)
    Project.create(tmp_path / "ok").close()  # and the lock of the failed open was released
    Project.open_or_create(tmp_path / "ok").close()


def test_schema_version_and_newer_schema_refused(tmp_path):
    root = tmp_path / "proj"
    Project.create(root).close()
    db = sqlite3.connect(root / "project.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(SCHEMA_VERSION),)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    for readonly in (False, True):
        with pytest.raises(ProjectError, match="newer|update Defect Studio"):
            Project.open(root, readonly=readonly)


def test_migrations_apply_in_order(tmp_path, monkeypatch):
    from defect_studio.project import schema

    root = tmp_path / "proj"
    with Project.create(root) as p:
        p.add_image(make_images(tmp_path / "src", 1)[0], label="ok")

    def v2_add_note(db):
        db.execute("ALTER TABLE images ADD COLUMN note TEXT NOT NULL DEFAULT ''")

    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + [v2_add_note])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    import defect_studio.project.store as store

    monkeypatch.setattr(store, "SCHEMA_VERSION", schema.SCHEMA_VERSION)
    with pytest.raises(ProjectError, match="older format"):
        Project.open(root, readonly=True)  # a reader cannot upgrade
    with Project.open(root) as p:
        assert p.images()[0].label == "ok"  # data kept through the migration
    db = sqlite3.connect(root / "project.sqlite")
    cols = [r[1] for r in db.execute("PRAGMA table_info(images)")]
    assert "note" in cols
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
        str(schema.SCHEMA_VERSION),)
    db.close()
    Project.open(root, readonly=True).close()


def test_readonly_project_refuses_writes(tmp_path):
    (src,) = make_images(tmp_path / "src", 1)
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(src)
    with Project.open(tmp_path / "proj", readonly=True) as r:
        assert r.readonly and r.image(rec.id) == rec
        for call in (lambda: r.set_label(rec.id, "ok"), lambda: r.add_image(src),
                     lambda: r.set_setting("x", 1), lambda: r.assign_splits()):
            with pytest.raises(ProjectError, match="read-only"):
                call()


def test_closed_project_and_lock_release(tmp_path):
    p = Project.create(tmp_path / "proj")
    with pytest.raises(ProjectInUseError, match="already open for writing in this process"):
        Project.open(tmp_path / "proj")
    p.close()
    p.close()
    with pytest.raises(ProjectError, match="closed"):
        p.counts()
    Project.open(tmp_path / "proj").close()
    q = Project.open(tmp_path / "proj")
    del q  # dropped without close(): the finalizer frees the lock
    import gc

    gc.collect()
    Project.open(tmp_path / "proj").close()


LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from defect_studio.project import Project
    p = Project.open(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()
    """
)


def test_single_writer_across_processes(tmp_path):
    root = tmp_path / "proj"
    with Project.create(root) as p:
        p.add_image(make_images(tmp_path / "src", 1)[0], label="ok")
    child = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(root)], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ProjectInUseError) as e:
            Project.open(root)
        msg = str(e.value)
        assert f"pid {child.pid}" in msg and "in use by another process" in msg
        assert "open read-only" in msg
        with Project.open(root, readonly=True) as r:  # readers need no lock
            assert r.counts()["ok"] == 1
        child.kill()  # SIGKILL: the OS drops the lock, nothing stale is left
        child.wait(timeout=10)
        with Project.open(root) as p:
            assert p.counts()["images"] == 1
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_settings_and_predictions(tmp_path):
    src = make_images(tmp_path / "src", 2)
    with Project.create(tmp_path / "proj") as p:
        a, b = (p.add_image(s).id for s in src)
        p.save_predictions("r1", [(a, 0.9, True), (b, 0.1, False)])
        p.save_predictions("r2", [(a, 0.2, False)])
        p.save_predictions("r1", [(a, 0.8, True)])  # replaces the run's rows
        assert p.predictions("r1") == {a: (pytest.approx(0.8), True)}
        assert p.predictions("r2") == {a: (pytest.approx(0.2), False)}
        with pytest.raises(ProjectError, match="not in the project"):
            p.save_predictions("r3", [(999, 0.5, True)])
        assert p.predictions("r3") == {}
        with pytest.raises(ProjectError, match="no valid score"):
            p.save_predictions("r1", [(b, float("nan"), False)])
        assert p.predictions("r1") == {a: (pytest.approx(0.8), True)}  # kept as it was
        with pytest.raises(ProjectError, match="cannot be stored"):
            p.set_setting("bad", object())


def test_runs(tmp_path):
    with Project.create(tmp_path / "proj") as p:
        assert p.runs() == [] and p.active_run() is None
        run = p.runs_dir / "20260101-000000"
        write_json_atomic(run / "config.json", {"model": "mffpa", "epochs": 5,
                                                "created": "2026-01-01T00:00:00Z"})
        write_json_atomic(run / "status.json", {"state": "finished", "epoch": 5})
        write_json_atomic(run / "metrics.json", {"ap": np.float32(0.75), "auc": 0.8})
        write_json_atomic(run / "threshold.json", {"threshold": 0.4, "source": "best_f1"})
        running = p.runs_dir / "20260102-000000"
        write_json_atomic(running / "config.json", {"model": {"name": "mixsup"},
                                                    "created": "2026-01-02T00:00:00Z"})
        write_json_atomic(running / "status.json", {"state": "running", "epoch": 1})
        broken = p.runs_dir / "zz-broken"
        broken.mkdir()
        (broken / "status.json").write_text("{not json")
        infos = p.runs()
        assert [r.id for r in infos] == ["20260101-000000", "20260102-000000", "zz-broken"]
        first = infos[0]
        assert isinstance(first, RunInfo)
        assert (first.state, first.model, first.epochs) == ("finished", "mffpa", 5)
        assert first.metrics["ap"] == pytest.approx(0.75) and first.threshold == 0.4
        assert (infos[1].state, infos[1].model, infos[1].epochs) == ("running", "mixsup", 1)
        assert infos[2].state == "damaged"
        assert read_run(run) == first and list_runs(p.runs_dir) == infos
        assert p.run("20260101-000000") == first
        with pytest.raises(ProjectError, match="no run 'nope'"):
            p.run("nope")
        with pytest.raises(ProjectError, match="invalid run id"):
            p.set_active_run("../etc")
        with pytest.raises(ProjectError, match="no run"):
            p.set_active_run("missing")
        p.set_active_run(first.id)
        assert p.active_run() == first.id
    with Project.open(tmp_path / "proj", readonly=True) as r:
        assert r.active_run() == first.id
    import shutil

    shutil.rmtree(run)
    with Project.open(tmp_path / "proj") as p:
        assert p.active_run() is None  # the folder is gone: no dangling active run
        p.set_active_run(None)
        assert p.get_setting("active_run") is None
    assert json.loads((running / "config.json").read_text())["model"]["name"] == "mixsup"


def test_find_image_paths_and_names(tmp_path):
    a = make_images(tmp_path / "a", 1)[0]
    b = make_images(tmp_path / "b", 1, seed=4)[0]  # same name, other content
    with Project.create(tmp_path / "proj") as p:
        ra = p.add_image(a, copy=False)
        rb = p.add_image(b, copy=True)
        assert p.find_image(str(a)) == ra and p.find_image(a) == ra
        assert p.find_image("images/part_000.png") == rb
        assert p.find_image(tmp_path / "proj" / "images" / "part_000.png") == rb
        # a file elsewhere with a known name is not "found" by its name
        elsewhere = make_images(tmp_path / "c", 1, seed=8)[0]
        assert p.find_image(str(elsewhere)) is None
        assert p.find_image("images/other.png") is None
        with pytest.raises(ProjectError, match="matches 2 images"):
            p.find_image("part_000.png")
        assert p.find_image("PART_000.PNG") is None  # names are matched exactly


def test_batch_is_one_transaction_and_failed_calls_undo_themselves(tmp_path):
    src = make_images(tmp_path / "src", 3)
    with Project.create(tmp_path / "proj") as p:
        with p.batch():
            first = p.add_image(src[0])
            with pytest.raises(MaskError):
                p.add_image(src[1], mask=np.ones((2, 2)))
            with pytest.raises(ProjectError):
                p.set_labels([(first.id, "ok"), (12345, "ok")])
            p.add_image(src[1], label="ok")
        assert [(r.label, r.name) for r in p.images()] == [
            ("unlabeled", "part_000.png"), ("ok", "part_001.png")]
        with pytest.raises(RuntimeError):
            with p.batch():
                p.add_image(src[2])
                p.set_label(first.id, "defective")
                raise RuntimeError("import cancelled")
        assert len(p.images()) == 2 and p.image(first.id).label == "unlabeled"
        # the copy made by the undone import is gone again
        assert sorted(x.name for x in p.images_dir.iterdir()) == ["part_000.png", "part_001.png"]
        mask = np.zeros((20, 24), np.uint8)
        mask[1, 1] = 1
        with pytest.raises(RuntimeError):
            with p.batch():
                p.add_image(src[2], mask=mask)
                raise RuntimeError("import cancelled")
        assert list(p.masks_dir.iterdir()) == [] and len(p.images()) == 2
        rec = p.add_image(src[2])
        assert rec.name == "part_002.png" and p.image_path(rec).is_file()
        assert not rec.has_mask and p.load_mask(rec.id) is None


def test_disk_full_while_saving_a_mask_changes_nothing(tmp_path, monkeypatch):
    import errno

    import defect_studio.io.images as imio

    (src,) = make_images(tmp_path / "src", 1)
    with Project.create(tmp_path / "proj") as p:
        rec = p.add_image(src, label="ok")

        def full(path, array):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(imio, "write_png_atomic", full)
        mask = np.zeros((20, 24), np.uint8)
        mask[0, 0] = 1
        with pytest.raises(ProjectError, match="No space left on device"):
            p.save_mask(rec.id, mask)
        assert p.image(rec.id) == rec  # label and has_mask as before
        monkeypatch.undo()
        assert p.save_mask(rec.id, mask).label == "defective"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can write anywhere")
def test_read_only_folder_opens_read_only_only(tmp_path):
    root = tmp_path / "proj"
    with Project.create(root) as p:
        p.add_image(make_images(tmp_path / "src", 1)[0], label="ok")
    os.chmod(root, 0o555)
    try:
        with pytest.raises(ProjectError, match="open it read-only"):
            Project.open(root)
        with Project.open(root, readonly=True) as r:
            assert r.counts()["ok"] == 1
    finally:
        os.chmod(root, 0o755)


def test_delete_mask_inside_a_batch_waits_for_the_commit(tmp_path):
    src = make_images(tmp_path / "src", 2)
    mask = np.zeros((20, 24), np.uint8)
    mask[2, 2] = 1
    with Project.create(tmp_path / "proj") as p:
        a, b = (p.add_image(s, mask=mask).id for s in src)
        with pytest.raises(RuntimeError):
            with p.batch():
                p.delete_mask(a)
                raise RuntimeError("cancelled")
        assert p.image(a).has_mask and p.load_mask(a) is not None  # file kept
        with p.batch():
            p.delete_mask(a)
            p.save_mask(a, mask)  # painted again in the same batch
            p.delete_mask(b)
        assert p.load_mask(a).sum() == 255
        assert not p.image(b).has_mask and not p.mask_path(b).exists()
