"""Fault matrix, "resources" rows: pixel limit before decoding, regular files only."""

from __future__ import annotations

import os
import struct
import threading
import zlib

import pytest
from fault_helpers import png

from defect_studio.errors import ImageReadError
from defect_studio.io import images as imio
from defect_studio.io.importers import import_dataset
from defect_studio.project import Project


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height: just the IHDR and a little data (~the 2.6 MB bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def test_huge_png_refused_from_its_header_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(30000, 30000))

    def no_decode(*a, **k):
        raise AssertionError("decoded a 900 MP image")

    monkeypatch.setattr(imio.cv2, "imdecode", no_decode)
    with pytest.raises(ImageReadError, match=r"\(900 MP\), more than the limit of 100 MP"):
        imio.read_image(bomb)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    f = png(tmp_path / "a.png", size=32)
    monkeypatch.setattr(imio, "MAX_PIXELS", 1000)
    with pytest.raises(ImageReadError, match="DEFECT_STUDIO_MAX_PIXELS"):
        imio.read_image(f)
    monkeypatch.setattr(imio, "MAX_PIXELS", 100_000_000)
    assert imio.read_image(f).shape == (32, 32, 3)


@pytest.mark.parametrize("ext", [".jpg", ".bmp", ".tif", ".webp", ".png"])
def test_header_sizes_of_every_format(ext):
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(ext, np.zeros((21, 37, 3), np.uint8))
    assert ok and imio.header_size(buf.tobytes()) == (37, 21)


def test_import_skips_the_bomb_and_keeps_the_rest(tmp_path):
    src = tmp_path / "src" / "OK"
    src.mkdir(parents=True)
    (src / "bomb.png").write_bytes(_png_header_only(30000, 30000))
    png(src / "fine.png", seed=1)
    with Project.create(tmp_path / "p") as p:
        report = import_dataset(tmp_path / "src", p)
        assert [r.name for r in p.images()] == ["fine.png"]
    assert any("more than the limit" in r for _, r in report.skipped)


def test_dev_zero_symlink_is_not_read(tmp_path):
    link = tmp_path / "z.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(ImageReadError, match="not a regular file"):
        imio.read_bytes(link)


def test_fifo_never_blocks(tmp_path):
    fifo = tmp_path / "p.png"
    os.mkfifo(fifo)
    result = {}

    def read():
        try:
            imio.read_bytes(fifo)
        except ImageReadError as e:
            result["error"] = str(e)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert "not a regular file" in result["error"]


def test_import_folder_with_fifo_and_device_link_finishes(tmp_path):
    src = tmp_path / "src" / "OK"
    src.mkdir(parents=True)
    os.mkfifo(src / "p.png")
    os.mkfifo(src / "x.json")  # format detection peeks into JSON files
    (src / "z.png").symlink_to("/dev/zero")
    png(src / "real.png", seed=3)
    done = {}

    def run():
        with Project.create(tmp_path / "proj") as p:
            import_dataset(tmp_path / "src", p)
            done["names"] = [r.name for r in p.images()]

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the import hung on a FIFO"
    assert done["names"] == ["real.png"]


def test_file_size_cap(tmp_path, monkeypatch):
    f = png(tmp_path / "a.png")
    monkeypatch.setattr(imio, "MAX_FILE_BYTES", 10)
    with pytest.raises(ImageReadError, match="more than the limit"):
        imio.read_bytes(f)


def test_webp_is_one_image_type_everywhere():
    from defect_studio.io.importers.base import IMAGE_EXTS, is_image

    assert ".webp" in imio.IMAGE_EXTENSIONS and set(imio.IMAGE_EXTENSIONS) == set(IMAGE_EXTS)
    assert imio.is_image_file("a.webp") and is_image("a.WEBP")


def test_thumbnails_decode_jpegs_at_reduced_size(tmp_path, monkeypatch):
    import cv2
    import numpy as np

    img = np.random.default_rng(0).integers(0, 255, (800, 640, 3), dtype=np.uint8)
    f = tmp_path / "big.jpg"
    f.write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    seen = []
    real = cv2.imdecode

    def spy(buf, flags):
        seen.append(flags)
        return real(buf, flags)

    monkeypatch.setattr(imio.cv2, "imdecode", spy)
    small = imio.read_image_reduced(f, 96)
    assert small.shape == (200, 160, 3)  # 1/4 (1/8 would be under 96): not 512000 pixels
    assert seen == [cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION]


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1e9", ""])
def test_bad_limit_settings_fall_back_to_the_defaults(monkeypatch, value):
    monkeypatch.setenv("DEFECT_STUDIO_MAX_PIXELS", value)
    assert imio.env_int("DEFECT_STUDIO_MAX_PIXELS", 100_000_000) == 100_000_000
    monkeypatch.setenv("DEFECT_STUDIO_MAX_PIXELS", "2000")
    assert imio.env_int("DEFECT_STUDIO_MAX_PIXELS", 100_000_000) == 2000
