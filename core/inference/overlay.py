"""Heatmap overlays: a defect-probability map blended over its image, for review and export."""

from __future__ import annotations

import cv2
import numpy as np

from defect_studio.errors import UserError
from defect_studio.io.images import to_float01

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "hot": cv2.COLORMAP_HOT,
}

# Heat below this shows the plain image: a clean part must look clean, not tinted.
HEAT_FLOOR = 0.15

# label colours (RGB) of the decision text
OK_COLOR = (40, 200, 60)
NG_COLOR = (255, 70, 70)


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any project image (HxW, HxWx1, HxWx3; uint8, uint16 or float in [0,1]) as RGB uint8.

    Scaled with defect_studio.io.images.to_float01, as the model input is, so what a user
    sees is what the model saw.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or img.size == 0:
        raise UserError(f"cannot show an image of shape {img.shape}: expected HxW or HxWx3")
    if img.dtype == np.uint8:
        out = img
    else:
        try:
            f = to_float01(img)
        except ValueError:
            raise UserError(f"cannot show an image of type {img.dtype}") from None
        out = np.rint(np.nan_to_num(f) * 255.0).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    return np.ascontiguousarray(out)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A heatmap in [0,1] (values outside are clipped) as an RGB uint8 image."""
    if colormap not in COLORMAPS:
        raise UserError(f"unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    h = np.asarray(heatmap, dtype=np.float32)
    if h.ndim == 3 and h.shape[2] == 1:
        h = h[:, :, 0]
    if h.ndim != 2 or h.size == 0:
        raise UserError(f"a heatmap must be a 2-D array, got shape {h.shape}")
    h8 = np.clip(np.rint(np.nan_to_num(h) * 255.0), 0, 255).astype(np.uint8)
    bgr = cv2.applyColorMap(h8, COLORMAPS[colormap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5,
            colormap: str = "jet", vmax: float | None = None) -> np.ndarray:
    """Blend the coloured heatmap over the image: RGB uint8 at the image's resolution.

    alpha is the heatmap's weight where the heat is 1 (0 = image only, 1 = heatmap
    only). Each pixel's weight falls with its heat, alpha * clip((h - HEAT_FLOOR) /
    (1 - HEAT_FLOOR), 0, 1), so OK areas show the plain part and defects glow. A
    heatmap of another size (e.g. the model's 1/8 map) is resized bilinearly. ``vmax``:
    the heat shown at full colour (the run's range, defect_studio.inference.heat_range);
    None = 1.
    """
    from defect_studio.inference.heat_range import scale_heat

    if not 0.0 <= float(alpha) <= 1.0:
        raise UserError(f"overlay alpha must be between 0 and 1, got {alpha}")
    base = to_rgb_uint8(image)
    h, w = base.shape[:2]
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim == 3 and heat.shape[2] == 1:
        heat = heat[:, :, 0]
    if heat.ndim == 2 and heat.shape != (h, w) and heat.size:
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    if heat.ndim == 2:
        heat = scale_heat(heat, vmax)
    color = colorize(heat, colormap)
    hf = np.clip(np.nan_to_num(heat.astype(np.float32)), 0.0, 1.0)
    weight = float(alpha) * np.clip((hf - HEAT_FLOOR) / (1.0 - HEAT_FLOOR), 0.0, 1.0)
    weight = weight[:, :, None]
    out = base.astype(np.float32) * (1.0 - weight) + color.astype(np.float32) * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def annotate(image_rgb: np.ndarray, text: str,
             color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of an RGB uint8 image with ``text`` in its top-left corner on a dark band.

    The font scales with the image so the text stays readable on large parts and
    fits on small ones.
    """
    out = np.ascontiguousarray(image_rgb.copy())
    h, w = out.shape[:2]
    scale = max(0.3, min(w, h) / 400.0)
    thickness = max(1, int(round(scale * 2)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    pad = max(2, int(4 * scale))
    band_h = min(h, th + base + 2 * pad)
    band_w = min(w, tw + 2 * pad)
    # darken instead of painting black: the part under the text stays faintly visible
    out[:band_h, :band_w] = (out[:band_h, :band_w] * 0.35).astype(np.uint8)
    cv2.putText(out, text, (pad, pad + th), font, scale, color, thickness, cv2.LINE_AA)
    return out


def mark_peak(image_rgb: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """A copy of an RGB uint8 image with a ring around the heatmap's hottest point (where
    the model looked), visible whatever the heat's strength."""
    out = np.ascontiguousarray(image_rgb.copy())
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32))
    if heat.ndim != 2 or not heat.size:
        return out
    iy, ix = np.unravel_index(int(np.argmax(heat)), heat.shape)
    h, w = out.shape[:2]
    x = int(round((ix + 0.5) * w / heat.shape[1] - 0.5))
    y = int(round((iy + 0.5) * h / heat.shape[0] - 0.5))
    r = max(4, min(h, w) // 16)
    t = max(1, min(h, w) // 150)
    cv2.circle(out, (x, y), r + t, (0, 0, 0), t + 2, cv2.LINE_AA)
    cv2.circle(out, (x, y), r, (255, 255, 255), t, cv2.LINE_AA)
    return out


def decision_overlay(image: np.ndarray, heatmap: np.ndarray, score: float, is_ng: bool,
                     alpha: float = 0.5, colormap: str = "jet",
                     vmax: float | None = None) -> np.ndarray:
    """overlay() with "NG 0.873" / "OK 0.012" written on it (the export of predict); an NG
    part's peak is always marked, and a heat range below 1 is written ("heat 0-0.19")."""
    img = overlay(image, heatmap, alpha=alpha, colormap=colormap, vmax=vmax)
    if is_ng:
        img = mark_peak(img, heatmap)
    label = "NG" if is_ng else "OK"
    text = f"{label} {score:.3f}"
    if vmax is not None and vmax < 1.0:
        text += f"  heat 0-{vmax:.2g}"
    return annotate(img, text, NG_COLOR if is_ng else OK_COLOR)
