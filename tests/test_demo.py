"""The demo generator: determinism, labels and masks, splits, the project, the CLI."""

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from defect_studio.demo import (
    DemoSettingsError,
    default_demo_dir,
    generate_demo_images,
    generate_demo_project,
    load_recipe,
)
from defect_studio.errors import ProjectError, UserError
from defect_studio.io.images import read_image
from defect_studio.project import Project

ROOT = Path(__file__).resolve().parents[1]


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted((root / "images").glob("*.png"))}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate_demo_project(tmp_path / name, count=12, size=(64, 48), seed=seed,
                              defect_rate=0.3).close()
    a, b, c = (_digests(tmp_path / n) for n in "abc")
    assert len(a) == 12 and a == b
    assert sum(a[k] != c[k] for k in a) == 12
    masks = [sorted((tmp_path / n / "masks").iterdir()) for n in "ab"]
    assert [p.read_bytes() for p in masks[0]] == [p.read_bytes() for p in masks[1]]


def test_images_are_rgb_at_size_and_varied():
    items = list(generate_demo_images(count=40, size=(80, 64), seed=2, defect_rate=0.2))
    assert all(it.image.shape == (64, 80, 3) and it.image.dtype == np.uint8 for it in items)
    assert len({it.texture for it in items}) >= 3  # several surface kinds
    means = [float(it.image.mean()) for it in items]
    assert max(means) - min(means) > 20  # brightness varies between parts
    kinds = {k for it in items for k in it.defects}
    assert len(kinds) >= 2


@pytest.mark.parametrize("count,rate", [(100, 0.15), (40, 0.25), (10, 0.0)])
def test_defect_rate_and_masks_match_labels(count, rate):
    items = list(generate_demo_images(count=count, size=(48, 48), seed=1, defect_rate=rate))
    n_bad = sum(it.defective for it in items)
    assert n_bad == round(count * rate)
    for it in items:
        if it.defective:
            assert it.mask.shape == (48, 48) and it.mask.dtype == np.uint8
            assert set(np.unique(it.mask)) == {0, 255}
            assert it.defects
        else:
            assert it.mask is None and not it.defects


def test_defects_change_the_pixels_under_the_mask():
    """The mask marks where the image visibly changed: painting a defect on an image
    leaves the pixels outside its (slightly grown) mask nearly untouched."""
    from defect_studio.demo import render_demo_image

    recipe = load_recipe()
    for i in range(12):
        ok = render_demo_image(i, False, (96, 96), 4, recipe)
        bad = render_demo_image(i, True, (96, 96), 4, recipe)
        diff = np.abs(bad.image.astype(int) - ok.image.astype(int)).max(axis=2)
        inside = bad.mask > 0
        assert diff[inside].mean() > 8, (i, bad.defects)
        grown = np.zeros_like(inside)
        ys, xs = np.nonzero(inside)
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                grown[np.clip(ys + dy, 0, 95), np.clip(xs + dx, 0, 95)] = True
        assert np.percentile(diff[~grown], 99) <= 12, (i, bad.defects)


def test_project_labels_masks_splits(demo_project_dir):
    with Project.open(demo_project_dir) as p:
        c = p.counts()
        assert c["images"] == 48 and c["defective"] == 12 and c["ok"] == 36
        assert c["masked"] == 12 and c["unlabeled"] == 0 and c["unassigned"] == 0
        recs = p.images()
        for rec in recs:
            assert rec.label_source == "import"
            assert not Path(rec.path).is_absolute() and rec.path.startswith("images/")
            assert rec.has_mask == (rec.label == "defective")
            if rec.has_mask:
                m = p.load_mask(rec.id)
                assert m.shape == (rec.height, rec.width) == (64, 64) and m.any()
        # stratified: every split has both classes, in about the overall proportion
        for split in ("train", "val", "test"):
            labels = [r.label for r in recs if r.split == split]
            assert "defective" in labels and "ok" in labels
        train = [r for r in recs if r.split == "train"]
        share = sum(r.label == "defective" for r in train) / len(train)
        assert 0.18 <= share <= 0.32


def test_project_can_be_moved(tmp_path):
    generate_demo_project(tmp_path / "a", count=6, size=(40, 40), seed=0, defect_rate=0.5).close()
    (tmp_path / "a").rename(tmp_path / "b")
    with Project.open(tmp_path / "b", readonly=True) as p:
        for rec in p.images():
            assert read_image(p.image_path(rec)).shape == (40, 40, 3)


def test_refuses_non_empty_folder_and_full_project(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ProjectError, match="not empty"):
        generate_demo_project(other, count=4, size=(32, 32))
    assert [f.name for f in other.iterdir()] == ["keep.txt"]

    generate_demo_project(tmp_path / "p", count=4, size=(32, 32)).close()
    with pytest.raises(ProjectError, match="already a project with 4 images"):
        generate_demo_project(tmp_path / "p", count=4, size=(32, 32))

    Project.create(tmp_path / "empty").close()  # an empty project is filled
    with generate_demo_project(tmp_path / "empty", count=4, size=(32, 32)) as p:
        assert p.counts()["images"] == 4


@pytest.mark.parametrize("kwargs,match", [
    (dict(count=0), "count"),
    (dict(size=(8, 64)), "size"),
    (dict(defect_rate=1.5), "defect rate"),
])
def test_bad_settings_are_user_errors_and_create_nothing(tmp_path, kwargs, match):
    with pytest.raises(DemoSettingsError, match=match):
        generate_demo_project(tmp_path / "p", **kwargs)
    assert not (tmp_path / "p").exists()


def test_failure_midway_removes_the_new_folder(tmp_path):
    def stop(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_demo_project(tmp_path / "p", count=8, size=(32, 32), progress=stop)
    assert not (tmp_path / "p").exists()


def test_progress_reports_every_image(tmp_path):
    seen = []
    generate_demo_project(tmp_path / "p", count=5, size=(32, 32),
                          progress=lambda d, t: seen.append((d, t))).close()
    assert seen == [(i, 5) for i in range(1, 6)]


def test_broken_recipe_is_reported(tmp_path):
    bad = json.loads((ROOT / "resources" / "demo_recipe.json").read_text())
    bad["defects"]["dent"] = {"weight": 1}
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(UserError, match="unknown defect kind 'dent'"):
        load_recipe(path)
    path.write_text("{not json")
    with pytest.raises(UserError, match="cannot be read"):
        load_recipe(path)


def test_default_demo_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_demo_dir() == tmp_path / "DefectStudio" / "demo"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_demo_dir() == Path.home() / ".local" / "share" / "DefectStudio" / "demo"


def test_session_fixture_size_is_fast(tmp_path):
    started = time.perf_counter()
    generate_demo_project(tmp_path / "p", count=48, size=(64, 64), seed=1,
                          defect_rate=0.25).close()
    # ~0.3 s alone; the bound leaves room for a machine busy with other tests
    assert time.perf_counter() - started < 4.0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "defect_studio", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_demo(tmp_path):
    r = _cli("demo", "--project", str(tmp_path / "d"), "--count", "20", "--size", "64x64",
             "--seed", "3", "--defect-rate", "0.2")
    assert r.returncode == 0, r.stderr
    assert "images     20" in r.stdout and "defective  4" in r.stdout
    with Project.open(tmp_path / "d", readonly=True) as p:
        assert p.counts()["defective"] == 4
        assert p.images()[0].width == 64

    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"x")
    r = _cli("demo", "--project", str(other), "--count", "20", "--size", "64x64")
    assert r.returncode == 2 and "not empty and not a Defect Studio project" in r.stderr
    assert "Traceback" not in r.stderr

    r = _cli("demo", "--project", str(tmp_path / "e"), "--size", "64by64")
    assert r.returncode == 2 and "WIDTHxHEIGHT" in r.stderr
