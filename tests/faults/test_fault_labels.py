"""Fault trial of issue 16 (part 3): format detection never overrides the folder names'
labels (item 7). An OK/ folder holding a.png and a.jpg (one part saved twice) used to be
detected as image + mask pairs, and a.jpg was imported defective with a.png as its mask."""

from __future__ import annotations

import numpy as np
import pytest
from fault_helpers import cli

from defect_studio.io.images import write_png_atomic
from defect_studio.project import Project


def _twice_saved(src, *, with_ng=True):
    import cv2

    (src / "OK").mkdir(parents=True)
    photo = np.random.default_rng(3).integers(0, 255, (32, 32), np.uint8)
    cv2.imwrite(str(src / "OK" / "a.png"), photo)
    cv2.imwrite(str(src / "OK" / "a.jpg"), photo)
    if with_ng:
        (src / "NG").mkdir()
        cv2.imwrite(str(src / "NG" / "b.png"), 255 - photo)
    return src


def test_cli_auto_refuses_and_names_both_formats(tmp_path):
    src = _twice_saved(tmp_path / "src")
    r = cli("import", str(src), "--project", str(tmp_path / "proj"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "OK/a.png beside OK/a.jpg" in r.stderr
    assert "--format folders" in r.stderr and "--format pairs" in r.stderr
    assert not (tmp_path / "proj").exists()  # refused before anything was created


def test_folders_format_imports_the_part_ok(tmp_path):
    from defect_studio.io.importers import import_dataset

    src = _twice_saved(tmp_path / "src")
    with Project.create(tmp_path / "proj") as p:
        report = import_dataset(src, p, fmt="folders")
        assert report.by_label == {"ok": 2, "defective": 1}  # a.png and a.jpg: both good
        assert p.counts()["masked"] == 0


def test_explicit_pairs_never_turn_an_ok_folder_image_defective(tmp_path):
    from defect_studio.io.importers import import_dataset

    src = _twice_saved(tmp_path / "src")
    with Project.create(tmp_path / "proj") as p:
        report = import_dataset(src, p, fmt="pairs")
        recs = {p.image_path(r).suffix: r for r in p.images() if r.label != "defective"}
        assert recs[".jpg"].label == "unlabeled" and not recs[".jpg"].has_mask
        assert p.counts()["defective"] == 1  # only NG/b.png
    (where, why), = report.skipped
    assert where.endswith("OK/a.png") and why.startswith("conflict: ")
    assert "folder named OK" in why and "defect pixels" in why


@pytest.mark.parametrize("mask_value", [0, None])
def test_real_masks_in_ok_folders_are_still_pairs(tmp_path, mask_value):
    """The magnetic-tile layout (MT_Free/NAME.jpg + an all-zero NAME.png) stays "pairs"; an
    unreadable .png beside a .jpg in an OK folder is ambiguous."""
    import cv2

    from defect_studio.io.importers import AmbiguousFormatError, detect_format, import_dataset

    src = tmp_path / "src"
    (src / "MT_Free").mkdir(parents=True)
    (src / "MT_Crack").mkdir()
    img = np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8)
    cv2.imwrite(str(src / "MT_Free" / "x.jpg"), img)
    cv2.imwrite(str(src / "MT_Crack" / "y.jpg"), 255 - img)
    crack = np.zeros((32, 32), np.uint8)
    crack[4:9, 4:20] = 255
    write_png_atomic(src / "MT_Crack" / "y.png", crack)
    if mask_value is None:
        (src / "MT_Free" / "x.png").write_bytes(b"\x89PNG truncated")
        with pytest.raises(AmbiguousFormatError, match="folders.*pairs"):
            detect_format(src)
        return
    write_png_atomic(src / "MT_Free" / "x.png", np.full((32, 32), mask_value, np.uint8))
    assert detect_format(src) == "pairs"
    with Project.create(tmp_path / "proj") as p:
        import_dataset(src, p)
        assert p.counts()["ok"] == 1 and p.counts()["defective"] == 1
        assert p.counts()["masked"] == 2


def test_a_photo_beside_its_jpeg_is_not_taken_for_a_mask_anywhere(tmp_path):
    """Outside OK folders too: a.png that is a photo (not 0/255) beside a.jpg would become a
    meaningless mask that makes the part defective; "auto" asks instead."""
    from defect_studio.io.importers import AmbiguousFormatError, detect_format

    src = _twice_saved(tmp_path / "src", with_ng=False)
    (src / "OK").rename(src / "parts")  # no label in the folder name
    with pytest.raises(AmbiguousFormatError, match="looks like a photo, not a mask"):
        detect_format(src)
