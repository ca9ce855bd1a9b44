"""Reading and writing images and masks.

Every image in Defect Studio is read through `read_image`, which returns the same
layout whatever the file: HxW (gray) or HxWx3 RGB, uint8 or uint16, with the JPEG
EXIF orientation applied. Files are read as bytes (np.fromfile) and decoded in
memory, which also makes non-ASCII paths work on every platform.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path


def env_int(name: str, default: int) -> int:
    """A positive integer from the environment; `default` when unset or not one."""
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


# Pixel and file-size limits (checked before decoding; env vars make them configurable).
MAX_PIXELS = env_int("DEFECT_STUDIO_MAX_PIXELS", 100_000_000)
MAX_FILE_BYTES = env_int("DEFECT_STUDIO_MAX_FILE_BYTES", 1 << 30)
# OpenCV's own limit, a backstop for formats whose header we do not parse
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import cv2  # noqa: E402 - after the limit above
import numpy as np  # noqa: E402

from defect_studio.errors import ImageReadError, MaskError  # noqa: E402
from defect_studio.io.atomic import atomic_write_bytes  # noqa: E402

# The one list of image file types (import, predict, review, folders).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# ANYCOLOR keeps gray as gray and drops alpha; ANYDEPTH keeps 16 bit. We apply the
# EXIF orientation ourselves, so OpenCV must not (its behaviour differs by flag and version).
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR | cv2.IMREAD_IGNORE_ORIENTATION


@dataclass(frozen=True)
class ImageMeta:
    """Size and sample format of an image as read_image returns it."""

    width: int
    height: int
    channels: int
    bit_depth: int


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the supported image extensions."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def read_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The file's bytes, or ImageReadError naming the file and why it cannot be read.

    Only regular files are read (a FIFO, device or socket is refused without blocking:
    a `/dev/zero` symlink named z.png, a FIFO named p.png), at most `max_bytes`
    (default MAX_FILE_BYTES)."""
    path = Path(path)
    limit = MAX_FILE_BYTES if max_bytes is None else max_bytes
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ImageReadError(f"cannot read image '{path}': not a regular file "
                                     "(a device, FIFO or socket)")
            if st.st_size > limit:
                raise ImageReadError(
                    f"cannot read image '{path}': the file is {st.st_size / 2**20:.0f} MB, "
                    f"more than the limit of {limit / 2**20:.0f} MB "
                    "(DEFECT_STUDIO_MAX_FILE_BYTES)")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise ImageReadError(f"cannot read image '{path}': the file grew past the limit "
                                 f"of {limit / 2**20:.0f} MB while being read")
        return data
    except FileNotFoundError:
        raise ImageReadError(f"cannot read image '{path}': file not found") from None
    except IsADirectoryError:
        raise ImageReadError(f"cannot read image '{path}': it is a folder, not a file") from None
    except PermissionError:
        raise ImageReadError(f"cannot read image '{path}': permission denied") from None
    except OSError as e:
        raise ImageReadError(f"cannot read image '{path}': {e.strerror or e}") from None


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes like read_image does; `name` is used in error messages."""
    if len(data) == 0:
        raise ImageReadError(f"cannot read image '{name}': the file is empty")
    check_pixel_limit(data, name)
    is_jpeg = data[:3] == b"\xff\xd8\xff"
    if is_jpeg and not _jpeg_complete(data):
        raise ImageReadError(
            f"cannot read image '{name}': the JPEG file is truncated (no end-of-image marker)"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, _DECODE_FLAGS)
    except cv2.error as e:
        raise ImageReadError(f"cannot read image '{name}': the decoder failed ({e})") from None
    if img is None or img.size == 0:
        kind = _sniff_kind(data)
        reason = (
            f"the {kind} file is corrupt or truncated"
            if kind
            else "not an image file (supported: PNG, JPEG, BMP, TIFF)"
        )
        raise ImageReadError(f"cannot read image '{name}': {reason}")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            f"cannot read image '{name}': unsupported sample type {img.dtype} "
            "(use 8- or 16-bit integer images)"
        )
    if img.ndim == 3:
        c = img.shape[2]
        if c == 1:
            img = img[:, :, 0]
        elif c == 2:  # gray + alpha
            img = img[:, :, 0]
        elif c == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif c == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        else:
            raise ImageReadError(f"cannot read image '{name}': {c} channels are not supported")
    if img.ndim == 3 and _png_is_gray(data):
        img = img[:, :, 0]  # gray + alpha comes back as colour; its channels are equal
    if is_jpeg:
        img = apply_orientation(img, jpeg_orientation(data))
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image: HxW or HxWx3 RGB, uint8 or uint16, EXIF orientation applied.

    Raises ImageReadError (naming the file and the reason) for missing, empty,
    corrupt, truncated or unsupported files.
    """
    return decode_image(read_bytes(path), str(path))


def read_image_reduced(path: str | os.PathLike, max_side: int) -> np.ndarray:
    """An image for display at about `max_side` pixels: JPEGs are decoded at 1/2, 1/4
    or 1/8 size by the decoder itself (never the full pixels); other formats are read
    whole (within MAX_PIXELS). Same layout as read_image (8-bit RGB for reduced JPEGs)."""
    data = read_bytes(path)
    size = header_size(data)
    if data[:3] != b"\xff\xd8\xff" or size is None or not _jpeg_complete(data):
        return decode_image(data, str(path))
    check_pixel_limit(data, str(path))
    factor = next((f for f in (8, 4, 2) if min(size) // f >= max_side), 1)
    if factor == 1:
        return decode_image(data, str(path))
    flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        return decode_image(data, str(path))
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(apply_orientation(img, jpeg_orientation(data)))


def meta_of(img: np.ndarray) -> ImageMeta:
    """ImageMeta of an array as returned by read_image."""
    channels = 1 if img.ndim == 2 else int(img.shape[2])
    bit_depth = 16 if img.dtype == np.uint16 else 8
    return ImageMeta(int(img.shape[1]), int(img.shape[0]), channels, bit_depth)


def image_info(path: str | os.PathLike) -> ImageMeta:
    """Width, height, channels and bit depth of the image as read_image returns it."""
    return meta_of(read_image(path))


def read_mask(
    path: str | os.PathLike, shape: tuple[int, ...] | None = None, threshold: int = 128
) -> np.ndarray:
    """Read a mask file as a bool HxW array (True = defect).

    Pixels >= threshold are defect (threshold in 8-bit units; 16-bit masks are
    compared against threshold*257, colour masks use their brightest channel).
    `shape`: the (H, W[, C]) of the image the mask belongs to; MaskError if the
    sizes differ.
    """
    m = read_image(path)
    if m.ndim == 3:
        m = m.max(axis=2)
    t = threshold * 257 if m.dtype == np.uint16 else threshold
    mask = m >= max(t, 1)
    if shape is not None:
        check_mask_shape(mask, shape, what=f"mask '{path}'")
    return mask


def check_mask_shape(mask: np.ndarray, shape: tuple[int, ...], what: str = "mask") -> None:
    """MaskError unless the HxW mask has the height and width of `shape` (H, W[, C])."""
    if mask.ndim != 2:
        raise MaskError(f"{what} must be a single-channel HxW array, got shape {mask.shape}")
    h, w = int(shape[0]), int(shape[1])
    if mask.shape != (h, w):
        raise MaskError(
            f"{what} is {mask.shape[1]}x{mask.shape[0]} (WxH) but the image is {w}x{h}; "
            "a mask must have the image's size"
        )


def encode_image(array: np.ndarray, ext: str = ".png") -> bytes:
    """Encode an HxW / HxWx3 RGB (/ HxWx4 RGBA) uint8/uint16 or bool array; bool -> 0/255."""
    a = np.asarray(array)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"cannot encode {a.dtype} images; convert to uint8 or uint16")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3:
        if a.shape[2] == 3:
            a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
        elif a.shape[2] == 4:
            a = cv2.cvtColor(a, cv2.COLOR_RGBA2BGRA)
        else:
            raise ValueError(f"cannot encode an image with {a.shape[2]} channels")
    elif a.ndim != 2:
        raise ValueError(f"cannot encode an array of shape {a.shape} as an image")
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(a))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {a.dtype} {a.shape} image as {ext}")
    return buf.tobytes()


def write_image_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an image (format from the extension, RGB order) atomically; returns the path."""
    path = Path(path)
    return atomic_write_bytes(path, encode_image(array, path.suffix.lower() or ".png"))


def write_png_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an array as PNG atomically (temp file + fsync + rename + folder fsync)."""
    return atomic_write_bytes(path, encode_image(array, ".png"))


def to_float01(img: np.ndarray) -> np.ndarray:
    """float32 copy in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0/1, floats clipped."""
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.floating):
        return np.clip(a.astype(np.float32), 0.0, 1.0)
    raise ValueError(f"cannot scale {a.dtype} images to [0, 1]")


# --- format details ---------------------------------------------------------------------


def check_pixel_limit(data: bytes, name: str = "<bytes>", limit: int | None = None) -> None:
    """ImageReadError when the header says the image has more than `limit` pixels
    (default MAX_PIXELS): refused before any pixel is decoded."""
    limit = MAX_PIXELS if limit is None else limit
    size = header_size(data)
    if size is None:
        return
    w, h = size
    if w * h > limit:
        raise ImageReadError(
            f"cannot read image '{name}': it is {w}x{h} pixels ({w * h / 1e6:.0f} MP), more "
            f"than the limit of {limit / 1e6:.0f} MP (set DEFECT_STUDIO_MAX_PIXELS to raise it)")


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP, TIFF or WebP header; None if not found."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:2] == b"BM" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if data[:3] == b"\xff\xd8\xff":
            return _jpeg_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos, n = 2, len(data)
    while pos + 9 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            pos += 2
            continue
        (seglen,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
            return w, h
        pos += 2 + seglen
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    e = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(e + "I", data[4:8])
    (count,) = struct.unpack(e + "H", data[ifd:ifd + 2])
    found: dict[int, int] = {}
    for i in range(min(count, 512)):
        off = ifd + 2 + 12 * i
        tag, typ = struct.unpack(e + "HH", data[off:off + 4])
        if tag in (256, 257):
            fmt = e + ("H" if typ == 3 else "I")
            (found[tag],) = struct.unpack(fmt, data[off + 8:off + 8 + struct.calcsize(fmt)])
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L":
        b = int.from_bytes(data[21:25], "little")
        return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _sniff_kind(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


def _png_is_gray(data: bytes) -> bool:
    """True for a PNG whose IHDR colour type is gray (0) or gray + alpha (4)."""
    return data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 25 \
        and data[25] in (0, 4)


def _jpeg_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the first scan.

    libjpeg fills a truncated scan with gray and only warns, so a cut-off file
    would otherwise be read as a damaged-looking but "valid" image. Inside the
    entropy-coded data 0xFF is always stuffed (FF 00) or a restart marker, so
    FF D9 after the first start-of-scan can only be the real end marker.
    """
    sos = data.find(b"\xff\xda", 2)
    if sos < 0:
        return False
    return data.find(b"\xff\xd9", sos + 2) >= 0


def jpeg_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1..8) of JPEG bytes; 1 when absent or unreadable."""
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return 1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: metadata is over
            return 1
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        (seglen,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        seg = data[pos + 4 : pos + 2 + seglen]
        if marker == 0xE1 and seg[:6] == b"Exif\x00\x00":
            return _exif_orientation(seg[6:])
        pos += 2 + seglen
    return 1


def _exif_orientation(tiff: bytes) -> int:
    try:
        if tiff[:2] == b"II":
            e = "<"
        elif tiff[:2] == b"MM":
            e = ">"
        else:
            return 1
        (ifd,) = struct.unpack(e + "I", tiff[4:8])
        (count,) = struct.unpack(e + "H", tiff[ifd : ifd + 2])
        for i in range(count):
            off = ifd + 2 + 12 * i
            tag, typ = struct.unpack(e + "HH", tiff[off : off + 4])
            if tag == 0x0112:
                if typ == 3:  # SHORT, stored left-aligned in the 4-byte value field
                    (val,) = struct.unpack(e + "H", tiff[off + 8 : off + 10])
                else:  # LONG written by some tools
                    (val,) = struct.unpack(e + "I", tiff[off + 8 : off + 12])
                return int(val) if 1 <= val <= 8 else 1
    except struct.error:  # a damaged EXIF block is not worth refusing the image for
        return 1
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn the stored pixels into the displayed picture for EXIF orientation 1..8."""
    if orientation == 2:
        return img[:, ::-1]
    if orientation == 3:
        return img[::-1, ::-1]
    if orientation == 4:
        return img[::-1, :]
    if orientation == 5:  # transpose
        return img.swapaxes(0, 1)
    if orientation == 6:  # rotate 90 degrees clockwise
        return img.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:  # transverse
        return img.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:  # rotate 90 degrees counter-clockwise
        return img.swapaxes(0, 1)[::-1, :]
    return img
