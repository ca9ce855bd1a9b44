"""The real magnetic-tile data set imports with the right counts (skips when absent)."""

from __future__ import annotations

import json

import pytest

from defect_studio.cli import main
from defect_studio.project.store import Project

pytestmark = [pytest.mark.dataset, pytest.mark.slow]


def test_import_magnetic_tile(magnetic_tile_dir, tmp_path, capsys):
    proj = tmp_path / "mt"
    rc = main(["import", str(magnetic_tile_dir), "--project", str(proj), "--link", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert report["format"] == "pairs"
    assert report["imported"] == 1344 and report["skipped"] == []
    assert report["by_label"] == {"ok": 952, "defective": 392}

    assert main(["info", "--project", str(proj), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 1344
    assert info["defective"] == 392 and info["ok"] == 952 and info["unlabeled"] == 0
    assert info["unassigned"] == 0
    with Project.open(proj, readonly=True) as p:
        # 4 MT_Uneven masks are all zero: those defective images are kept without a mask
        # (an empty mask would say "no defect anywhere"), as image-level defects
        assert len(p.images(label="defective", has_mask=True)) == 388
        unmasked = p.images(label="defective", has_mask=False)
        assert len(unmasked) == 4 and all("MT_Uneven" in r.path for r in unmasked)
        # MT_Free masks are all zero: OK images with clean masks
        assert len(p.images(label="ok", has_mask=True)) == 952
        crack = [r for r in p.images(label="defective") if "MT_Crack" in r.path]
        assert len(crack) == 57
        assert all(p.load_mask(r.id).any() for r in crack[:5])
