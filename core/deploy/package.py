"""The export package: a folder with the network and ``package.json`` (no torch here).

Layout (docs/ARCHITECTURE.md, "Export packages")::

    package.json   everything needed to reproduce the project's decision (below)
    model.onnx     format "onnx": the network, opset >= 18, dynamic batch
    model.xml/bin  format "openvino": OpenVINO IR converted from the ONNX graph

The graph contract, the same for every model kind: one input ``image`` float32
[batch, C, H, W] (preprocessed as ``preprocess`` says), outputs ``score`` [batch]
(defect probability, or the kind's calibrated score) and ``heatmap`` [batch, h, w]
(values in [0, 1] over the input, any resolution; mapped back to the image by
defect_studio.preprocess.heatmap_to_image). The runtime runs the kinds of the registry
that can be exported (``runtime_kinds()``, from each ModelKind's ``export`` and
``outputs_boxes``; the registry is light, no torch):

- kinds without boxes (segdec, anomaly): score and heatmap only, dynamic batch;
- kinds with boxes (detector): batch 1, and besides score and heatmap the box outputs named
  in the manifest's ``box_outputs`` (BOX_OUTPUT_NAMES: ``boxes`` [N, 4] x0, y0, x1, y1 in
  input pixels, ``box_scores`` [N], ``box_labels`` [N] int64 index into ``box_types``, the
  defect type names). Its image heatmap is drawn from the boxes scaled to the image.

``read_package`` checks the manifest and the sha256 of every file it lists, so a
truncated, tampered or incomplete package is refused with a message before use.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defect_studio.errors import ModelFileError
from defect_studio.io.atomic import sha256_file
from defect_studio.preprocess import Preprocessing

PACKAGE_FILE = "package.json"
PACKAGE_FORMAT = 1  # bump when a reader of the old layout would misread a new package
FORMATS = ("onnx", "openvino")
MODEL_FILES = {"onnx": "model.onnx", "openvino": "model.xml"}
INPUT_NAME = "image"
ONNX_OPSET = 18  # the opset every kind's graph is exported at
OUTPUT_NAMES = ("score", "heatmap")
BOX_OUTPUT_NAMES = ("boxes", "box_scores", "box_labels")
MAX_MANIFEST_BYTES = 1 << 20  # package.json is a few kB
MAX_INPUT_PIXELS = 4096 * 4096  # network input of one image: 16.8 MP (a float32 copy: 64 MB
# a channel); beyond it one part allocated 9.7 GB and ran a minute before it failed


def runtime_kinds() -> dict[str, bool]:
    """Model kind -> whether its graph gives the box outputs besides score and heatmap: the
    registered kinds that can be exported."""
    from defect_studio.kinds import kinds

    return {k.name: k.outputs_boxes for k in kinds() if k.export}

# OpenVINO runs in bf16 on CPUs that have it unless told otherwise; the threshold was
# calibrated in fp32 and bf16 moved the decision logit by 0.02 in a trial.
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


class PackageError(ModelFileError):
    """An export package that is missing, incomplete, changed or of an unknown kind."""


@dataclass(frozen=True)
class PackageInfo:
    """A verified package: its folder, manifest and the settings the runtime needs."""

    path: Path
    manifest: dict[str, Any]
    format: str
    kind: str
    model_file: Path
    preprocessing: Preprocessing
    threshold: float
    threshold_source: str
    run_id: str
    model: str
    box_types: tuple[str, ...] = ()  # kinds with boxes: the type name of each box label
    outputs_boxes: bool = False  # the graph gives the box outputs (the kind's, read once)
    # INT8 packages: the float32 re-check (defect_studio.deploy.recheck), None without one
    recheck: dict[str, Any] | None = None

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph outputs the runtime reads, in the order it reads them."""
        return OUTPUT_NAMES + (BOX_OUTPUT_NAMES if self.outputs_boxes else ())


def is_package(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder holding a package.json."""
    return (Path(path) / PACKAGE_FILE).is_file()


def read_package(path: str | os.PathLike, verify: bool = True) -> PackageInfo:
    """The verified package in folder ``path`` (PackageError saying what is wrong)."""
    root = Path(path)
    if not root.exists():
        raise PackageError(f"model package not found: {root}")
    if not root.is_dir():
        raise PackageError(f"{root} is a file; give the package folder (the one holding "
                           f"{PACKAGE_FILE}) made by defect-studio export-model")
    mf = root / PACKAGE_FILE
    if not mf.is_file():
        raise PackageError(f"{root} is not a model package: it has no {PACKAGE_FILE} "
                           "(make one with defect-studio export-model)")
    _inside(root, mf, PACKAGE_FILE)
    try:
        if mf.stat().st_size > MAX_MANIFEST_BYTES:
            raise PackageError(f"{mf} is {mf.stat().st_size / 1e6:.1f} MB, not a package "
                               "manifest (a few kB); export the model again")
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except RecursionError:
        raise PackageError(f"{mf} is damaged (nested too deep); export the model again"
                           ) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise PackageError(f"{mf} is damaged ({e}); export the model again") from None
    if not isinstance(manifest, dict):
        raise PackageError(f"{mf} is not a JSON object; export the model again")

    def need(key: str, ok: Any, what: str) -> Any:
        value = manifest.get(key)
        if not ok(value):
            raise PackageError(f"{mf}: '{key}' must be {what}, found {value!r}; "
                               "export the model again")
        return value

    fmt_version = need("package_format", lambda v: isinstance(v, int) and not isinstance(v, bool),
                       "an integer")
    if fmt_version > PACKAGE_FORMAT:
        raise PackageError(f"{root} was written by a newer Defect Studio (package format "
                           f"{fmt_version}, this one reads up to {PACKAGE_FORMAT}); update it")
    fmt = need("format", lambda v: v in FORMATS, f"one of {FORMATS}")
    kind = need("kind", lambda v: isinstance(v, str) and v, "a model kind")
    known = runtime_kinds()
    if kind not in known:
        raise PackageError(f"{root} holds a model of kind {kind!r}, which this runtime cannot "
                           f"run (it knows: {', '.join(known)}); update Defect Studio, "
                           "or export the model with this version")
    box_types: tuple[str, ...] = ()
    if known[kind]:
        need("box_outputs", lambda v: v == list(BOX_OUTPUT_NAMES),
             f"the names of the box outputs {list(BOX_OUTPUT_NAMES)}")
        box_types = tuple(need(
            "box_types", lambda v: isinstance(v, list) and v
            and all(isinstance(t, str) and t for t in v), "the list of defect type names"))
    files = need("files", lambda v: isinstance(v, dict) and v, "a map of file name to sha256")
    for name, digest in files.items():
        if not _plain_name(name):
            raise PackageError(f"{mf} names the file {name!r}, which is not a plain file name "
                               "inside the package; the package was changed, export it again")
        if not (isinstance(digest, str) and len(digest) == 64):
            raise PackageError(f"{mf}: the checksum of {name} is not a sha256; export again")
    model_name = MODEL_FILES[fmt]
    if model_name not in files:
        raise PackageError(f"{mf} does not list {model_name}, the network of a {fmt} package")
    for name, digest in files.items():
        f = root / name
        _inside(root, f, name)
        if not f.is_file():
            raise PackageError(f"the package {root} is incomplete: {name} is missing; copy the "
                               "whole package folder, or export the model again")
        if verify and sha256_file(f) != digest:
            raise PackageError(f"{f} does not match its checksum in {PACKAGE_FILE}: the file is "
                               "truncated or was changed; copy the package again or re-export it")
    pre = need("preprocess", lambda v: isinstance(v, dict), "an object")
    preprocessing = _preprocessing(pre, mf)
    threshold = need("threshold", _is_unit, "a number between 0 and 1")
    runtime = manifest.get("runtime", {})
    if not (isinstance(runtime, dict) and all(
            isinstance(k, str) and isinstance(v, dict) and all(
                isinstance(o, str) and isinstance(x, (str, int, float, bool))
                for o, x in v.items()) for k, v in runtime.items())):
        raise PackageError(f"{mf}: 'runtime' must map a runtime to its settings (name: value), "
                           f"found {_short(runtime)}; export the model again")
    from defect_studio.deploy.recheck import check_recheck

    try:
        recheck = check_recheck(manifest, fmt, files, mf)
    except ValueError as e:
        raise PackageError(f"{e}; export the model again") from None
    return PackageInfo(
        path=root, manifest=manifest, format=fmt, kind=kind, model_file=root / model_name,
        preprocessing=preprocessing, threshold=float(threshold),
        threshold_source=str(manifest.get("threshold_source", "unknown")),
        run_id=str(need("run_id", lambda v: isinstance(v, str) and v, "the run id")),
        model=str(manifest.get("model", "")), box_types=box_types,
        outputs_boxes=known[kind], recheck=recheck,
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _inside(root: Path, f: Path, name: str) -> None:
    """PackageError when ``f`` is a link that leads out of the package folder (a package is
    self-contained: a link to a file elsewhere would be read as the package's own)."""
    try:
        if not f.is_symlink():
            return
        target = f.resolve(strict=True)
        inside = target.parent == root.resolve(strict=True)
    except (OSError, RuntimeError):
        inside = False
    if not inside:
        raise PackageError(f"{f} is a link to a file outside the package {root}; a package "
                           "holds its own files: copy the package folder again (not its links)")


def check_graph_input(info: PackageInfo, dims: list[Any]) -> None:
    """PackageError when the network's input ``dims`` [batch, C, H, W] (an int for a fixed
    size, anything else for a free one) cannot take what the package's preprocessing gives
    (a package.json that does not belong to its network)."""
    pre = info.preprocessing
    W, H = pre.input_size
    mf = info.path / PACKAGE_FILE
    if len(dims) != 4:
        raise PackageError(f"{info.model_file} takes a {len(dims)}-dimensional input, not "
                           "[batch, channels, height, width]; export the model again")
    c, h, w = (d if isinstance(d, int) and not isinstance(d, bool) and d > 0 else None
               for d in dims[1:])
    if c is not None and c != pre.channels:
        raise PackageError(f"{mf} gives the network {pre.channels}-channel images, but "
                           f"{info.model_file.name} takes {c} channels: the manifest does not "
                           "belong to this network; export the model again")
    if (h is not None and h != H) or (w is not None and w != W):
        raise PackageError(f"{mf} gives the network {W}x{H} images, but "
                           f"{info.model_file.name} takes {w or 'any'}x{h or 'any'}: the "
                           "manifest does not belong to this network; export the model again")


def check_graph_manifest(info: PackageInfo, stamped: dict[str, Any]) -> None:
    """PackageError when the settings stamped into the network at export (its ONNX metadata)
    differ from package.json's: a manifest edited or taken from another package."""
    for key in ("kind", "preprocess"):
        if key not in stamped:
            continue
        try:
            value = json.loads(stamped[key]) if key == "preprocess" else stamped[key]
        except (ValueError, RecursionError, TypeError):
            continue
        if value != info.manifest.get(key):
            raise PackageError(f"{info.path / PACKAGE_FILE}: '{key}' is {info.manifest.get(key)!r}"
                               f" but the network was exported with {_short(value)}: the "
                               "manifest does not belong to this network; export the model "
                               "again")


def _plain_name(name: Any) -> bool:
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
            and "\\" not in name and ":" not in name and "\0" not in name)


def _is_unit(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and 0.0 <= v <= 1.0)


def _preprocessing(pre: dict, mf: Path) -> Preprocessing:
    size, resize, channels = pre.get("input_size"), pre.get("resize"), pre.get("channels")
    ok = (isinstance(size, list) and len(size) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 8192 for v in size)
          and resize in ("resize", "pad") and channels in (1, 3)
          and not isinstance(channels, bool))
    if not ok:
        raise PackageError(f"{mf}: the preprocessing settings are invalid ({_short(pre)}); "
                           "export the model again")
    if size[0] * size[1] > MAX_INPUT_PIXELS:
        raise PackageError(f"{mf}: the network input {size[0]}x{size[1]} is more than this "
                           f"runtime scores ({MAX_INPUT_PIXELS / 1e6:.1f} megapixels); train "
                           "at a smaller input size")
    return Preprocessing((size[0], size[1]), resize, channels)
