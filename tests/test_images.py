"""defect_studio.io.images: every supported kind of image file, EXIF orientation, bad files,
masks."""

import os
import struct

import cv2
import numpy as np
import pytest

from defect_studio.errors import ImageReadError, MaskError
from defect_studio.io import images as imio
from defect_studio.io.atomic import TEMP_MARKER


def _rng():
    return np.random.default_rng(0)


def _write_cv2(path, bgr_or_gray):
    """Write with OpenCV directly (BGR order), so the reader is checked independently."""
    ok, buf = cv2.imencode(os.path.splitext(str(path))[1], bgr_or_gray)
    assert ok
    buf.tofile(str(path))


LOSSLESS_KINDS = [
    # (extension, shape written, dtype)
    (".png", (20, 30), np.uint8),
    (".png", (20, 30), np.uint16),
    (".png", (20, 30, 3), np.uint8),
    (".png", (20, 30, 3), np.uint16),
    (".tif", (20, 30), np.uint8),
    (".tif", (20, 30), np.uint16),
    (".tiff", (20, 30, 3), np.uint8),
    (".tiff", (20, 30, 3), np.uint16),
    (".bmp", (20, 30), np.uint8),
    (".bmp", (20, 30, 3), np.uint8),
]


@pytest.mark.parametrize("ext,shape,dtype", LOSSLESS_KINDS)
def test_lossless_round_trip(tmp_path, ext, shape, dtype):
    hi = 65535 if dtype == np.uint16 else 255
    bgr = _rng().integers(0, hi + 1, size=shape, dtype=np.int64).astype(dtype)
    path = tmp_path / f"img{ext}"
    _write_cv2(path, bgr)
    img = imio.read_image(path)
    assert img.dtype == dtype
    assert img.shape == shape
    expected = bgr[:, :, ::-1] if bgr.ndim == 3 else bgr  # the reader returns RGB
    np.testing.assert_array_equal(img, expected)
    meta = imio.image_info(path)
    assert (meta.width, meta.height) == (30, 20)
    assert meta.channels == (1 if len(shape) == 2 else 3)
    assert meta.bit_depth == (16 if dtype == np.uint16 else 8)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgba_drops_alpha(tmp_path, dtype):
    hi = 65535 if dtype == np.uint16 else 255
    bgra = _rng().integers(0, hi + 1, size=(16, 12, 4), dtype=np.int64).astype(dtype)
    bgra[..., 3] = 0  # fully transparent: the colour must still come through, unblended
    path = tmp_path / "rgba.png"
    _write_cv2(path, bgra)
    img = imio.read_image(path)
    assert img.shape == (16, 12, 3) and img.dtype == dtype
    np.testing.assert_array_equal(img, bgra[:, :, 2::-1])


@pytest.mark.parametrize("color", [False, True])
def test_jpeg(tmp_path, color):
    shape = (24, 32, 3) if color else (24, 32)
    src = np.full(shape, 100, np.uint8)
    if color:
        src[..., 0] = 200  # blue in BGR
    path = tmp_path / "a.jpg"
    _write_cv2(path, src)
    img = imio.read_image(path)
    assert img.shape == shape and img.dtype == np.uint8
    if color:
        assert abs(int(img[..., 2].mean()) - 200) < 4  # blue is the last channel in RGB
        assert abs(int(img[..., 0].mean()) - 100) < 4


def test_unicode_path(tmp_path):
    folder = tmp_path / "Prüfteile 測試"
    folder.mkdir()
    path = folder / "bild_ü_测试.png"
    arr = _rng().integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    imio.write_png_atomic(path, arr)
    np.testing.assert_array_equal(imio.read_image(path), arr)
    assert imio.image_info(str(path)).width == 9


# --- EXIF orientation -------------------------------------------------------------------


def _exif_app1(orientation: int, big_endian: bool = False) -> bytes:
    """An APP1 segment holding one IFD with the Orientation tag (0x0112, SHORT)."""
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", 1)  # one entry
    tiff += struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    tiff += struct.pack(e + "I", 0)  # no next IFD
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


REFERENCE = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.rot90(np.fliplr(a), 1),
    6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise to display
    7: lambda a: np.rot90(np.fliplr(a), -1),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("big_endian", [False, True])
def test_exif_orientation(tmp_path, orientation, big_endian):
    # a wide image whose left half is bright: easy to see where it went
    bgr = np.zeros((16, 40, 3), np.uint8)
    bgr[:, :20] = 255
    bgr[:4, :, 1] = 120
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    plain = buf.tobytes()
    (tmp_path / "plain.jpg").write_bytes(plain)
    base = imio.read_image(tmp_path / "plain.jpg")
    tagged = plain[:2] + _exif_app1(orientation, big_endian) + plain[2:]
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(tagged)
    assert imio.jpeg_orientation(tagged) == orientation
    img = imio.read_image(path)
    np.testing.assert_array_equal(img, REFERENCE[orientation](base))
    if orientation == 6:  # rotated clockwise: the bright left half is now on top
        assert img.shape == (40, 16, 3)
        assert img[:20].mean() > 200 and img[20:].mean() < 60
    meta = imio.image_info(path)
    assert (meta.width, meta.height) == ((16, 40) if orientation >= 5 else (40, 16))


# --- bad files --------------------------------------------------------------------------


def _good_bytes(ext):
    arr = _rng().integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, arr)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.png", b"", "empty"),
        ("text.png", b"this is not an image\n" * 5, "not an image"),
        ("noise.jpg", bytes(range(256)) * 4, "not an image"),
        ("cut.png", _good_bytes(".png")[:200], "corrupt or truncated"),
        ("cut.jpg", _good_bytes(".jpg")[:-40], "truncated"),
        ("cut.bmp", _good_bytes(".bmp")[:500], "corrupt or truncated"),
        ("cut.tif", _good_bytes(".tif")[:60], "corrupt or truncated"),
        ("garbled.png", _good_bytes(".png")[:8] + b"\x00" * 400, "corrupt or truncated"),
    ],
)
def test_bad_files_raise_image_read_error(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as e:
        imio.read_image(path)
    assert name in str(e.value)
    assert reason in str(e.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        imio.read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        imio.read_image(tmp_path)


# --- masks, writing, scaling ------------------------------------------------------------


def test_read_mask_threshold_and_shape(tmp_path):
    m = np.zeros((10, 12), np.uint8)
    m[2:4, 3:6] = 255
    m[5, 5] = 100  # below the default threshold of 128
    path = tmp_path / "m.png"
    imio.write_png_atomic(path, m)
    mask = imio.read_mask(path, shape=(10, 12, 3))
    assert mask.dtype == bool and mask.shape == (10, 12)
    assert mask.sum() == 6 and not mask[5, 5]
    assert imio.read_mask(path, threshold=50)[5, 5]
    with pytest.raises(MaskError) as e:
        imio.read_mask(path, shape=(20, 24))
    assert "12x10" in str(e.value) and "24x20" in str(e.value)


def test_read_mask_16bit_and_color(tmp_path):
    m16 = np.zeros((6, 7), np.uint16)
    m16[1, 1] = 65535
    m16[2, 2] = 100  # tiny in 16-bit terms: not a defect
    imio.write_png_atomic(tmp_path / "m16.png", m16)
    assert imio.read_mask(tmp_path / "m16.png").sum() == 1
    color = np.zeros((6, 7, 3), np.uint8)
    color[3, 4] = (255, 0, 0)  # a red annotation
    imio.write_png_atomic(tmp_path / "c.png", color)
    assert imio.read_mask(tmp_path / "c.png")[3, 4]


def test_write_png_atomic_leaves_no_temp_and_bool(tmp_path):
    mask = np.zeros((5, 5), bool)
    mask[1, 2] = True
    path = imio.write_png_atomic(tmp_path / "sub" / "x.png", mask)
    assert path.exists()
    assert not [p for p in os.listdir(path.parent) if TEMP_MARKER in p]
    back = imio.read_image(path)
    assert back.dtype == np.uint8 and back[1, 2] == 255 and back.sum() == 255
    assert (path.stat().st_mode & 0o777) == 0o644
    imio.write_png_atomic(path, np.zeros((5, 5), np.uint8))  # overwrite in place
    assert imio.read_image(path).sum() == 0


def test_to_float01():
    a8 = np.array([[0, 255]], np.uint8)
    a16 = np.array([[0, 65535, 32768]], np.uint16)
    np.testing.assert_allclose(imio.to_float01(a8), [[0.0, 1.0]])
    f16 = imio.to_float01(a16)
    assert f16.dtype == np.float32
    np.testing.assert_allclose(f16, [[0.0, 1.0, 32768 / 65535]], rtol=1e-6)
    np.testing.assert_allclose(imio.to_float01(np.array([-1.0, 0.5, 2.0])), [0.0, 0.5, 1.0])


def test_float_tiff_is_refused_with_reason(tmp_path):
    path = tmp_path / "float.tif"
    ok, buf = cv2.imencode(".tif", np.zeros((4, 4), np.float32))
    assert ok
    path.write_bytes(buf.tobytes())
    with pytest.raises(ImageReadError, match="unsupported sample type float32"):
        imio.read_image(path)


@pytest.mark.parametrize("mode,expected_shape", [("P", (6, 5, 3)), ("LA", (6, 5)),
                                                 ("I;16", (6, 5))])
def test_palette_gray_alpha_and_16bit_gray_from_pillow(tmp_path, mode, expected_shape):
    Image = pytest.importorskip("PIL.Image")
    if mode == "P":
        im = Image.new("P", (5, 6))
        im.putpalette([255, 0, 0] + [0, 0, 0] * 255)  # index 0 = red
    elif mode == "LA":
        im = Image.new("LA", (5, 6), (77, 10))
    else:
        im = Image.new("I;16", (5, 6), 40000)
    path = tmp_path / f"{mode.replace(';', '')}.png"
    im.save(path)
    img = imio.read_image(path)
    assert img.shape == expected_shape
    if mode == "P":
        assert tuple(img[0, 0]) == (255, 0, 0)  # RGB order, palette expanded
    elif mode == "LA":
        assert img.dtype == np.uint8 and img[0, 0] == 77  # alpha dropped
    else:
        assert img.dtype == np.uint16 and img[0, 0] == 40000
