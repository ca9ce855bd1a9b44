"""Labels and masks never contradict each other, whatever the order of label and mask calls."""

import random

import numpy as np
import pytest
from test_store import make_images

from defect_studio.errors import ProjectError
from defect_studio.project import Project


def _check_invariant(p: Project) -> None:
    rows = p._query("SELECT id, label, has_mask, mask_pixels FROM images")
    for image_id, label, has_mask, pixels in rows:
        if pixels > 0:
            assert label == "defective" and has_mask, (image_id, label, has_mask, pixels)
        if label == "defective" and has_mask:
            assert pixels > 0, f"defective image {image_id} keeps an empty mask"
        assert not (not has_mask and pixels), image_id
        assert p.mask_path(image_id).exists() == bool(has_mask), image_id


def test_clearing_the_mask_of_a_defective_image_deletes_it(tmp_path):
    src = make_images(tmp_path / "src", 2)
    with Project.create(tmp_path / "proj") as p:
        a = p.add_image(src[0]).id
        m = np.zeros((20, 24), np.uint8)
        m[2:5, 2:5] = 255
        assert p.save_mask(a, m).label == "defective"
        rec = p.save_mask(a, np.zeros((20, 24), np.uint8))  # Ctrl+Delete on the canvas
        assert rec.label == "defective" and not rec.has_mask
        assert not p.mask_path(a).exists()
        assert p.counts()["masked"] == 0
        # OK is allowed again, and gives no "OK with mask" image
        assert p.set_label(a, "ok").has_mask is False
        # a clean mask on an OK image stays (imported "no defect here" masks) ...
        assert p.save_mask(a, np.zeros((20, 24), np.uint8)).has_mask
        # ... but labelling it defective drops it: an empty mask must not say "no defect"
        rec = p.set_label(a, "defective")
        assert rec.label == "defective" and not rec.has_mask and not p.mask_path(a).exists()
        _check_invariant(p)


def test_refusal_names_the_file(tmp_path):
    src = make_images(tmp_path / "src", 1)
    with Project.create(tmp_path / "proj") as p:
        a = p.add_image(src[0]).id
        m = np.zeros((20, 24), np.uint8)
        m[0, 0] = 1
        p.save_mask(a, m)
        with pytest.raises(ProjectError, match="part_000.png"):
            p.set_label(a, "ok")


def test_random_label_and_mask_sequences_never_contradict(tmp_path):
    src = make_images(tmp_path / "src", 4)
    rng = random.Random(7)
    full = np.zeros((20, 24), np.uint8)
    full[5:9, 5:9] = 255
    empty = np.zeros((20, 24), np.uint8)
    with Project.create(tmp_path / "proj") as p:
        ids = [p.add_image(s).id for s in src]
        for _step in range(120):
            i = rng.choice(ids)
            op = rng.choice(("ok", "defective", "unlabeled", "paint", "clear", "delete", "batch"))
            try:
                if op == "paint":
                    p.save_mask(i, full)
                elif op == "clear":
                    p.save_mask(i, empty)
                elif op == "delete":
                    p.delete_mask(i)
                elif op == "batch":
                    with p.batch():
                        p.save_mask(i, full)
                        p.save_mask(i, empty)
                        p.set_label(i, rng.choice(("ok", "defective")))
                else:
                    p.set_label(i, op)
            except ProjectError as e:  # refused (mask says defective): nothing changed
                assert "delete its mask" in str(e)
            _check_invariant(p)
