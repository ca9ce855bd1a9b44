"""The demo data generator: textured surfaces with defects, and the demo project.

Every image is a pure function of ``(seed, index, defective)``: its background comes
from its own random stream, so the same seed gives byte-identical PNGs, and an image
looks the same whether or not a defect is painted on it. Which images are defective
is drawn from the seed once for the whole set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from defect_studio.demo.defects import DEFECTS, Defect, Surface, apply_defect
from defect_studio.demo.textures import TEXTURES, uniform
from defect_studio.errors import ProjectError, UserError
from defect_studio.resources import RESOURCE_DIR

if TYPE_CHECKING:  # the store imports nothing from here; keep the import lazy at run time
    from defect_studio.project import Project

RECIPE_PATH = RESOURCE_DIR / "demo_recipe.json"
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
MIN_SIDE, MAX_SIDE = 32, 4096
MAX_COUNT = 100_000

# The default demo project (CLI `demo` and the GUI's first start). Its test split must
# hold enough defective parts that one image moves the test AP by less than 0.02: with
# 540 images, a quarter defective and 40 % of them held out for testing it has 54
# defective and 162 OK test parts, while the train split (61 defective, 182 OK) keeps
# an epoch of the quick preset short. Generating it takes about 12 s of CPU time.
DEMO_DEFAULTS: dict[str, Any] = {"count": 540, "defect_rate": 0.25, "splits": (0.45, 0.15, 0.40)}
DEFAULT_SPLITS = (0.7, 0.15, 0.15)

Progress = Callable[[int, int], Any]


class DemoSettingsError(UserError):
    """Settings of the demo generator that cannot work (size, count, rate, recipe)."""


@dataclass
class DemoImage:
    """One generated image with its ground truth."""

    index: int
    name: str                      # file name, e.g. "part_0007.png"
    image: np.ndarray              # HxWx3 uint8 RGB
    mask: np.ndarray | None        # HxW uint8 0/255 for a defective image, else None
    texture: str
    defects: list[str] = field(default_factory=list)

    @property
    def defective(self) -> bool:
        return self.mask is not None


# ----------------------------------------------------------------------------- recipe


def load_recipe(path: str | os.PathLike | None = None) -> dict:
    """Read and check the recipe (default: resources/demo_recipe.json)."""
    path = Path(path) if path is not None else RECIPE_PATH
    try:
        recipe = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DemoSettingsError(f"demo recipe not found: {path}") from None
    except (OSError, ValueError) as e:
        raise DemoSettingsError(f"demo recipe {path} cannot be read: {e}") from None
    _check_recipe(recipe, path)
    return recipe


def _check_recipe(recipe: dict, where: Path | str) -> None:
    def fail(msg: str) -> None:
        raise DemoSettingsError(f"demo recipe {where}: {msg}")

    for key in ("textures", "defects", "illumination", "defects_per_image", "reference_size"):
        if key not in recipe:
            fail(f"missing '{key}'")
    for group, known in (("textures", TEXTURES), ("defects", DEFECTS)):
        kinds = recipe[group]
        if not isinstance(kinds, dict) or not kinds:
            fail(f"'{group}' must name at least one kind")
        for name, spec in kinds.items():
            if name not in known:
                fail(f"unknown {group[:-1]} kind '{name}' (known: {', '.join(known)})")
            if not float(spec.get("weight", 0)) > 0:
                fail(f"{group[:-1]} '{name}' needs a positive 'weight'")
    counts = recipe["defects_per_image"]
    if not counts or any(int(k) < 1 or float(v) < 0 for k, v in counts.items()):
        fail("'defects_per_image' must map counts >= 1 to probabilities")


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    w = np.array([float(weights[n]) for n in names], np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


# ----------------------------------------------------------------------------- images


def _illumination(rng: np.random.Generator, h: int, w: int, p: dict) -> np.ndarray:
    """Harmless light variation that OK and defective images share: a gradient across
    the part, vignetting, and sometimes a broad soft highlight."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    xn, yn = (xs + 0.5) / w * 2 - 1, (ys + 0.5) / h * 2 - 1
    a = float(rng.uniform(0, 2 * math.pi))
    field_ = 1.0 + uniform(rng, p["gradient"]) * 0.5 * (xn * math.cos(a) + yn * math.sin(a))
    field_ -= uniform(rng, p["vignette"]) * 0.5 * (xn**2 + yn**2)
    if rng.random() < p["hotspot_probability"]:
        hx, hy = rng.uniform(-1, 1, 2)
        r = uniform(rng, p["hotspot_radius"]) * 2
        field_ += uniform(rng, p["hotspot_strength"]) * np.exp(
            -((xn - hx) ** 2 + (yn - hy) ** 2) / (2 * r * r)
        )
    return field_.astype(np.float32)


def _paint_defects(
    rng: np.random.Generator, rgb: np.ndarray, surface: Surface, recipe: dict
) -> tuple[np.ndarray, list[str]]:
    """Add 1-3 defects to ``rgb`` (in place); return their union mask and kinds."""
    counts = recipe["defects_per_image"]
    n = int(_pick(rng, {k: float(v) for k, v in counts.items()}))
    weights = {k: float(v["weight"]) for k, v in recipe["defects"].items()}
    # A defect too small to see (e.g. mostly off the image) would be a wrong label.
    min_pixels = max(6, int(round(20 * surface.scale**2)))
    mask = np.zeros((surface.height, surface.width), bool)
    kinds: list[str] = []
    for _ in range(n):
        for _attempt in range(20):
            kind = _pick(rng, weights)
            defect: Defect = DEFECTS[kind](rng, surface, recipe["defects"][kind])
            m = defect.mask
            if int(m.sum()) >= min_pixels:
                break
        else:  # pragma: no cover - needs a recipe that makes only invisible defects
            raise DemoSettingsError("the demo recipe makes defects too small to see")
        apply_defect(rgb, defect)
        mask |= m
        kinds.append(kind)
    return mask, kinds


def render_demo_image(
    index: int,
    defective: bool,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    recipe: dict | None = None,
    defect_scale: float | None = None,
) -> DemoImage:
    """Make image ``index`` of the demo set ``seed`` at ``size`` = (width, height).

    ``defect_scale``: the defects' size relative to the recipe's reference image (1.0:
    scratches 3-5 px wide at any image size); None: they grow with the image like the
    texture does."""
    recipe = recipe if recipe is not None else load_recipe()
    w, h = int(size[0]), int(size[1])
    scale = min(w, h) / float(recipe["reference_size"])
    dscale = scale if defect_scale is None else check_defect_scale(defect_scale)
    rng = np.random.default_rng([seed, index, 0])
    kind = _pick(rng, {k: float(v["weight"]) for k, v in recipe["textures"].items()})
    tex = recipe["textures"][kind]
    lum = TEXTURES[kind](rng, h, w, scale, tex)
    fine = lum - cv2.GaussianBlur(lum, (0, 0), 2.0)
    ill = recipe["illumination"]
    tints = np.asarray(tex.get("tints", [[1.0, 1.0, 1.0]]), np.float32)
    tint = tints[int(rng.integers(len(tints)))] + rng.normal(0, ill["tint_jitter"], 3)
    tint = (tint / float(tint @ LUMA)).astype(np.float32)
    light = _illumination(rng, h, w, ill)
    noise_sigma = uniform(rng, ill["sensor_noise"])
    rgb = lum[..., None] * tint  # reflectance of the surface

    mask = None
    kinds: list[str] = []
    if defective:
        surface = Surface(
            height=h, width=w, scale=dscale,
            min_width=float(recipe.get("min_width_px", 1.5)),
            noise=float(fine.std()), brightness=float(lum.mean()),
            margin=float(recipe.get("defect_margin", 0.1)),
        )
        drng = np.random.default_rng([seed, index, 1])
        m, kinds = _paint_defects(drng, rgb, surface, recipe)
        mask = m.astype(np.uint8) * 255

    rgb *= light[..., None]
    # Sensor noise is mostly luminance, with a little colour noise as real cameras have.
    grain = rng.standard_normal((h, w, 1), dtype=np.float32)
    rgb += noise_sigma * (grain + 0.3 * rng.standard_normal((h, w, 3), dtype=np.float32))
    image = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return DemoImage(index, f"part_{index:04d}.png", image, mask, kind, kinds)


def _check_settings(count: int, size: tuple[int, int], defect_rate: float) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DemoSettingsError(f"image size must be (width, height), got {size!r}") from None
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise DemoSettingsError(
            f"image size {w}x{h} is out of range: each side must be {MIN_SIDE}..{MAX_SIDE} pixels"
        )
    if not (isinstance(count, int | np.integer) and 1 <= count <= MAX_COUNT):
        raise DemoSettingsError(f"image count must be 1..{MAX_COUNT}, got {count!r}")
    if not (0.0 <= float(defect_rate) <= 1.0):
        raise DemoSettingsError(f"defect rate must be between 0 and 1, got {defect_rate!r}")
    return w, h


def check_defect_scale(value: object) -> float:
    """A defect scale (``--defect-scale``): a finite number in 0.1..64."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not (0.1 <= v <= 64.0):  # also refuses NaN
        raise DemoSettingsError(f"defect scale must be a number between 0.1 and 64, got {value!r}")
    return v


def defective_indices(count: int, seed: int, defect_rate: float) -> set[int]:
    """Which images of the set are defective: ``round(count * rate)`` of them, at least
    one of each class when the rate allows it, drawn from the seed."""
    n = int(round(count * defect_rate))
    if 0 < defect_rate < 1 and count >= 2:
        n = min(max(n, 1), count - 1)
    rng = np.random.default_rng([seed, 0x5EED])
    return {int(i) for i in rng.choice(count, size=n, replace=False)}


def generate_demo_images(
    count: int = 300,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    defect_rate: float = 0.15,
    recipe: dict | None = None,
    defect_scale: float | None = None,
) -> Iterator[DemoImage]:
    """Yield the demo images one by one (RGB uint8, masks for the defective ones)."""
    w, h = _check_settings(count, size, defect_rate)
    if defect_scale is not None:
        check_defect_scale(defect_scale)
    recipe = recipe if recipe is not None else load_recipe()
    bad = defective_indices(count, seed, defect_rate)
    for i in range(count):
        yield render_demo_image(i, i in bad, (w, h), seed, recipe, defect_scale)


# ----------------------------------------------------------------------------- project


def default_demo_dir() -> Path:
    """Where the GUI keeps its demo project: the user's data folder + DefectStudio/demo."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "DefectStudio" / "demo"


def _open_target(root: Path) -> tuple[Project, bool]:
    """Open the folder to fill: a new or empty folder, or an empty project.

    Returns the project and whether we made the folder (so a failure can remove it)."""
    from defect_studio.project import Project

    if root.exists() and not root.is_dir():
        raise ProjectError(f"{root} is a file; give a folder for the demo project")
    if root.is_dir() and (root / "project.sqlite").exists():
        project = Project.open(root)
        n = project.counts()["images"]
        if n:
            project.close()
            raise ProjectError(
                f"{root} is already a project with {n} images; give a new or empty folder "
                "for the demo project"
            )
        return project, False
    if root.is_dir() and any(root.iterdir()):
        raise ProjectError(
            f"{root} is not empty and not a Defect Studio project; give a new or empty folder "
            "for the demo project (nothing was changed)"
        )
    made = not root.exists()
    return Project.create(root, exist_ok=True), made


def generate_demo_project(
    root: str | os.PathLike,
    count: int = 300,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    defect_rate: float = 0.15,
    progress: Progress | None = None,
    splits: tuple[float, float, float] = DEFAULT_SPLITS,
    defect_scale: float | None = None,
) -> Project:
    """Create the demo project at ``root`` and return it open for writing.

    ``size`` is (width, height). Every image is labelled OK or defective (source
    "import"), every defective image has its mask, and the images are split
    train/val/test by the ``splits`` ratios (stratified, seeded; ``DEMO_DEFAULTS`` holds
    the default demo project's settings). ``progress(done, total)`` is called after
    each image. ``root`` must be new, empty, or an empty project; on failure a folder
    made here is removed again.
    """
    w, h = _check_settings(count, size, defect_rate)
    if defect_scale is not None:
        check_defect_scale(defect_scale)
    recipe = load_recipe()
    root = Path(root).expanduser().absolute()
    project, made = _open_target(root)
    written: list[Path] = []
    try:
        project.images_dir.mkdir(parents=True, exist_ok=True)
        # One transaction for the whole set: fast, and all or nothing.
        with project.batch():
            for item in generate_demo_images(count, (w, h), seed, defect_rate, recipe,
                                             defect_scale):
                path = project.images_dir / item.name
                _write_png(path, item.image)
                written.append(path)
                # The file already sits inside the project, so the store records it by a
                # project-relative path and the folder can be moved.
                project.add_image(
                    path, copy=False, label="defective" if item.defective else "ok",
                    source="import", mask=item.mask,
                )
                if progress is not None:
                    progress(item.index + 1, count)
        project.assign_splits(tuple(splits), seed=seed)
    except BaseException:
        project.close()
        if made:
            shutil.rmtree(root, ignore_errors=True)
        else:
            for path in written:
                path.unlink(missing_ok=True)
        raise
    return project


def _write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB image as PNG (fast compression: the noise does not compress anyway)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok = cv2.imwrite(str(path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ProjectError(f"cannot write {path}: check the disk space and permissions")
