"""Procedural surface textures for the demo project: machined metal, ceramic tile,
woven fabric and cast (sand-blasted) metal.

Every texture is a float32 luminance image (HxW, roughly in [0, 1]); colour and
illumination are added by the generator. Lengths in a recipe are given for a
256-pixel image and multiplied by ``scale`` so a 64-pixel test image looks like a
zoomed-out version of a 256-pixel one. All randomness comes from the ``rng`` passed
in, so a texture is a pure function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

Params = dict
TextureFn = Callable[[np.random.Generator, int, int, float, Params], np.ndarray]


def uniform(rng: np.random.Generator, pair: Sequence[float]) -> float:
    """A value drawn uniformly from a recipe's ``[lo, hi]`` range."""
    lo, hi = float(pair[0]), float(pair[1])
    return float(rng.uniform(lo, hi)) if hi > lo else lo


def smooth_noise(
    rng: np.random.Generator,
    h: int,
    w: int,
    along: float,
    across: float | None = None,
    angle: float = 0.0,
) -> np.ndarray:
    """Zero-mean, unit-std noise whose features are ``along`` px long in direction
    ``angle`` (radians) and ``across`` px wide perpendicular to it.

    White noise on a small grid (one cell per feature) is stretched onto the image by
    one bicubic affine warp: much cheaper than blurring full-size noise with large
    kernels, and it makes oriented streaks (grinding marks) for free.
    """
    across = along if across is None else across
    along, across = max(along, 0.5), max(across, 0.5)
    diag = math.hypot(h, w)
    sw, sh = int(math.ceil(diag / along)) + 4, int(math.ceil(diag / across)) + 4
    src = rng.standard_normal((sh, sw)).astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = w / 2.0, h / 2.0
    m = np.array(
        [
            [c / along, s / along, -(cx * c + cy * s) / along + sw / 2.0],
            [-s / across, c / across, -(-cx * s + cy * c) / across + sh / 2.0],
        ],
        dtype=np.float64,
    )
    out = cv2.warpAffine(
        src, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    out -= out.mean()
    std = float(out.std())
    return out / std if std > 1e-8 else out


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def _finish(rng: np.random.Generator, detail: np.ndarray, p: Params) -> np.ndarray:
    """Base brightness plus the texture's detail at a per-image contrast."""
    return (uniform(rng, p["brightness"]) + uniform(rng, p["contrast"]) * detail).astype(
        np.float32
    )


def machined(rng: np.random.Generator, h: int, w: int, scale: float, p: Params) -> np.ndarray:
    """Ground or turned metal: fine directional grinding marks over broader brushed
    streaks, or lathe arcs around a centre far outside the image."""
    angle = float(rng.uniform(0.0, math.pi))
    fs, cs = p["fine_streaks"], p["coarse_streaks"]
    detail = uniform(rng, cs["amplitude"]) * smooth_noise(
        rng, h, w, uniform(rng, cs["along"]) * scale, uniform(rng, cs["across"]) * scale, angle
    )
    if rng.random() < p["turned_probability"]:
        # Lathe arcs: a 1-D noise profile of the distance to a far-away centre.
        arcs = p["lathe_arcs"]
        dist = uniform(rng, arcs["distance"]) * max(h, w)
        phi = float(rng.uniform(0.0, 2.0 * math.pi))
        cx, cy = w / 2.0 + dist * math.cos(phi), h / 2.0 + dist * math.sin(phi)
        xs, ys = _grid(h, w)
        r = np.hypot(xs - cx, ys - cy)
        r0 = float(r.min())
        period = max(1.0, 1.1 * scale)
        n = int((float(r.max()) - r0) / period) + 4
        profile = cv2.GaussianBlur(
            rng.standard_normal((1, n)).astype(np.float32), (0, 0), 0.8
        ).ravel()
        profile /= max(float(profile.std()), 1e-6)
        rings = np.interp((r - r0) / period, np.arange(n, dtype=np.float32), profile)
        # Tool chatter: the cut's depth wanders slowly along each arc.
        chatter = 1.0 + 0.3 * smooth_noise(rng, h, w, 60 * scale)
        detail += uniform(rng, arcs["amplitude"]) * rings.astype(np.float32) * chatter
    else:
        detail += uniform(rng, fs["amplitude"]) * smooth_noise(
            rng, h, w, uniform(rng, fs["along"]) * scale,
            max(0.7, uniform(rng, fs["across"]) * scale), angle,
        )
    detail += uniform(rng, p["grain"]["amplitude"]) * rng.standard_normal((h, w)).astype(
        np.float32
    )
    return _finish(rng, detail, p)


def tile(rng: np.random.Generator, h: int, w: int, scale: float, p: Params) -> np.ndarray:
    """Matte ceramic: granular speckle, scattered small grains and low-frequency mottling."""
    sp, gr, mo = p["speckle"], p["grains"], p["mottling"]
    detail = uniform(rng, sp["amplitude"]) * smooth_noise(
        rng, h, w, max(0.7, uniform(rng, sp["scale"]) * scale)
    )
    mottling = smooth_noise(rng, h, w, uniform(rng, mo["scale"]) * scale)
    detail += uniform(rng, mo["amplitude"]) * mottling
    # Grains: isolated single pixels, softened, half darker and half lighter.
    density = uniform(rng, gr["density"])
    seeds = (rng.random((h, w)) < density).astype(np.float32)
    seeds *= rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(h, w))
    grains = cv2.GaussianBlur(seeds, (0, 0), max(0.5, 0.7 * scale))
    peak = float(np.abs(grains).max())
    if peak > 0:
        detail += uniform(rng, gr["amplitude"]) * grains / peak
    return _finish(rng, detail, p)


def fabric(rng: np.random.Generator, h: int, w: int, scale: float, p: Params) -> np.ndarray:
    """Woven cloth: plain or twill weave of warp and weft threads with per-thread shade,
    slightly wavy threads and fuzz."""
    period = max(3.0, uniform(rng, p["period"]) * scale)
    angle = float(rng.normal(0.0, 0.15)) + (math.pi / 2 if rng.random() < 0.5 else 0.0)
    c, s = math.cos(angle), math.sin(angle)
    xs, ys = _grid(h, w)
    distortion = uniform(rng, p["warp_distortion"])
    u = (xs * c + ys * s) / period + distortion * smooth_noise(rng, h, w, 90 * scale)
    v = (-xs * s + ys * c) / period + distortion * smooth_noise(rng, h, w, 90 * scale)
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    iu_i, iv_i = iu.astype(np.int64), iv.astype(np.int64)
    if rng.random() < p["twill_probability"]:
        warp_on_top = (iu_i - iv_i) % 3 != 0
    else:
        warp_on_top = (iu_i + iv_i) % 2 == 0
    # Each thread has its own shade: spun yarn is never perfectly even.
    jitter = uniform(rng, p["thread_shade_jitter"])
    n_u = int(iu_i.max() - iu_i.min()) + 1
    n_v = int(iv_i.max() - iv_i.min()) + 1
    warp_shade = rng.normal(0.0, jitter, n_u).astype(np.float32)[iu_i - iu_i.min()]
    weft_shade = rng.normal(0.0, jitter, n_v).astype(np.float32)[iv_i - iv_i.min()]
    # Cross-section of a thread (round top) and the dip where it goes under the other.
    across_u, across_v = np.sin(np.pi * fu) ** 0.5, np.sin(np.pi * fv) ** 0.5
    warp = 0.55 * across_u + 0.45 * np.sqrt(across_v) + warp_shade
    weft = 0.55 * across_v + 0.45 * np.sqrt(across_u) + weft_shade
    weave = np.where(warp_on_top, warp, weft).astype(np.float32)
    weave -= weave.mean()
    detail = uniform(rng, p["thread_contrast"]) * weave / max(float(weave.std()), 1e-6)
    detail += uniform(rng, p["fuzz"]["amplitude"]) * smooth_noise(rng, h, w, max(0.7, scale))
    detail = cv2.GaussianBlur(detail, (0, 0), max(0.4, 0.5 * scale))
    return _finish(rng, detail, p)


def cast(rng: np.random.Generator, h: int, w: int, scale: float, p: Params) -> np.ndarray:
    """Cast or sand-blasted metal: a bumpy height field lit from one side, plus slight
    albedo variation."""
    b = p["bumps"]
    height = smooth_noise(rng, h, w, uniform(rng, b["fine_scale"]) * scale)
    height += uniform(rng, b["coarse_weight"]) * smooth_noise(
        rng, h, w, uniform(rng, b["coarse_scale"]) * scale
    )
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    light = float(rng.uniform(0.0, 2.0 * math.pi))
    shade = gx * math.cos(light) + gy * math.sin(light)
    shade /= max(float(shade.std()), 1e-6)
    detail = uniform(rng, p["relief"]) * shade
    al = p["albedo"]
    albedo = smooth_noise(rng, h, w, uniform(rng, al["scale"]) * scale)
    detail += uniform(rng, al["amplitude"]) * albedo
    return _finish(rng, detail, p)


TEXTURES: dict[str, TextureFn] = {
    "machined": machined,
    "tile": tile,
    "fabric": fabric,
    "cast": cast,
}
