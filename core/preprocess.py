"""Image preprocessing and heatmap geometry, in numpy + OpenCV only (no torch).

One implementation for everything that feeds a network or reads its map back:
training of every kind (defect_studio.training.data.preprocess_image), the torch
predictors (defect_studio.inference.predictor.RunPredictor) and the deployed runtime
without torch (defect_studio.deploy). ``config`` is anything with
``input_size`` (W, H), ``resize`` ("resize" | "pad") and ``channels`` (1, 3 or None):
a TrainConfig, or the ``Preprocessing`` recorded in an export package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from defect_studio.errors import DataError


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing settings of a trained model, without the rest of its config."""

    input_size: tuple[int, int]  # (W, H)
    resize: str                  # "resize" (stretch) or "pad" (fit, zero pad bottom/right)
    channels: int                # 1 (gray by luminance) or 3 (RGB)

    @classmethod
    def of(cls, config: Any) -> Preprocessing:
        return cls((int(config.input_size[0]), int(config.input_size[1])), str(config.resize),
                   int(config.channels))

    def to_dict(self) -> dict[str, Any]:
        """The settings plus a plain description of each step (for a package's JSON)."""
        return {
            "input_size": list(self.input_size), "resize": self.resize,
            "channels": self.channels, "layout": "NCHW float32",
            "scaling": "uint8 / 255, uint16 / 65535, floats clipped to [0, 1]; no mean/std",
            "color": "RGB; gray = OpenCV RGB2GRAY luminance; alpha dropped",
            "interpolation": "cv2.INTER_AREA",
            "pad": "aspect-preserving fit at the top-left, zeros at the bottom/right"
                   if self.resize == "pad" else "none (stretched to the input size)",
        }


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """HxW or HxWx3 float image -> HxWxC with C = channels (gray by luminance)."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:  # alpha carries no surface information
        img = img[:, :, :3]
    if channels == 1 and img.shape[2] == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[:, :, None]
    elif channels == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] != channels:
        raise DataError(f"cannot turn an image with {img.shape[2]} channels into {channels}")
    return img


def fit_geometry(shape: tuple[int, int], config: Any) -> tuple[int, int]:
    """(w, h) of the image content inside the input: all of it for "resize", the
    aspect-preserving fit (top-left, padded at the bottom/right) for "pad"."""
    W, H = config.input_size
    h, w = int(shape[0]), int(shape[1])
    if config.resize == "resize":
        return W, H
    scale = min(W / w, H / h)
    return max(1, min(W, round(w * scale))), max(1, min(H, round(h * scale)))


def place(arr: np.ndarray, config: Any, interp: int) -> np.ndarray:
    """Resize HxW(xC) into the input geometry; zero padding outside the content."""
    W, H = config.input_size
    cw, ch = fit_geometry(arr.shape[:2], config)
    resized = cv2.resize(arr, (cw, ch), interpolation=interp)
    if resized.ndim == 2 and arr.ndim == 3:  # cv2 drops a single channel axis
        resized = resized[:, :, None]
    if (cw, ch) == (W, H):
        return resized
    out = np.zeros((H, W) + arr.shape[2:], dtype=resized.dtype)
    out[:ch, :cw] = resized
    return out


def preprocess_array(img: np.ndarray, config: Any) -> np.ndarray:
    """An image as read by defect_studio.io.images -> float32 array [C, H, W] in [0, 1] at the
    model's input size; exactly what the network saw in training."""
    from defect_studio.io.images import to_float01

    if img.ndim not in (2, 3):
        raise DataError(f"expected an HxW or HxWx3 image, got an array of shape {img.shape}")
    channels = config.channels or (1 if img.ndim == 2 or img.shape[2] == 1 else 3)
    x = to_channels(to_float01(img), channels).astype(np.float32)
    x = place(x, config, cv2.INTER_AREA)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def heatmap_to_image(map2d: np.ndarray, config: Any, shape: tuple[int, int]) -> np.ndarray:
    """A map over the network input (any resolution, e.g. the 1/8 segmentation) at the
    image's own HxW, undoing the resize or the scale-and-pad of preprocessing.

    Cells are placed where the training targets put them: the 1/8
    target of cell i is the mean of input pixels 8i-8 .. 8i+8 (reflect-pad 8, average
    pool k=17, stride 8), so cell i stands for input pixel 8i, whose centre is at
    continuous coordinate 8i + 0.5 (pixel j covers [j, j+1)). One affine warp with
    fractional coordinates, bilinear; edges replicate.
    """
    W, H = config.input_size
    h, w = int(shape[0]), int(shape[1])
    cw, ch = fit_geometry((h, w), config)
    mh, mw = map2d.shape[:2]
    sx, ox = _cell_axis(w, cw, W, mw)
    sy, oy = _cell_axis(h, ch, H, mh)
    m = np.array([[sx, 0.0, ox], [0.0, sy, oy]], dtype=np.float64)
    return cv2.warpAffine(np.ascontiguousarray(map2d, dtype=np.float32), m, (w, h),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _cell_axis(n_img: int, n_content: int, n_input: int, n_map: int) -> tuple[float, float]:
    """(scale, offset) with map index u = scale * x + offset for image pixel index x.

    Image pixel x has its centre at x + 0.5; in the input it sits at x' = (x + 0.5) *
    n_content / n_img. Map cell u is centred on input pixel stride * u, i.e. at x' =
    stride * u + 0.5, so u = (x' - 0.5) / stride."""
    stride = n_input / n_map
    scale = n_content / n_img / stride
    return scale, 0.5 * scale - 0.5 / stride
