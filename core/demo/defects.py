"""Procedural surface defects with their masks: scratches, pits, cracks and stains.

A defect is a soft coverage map ``alpha`` (HxW float32 in [0, 1]) plus how it changes
the surface: an additive luminance change (``delta``) and/or a blend towards a stain
colour. The defect's mask is ``alpha >= 0.5``: the pixels that visibly change, not a
bounding box. Strokes are drawn 4x supersampled and averaged down, so edges are
anti-aliased and widths need not be whole pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from defect_studio.demo.textures import Params, smooth_noise, uniform

SUPERSAMPLE = 4


@dataclass(frozen=True)
class Surface:
    """What a defect needs to know about the surface it lands on."""

    height: int
    width: int
    scale: float        # image size / recipe reference size
    min_width: float    # narrowest stroke in pixels (strokes must survive downscaling)
    noise: float        # std of the texture's fine detail (luminance units)
    brightness: float   # mean luminance
    margin: float       # defects start this share of the size away from the border


@dataclass
class Defect:
    """One defect: its soft coverage and its effect on the image."""

    kind: str
    alpha: np.ndarray                      # HxW float32 in [0, 1]; mask = alpha >= 0.5
    delta: np.ndarray | None = None        # HxW additive luminance change
    color: tuple[float, float, float] | None = None  # stain colour (RGB in [0, 1])
    color_alpha: np.ndarray | None = None  # HxW blend weight towards ``color``

    @property
    def mask(self) -> np.ndarray:
        return self.alpha >= 0.5


DefectFn = Callable[[np.random.Generator, Surface, Params], Defect]


def apply_defect(rgb: np.ndarray, defect: Defect) -> None:
    """Change the float RGB image (HxWx3, in place) as the defect says."""
    if defect.color_alpha is not None and defect.color is not None:
        a = defect.color_alpha[..., None]
        rgb *= 1.0 - a
        rgb += a * np.asarray(defect.color, dtype=np.float32)
    if defect.delta is not None:
        rgb += defect.delta[..., None]


# ----------------------------------------------------------------------------- helpers


def _center(rng: np.random.Generator, s: Surface) -> tuple[float, float]:
    m = s.margin
    return (float(rng.uniform(m, 1 - m)) * s.width, float(rng.uniform(m, 1 - m)) * s.height)


def _stroke_alpha(
    s: Surface, points: np.ndarray, widths: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Coverage of a polyline whose segment i has width ``widths[i]`` (px) and
    strength ``values[i]`` in [0, 1], drawn anti-aliased into an HxW map."""
    alpha = np.zeros((s.height, s.width), np.float32)
    pad = float(widths.max()) + 2.0
    x0 = max(0, int(math.floor(points[:, 0].min() - pad)))
    y0 = max(0, int(math.floor(points[:, 1].min() - pad)))
    x1 = min(s.width, int(math.ceil(points[:, 0].max() + pad)))
    y1 = min(s.height, int(math.ceil(points[:, 1].max() + pad)))
    if x1 <= x0 or y1 <= y0:
        return alpha
    ss = SUPERSAMPLE
    canvas = np.zeros(((y1 - y0) * ss, (x1 - x0) * ss), np.uint8)
    # Pixel centres sit at +0.5 in the supersampled grid.
    pts = np.round((points - [x0, y0]) * ss + (ss - 1) / 2.0).astype(np.int32)
    for i in range(len(pts) - 1):
        value = int(round(255 * float(np.clip(values[i], 0.0, 1.0))))
        thickness = max(1, int(round(widths[i] * ss)))
        cv2.line(canvas, tuple(map(int, pts[i])), tuple(map(int, pts[i + 1])), value,
                 thickness, cv2.LINE_8)
    small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    alpha[y0:y1, x0:x1] = small.astype(np.float32) / 255.0
    return alpha


def _taper(t: np.ndarray, ends: float) -> np.ndarray:
    """1 in the middle of a stroke, falling to ~0 over the first and last ``ends`` share."""
    return np.clip(np.minimum(t, 1.0 - t) / max(ends, 1e-3), 0.0, 1.0) ** 0.6


def _local_grid(s: Surface, cx: float, cy: float, radius: float):
    """Pixel coordinates of the window around (cx, cy) that holds a blob of ``radius``."""
    x0, x1 = max(0, int(cx - radius)), min(s.width, int(math.ceil(cx + radius)) + 1)
    y0, y1 = max(0, int(cy - radius)), min(s.height, int(math.ceil(cy + radius)) + 1)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), xs + 0.5 - cx, ys + 0.5 - cy


def _contrast(rng: np.random.Generator, s: Surface, p: Params, key: str, floor: str) -> float:
    """A defect's luminance change: a few times the texture's own fine detail, so the
    defect stands out of the texture but is not trivially bright."""
    return max(float(p[floor]), uniform(rng, p[key]) * s.noise)


# ----------------------------------------------------------------------------- defects


def scratch(rng: np.random.Generator, s: Surface, p: Params) -> Defect:
    """A thin curved bright or dark line that tapers at both ends."""
    length = uniform(rng, p["length"]) * s.scale
    width = max(s.min_width, uniform(rng, p["width"]) * s.scale)
    cx, cy = _center(rng, s)
    theta = float(rng.uniform(0.0, math.pi))
    d = np.array([math.cos(theta), math.sin(theta)])
    n = np.array([-d[1], d[0]])
    start = np.array([cx, cy]) - d * length / 2
    end = np.array([cx, cy]) + d * length / 2
    ctrl = np.array([cx, cy]) + n * uniform(rng, p["bend"]) * length / 2
    steps = max(8, int(length / 2))
    t = np.linspace(0.0, 1.0, steps + 1)[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * ctrl + t**2 * end  # quadratic Bezier
    tm = (t[:-1, 0] + t[1:, 0]) / 2
    taper = _taper(tm, float(rng.uniform(0.1, 0.25)))
    # A scratch is uneven along its length: the tool pressed harder in places.
    wobble = 0.85 + 0.15 * np.cos(2 * np.pi * (tm * rng.uniform(1, 3) + rng.uniform()))
    widths = np.maximum(width * (0.55 + 0.45 * taper), s.min_width * 0.8)
    alpha = _stroke_alpha(s, points, widths, taper * wobble)
    sign = 1.0 if rng.random() < p["bright_probability"] else -1.0
    amp = sign * _contrast(rng, s, p, "contrast", "min_contrast")
    return Defect("scratch", alpha, delta=amp * alpha)


def pit(rng: np.random.Generator, s: Surface, p: Params) -> Defect:
    """A small cluster of dark, irregular holes, each with a bright rim on the side that
    faces the light and a shadow on the other."""
    alpha = np.zeros((s.height, s.width), np.float32)
    delta = np.zeros_like(alpha)
    cx, cy = _center(rng, s)
    count = int(rng.integers(int(p["count"][0]), int(p["count"][1]) + 1))
    light = float(rng.uniform(0.0, 2 * math.pi))
    depth = _contrast(rng, s, p, "depth", "min_depth")
    rim_gain = uniform(rng, p["rim"])
    spread = uniform(rng, p["cluster_spread"]) * s.scale
    min_radius = max(2.5, s.min_width * 1.5)  # diameter >= 5 px so a pit survives halving
    for k in range(count):
        radius = max(min_radius, uniform(rng, p["radius"]) * s.scale * (1.0 if k == 0 else 0.7))
        px = cx + (rng.normal(0.0, spread) if k else 0.0)
        py = cy + (rng.normal(0.0, spread) if k else 0.0)
        px = float(np.clip(px, radius + 1, s.width - radius - 1))
        py = float(np.clip(py, radius + 1, s.height - radius - 1))
        win, xs, ys = _local_grid(s, px, py, radius * 2.0 + 3)
        d = np.hypot(xs, ys)
        ang = np.arctan2(ys, xs)
        rough = uniform(rng, p["roughness"])
        edge = np.ones_like(d)
        for harmonic in (2, 3, 5):
            phase = rng.uniform(0, 2 * np.pi)
            edge += rough / harmonic * math.sqrt(2) * np.cos(harmonic * ang + phase)
        r_edge = radius * edge
        core = np.clip(r_edge - d + 0.5, 0.0, 1.0)                     # anti-aliased disc
        bowl = core * (0.6 + 0.4 * np.clip(1.0 - d / r_edge, 0.0, 1.0))  # deeper in the middle
        rim_w = max(1.2, 0.35 * radius)
        ring = np.exp(-(((d - r_edge - rim_w / 2) / (rim_w / 2)) ** 2))
        facing = np.cos(ang - light)
        lit = ring * np.clip(facing, 0.0, 1.0)
        shadow = ring * np.clip(-facing, 0.0, 1.0) * 0.5
        delta[win] += depth * (rim_gain * lit - bowl - 0.5 * shadow)
        alpha[win] = np.maximum(alpha[win], np.maximum(core, np.maximum(lit, shadow * 2)))
    return Defect("pit", alpha, delta=delta)


def crack(rng: np.random.Generator, s: Surface, p: Params) -> Defect:
    """A dark jagged line from a random walk that now and then branches."""
    length = uniform(rng, p["length"]) * s.scale
    width = max(s.min_width, uniform(rng, p["width"]) * s.scale)
    step = max(1.5, uniform(rng, p["step"]) * s.scale)
    wander = uniform(rng, p["wander"])
    branch_p = uniform(rng, p["branch_probability"])
    cx, cy = _center(rng, s)
    theta = float(rng.uniform(0.0, 2 * math.pi))
    # Walk both ways from the centre so the crack is centred where it was placed.
    walks = [(cx, cy, theta, length / 2, width), (cx, cy, theta + math.pi, length / 2, width)]
    alpha = np.zeros((s.height, s.width), np.float32)
    while walks:
        x, y, heading, remaining, w = walks.pop()
        pts = [(x, y)]
        n = max(2, int(remaining / step))
        for _ in range(n):
            heading += float(rng.normal(0.0, wander))
            x += step * math.cos(heading)
            y += step * math.sin(heading)
            pts.append((x, y))
            if len(walks) < 6 and rng.random() < branch_p:
                turn = float(rng.uniform(0.4, 1.0)) * (1 if rng.random() < 0.5 else -1)
                walks.append((x, y, heading + turn, remaining * 0.45, max(s.min_width, w * 0.7)))
        points = np.asarray(pts, np.float64)
        t = np.linspace(0.0, 1.0, len(points) - 1)
        widths = np.maximum(w * (1.0 - 0.5 * t), s.min_width * 0.8)  # thins towards the tip
        values = 1.0 - 0.5 * t**2
        alpha = np.maximum(alpha, _stroke_alpha(s, points, widths, values))
    amp = _contrast(rng, s, p, "contrast", "min_contrast")
    return Defect("crack", alpha, delta=-amp * alpha)


def stain(rng: np.random.Generator, s: Surface, p: Params) -> Defect:
    """A soft, irregular discolouration (rust, oil, residue), sometimes with the darker
    rim of a dried drop."""
    radius = uniform(rng, p["radius"]) * s.scale
    cx, cy = _center(rng, s)
    win, xs, ys = _local_grid(s, cx, cy, radius * 2.2 + 2)
    h, w = xs.shape
    irregular = uniform(rng, p["irregularity"])
    shape = 1.0 + irregular * 0.5 * smooth_noise(rng, h, w, max(2.0, radius * 0.6))
    aspect = float(rng.uniform(0.6, 1.0))
    rot = float(rng.uniform(0.0, math.pi))
    c, sn = math.cos(rot), math.sin(rot)
    u, v = (xs * c + ys * sn), (-xs * sn + ys * c) / aspect
    f = np.hypot(u, v) / (radius * np.maximum(shape, 0.3))
    soft = uniform(rng, p["softness"])
    local = np.clip((1.0 + soft - f) / (2 * soft), 0.0, 1.0)
    local = local * local * (3 - 2 * local)  # smoothstep: no hard edge anywhere
    alpha = np.zeros((s.height, s.width), np.float32)
    alpha[win] = local
    colors = np.asarray(p["colors"], np.float32)
    luminance = colors @ np.array([0.299, 0.587, 0.114], np.float32)
    # Only colours that differ from the surface are visible; prefer those.
    visible = np.flatnonzero(np.abs(luminance - s.brightness) >= 0.15)
    pool = visible if len(visible) else np.arange(len(colors))
    color = colors[int(rng.choice(pool))]
    strength = uniform(rng, p["strength"])
    mottle = 0.8 + 0.2 * smooth_noise(rng, h, w, max(1.5, radius * 0.25))
    color_alpha = np.zeros_like(alpha)
    color_alpha[win] = np.clip(strength * local * mottle, 0.0, 1.0)
    delta = None
    if rng.random() < p["ring_probability"]:
        ring = np.exp(-(((f - 1.0) / (0.6 * soft)) ** 2)) * (local > 0.05)
        delta = np.zeros_like(alpha)
        # The edge of a dried drop: where the residue piled up, a little darker.
        delta[win] = -max(0.04, 2.0 * s.noise) * ring
        alpha[win] = np.maximum(local, ring * (local > 0.2))
    return Defect("stain", alpha, delta=delta, color=tuple(float(x) for x in color),
                  color_alpha=color_alpha)


DEFECTS: dict[str, DefectFn] = {
    "scratch": scratch,
    "pit": pit,
    "crack": crack,
    "stain": stain,
}
