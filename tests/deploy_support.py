"""What the package-parity tests share: test images beyond the runs' own geometry, and the
comparison of a torch predictor with a package predictor on them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def with_odd_copies(imgs: list[np.ndarray], crop_from: int = 0, gray_from: int = 1
                    ) -> list[np.ndarray]:
    """``imgs`` plus a non-square crop and a copy with the other number of channels."""
    out = list(imgs)
    out.append(np.ascontiguousarray(out[crop_from][5:60, 3:40]))
    g = out[gray_from]
    out.append(g.mean(axis=2).astype(np.uint8) if g.ndim == 3 else
               np.repeat(g[:, :, None], 3, axis=2))
    return out


@dataclass
class Parity:
    want: list  # the torch predictor's predictions
    got: list  # the package's, one image at a time
    d_score: float  # largest score difference, torch vs package
    d_batch: float  # largest score difference, package batched vs one at a time
    d_heat: float  # largest heatmap difference, torch vs package


def compare(ref, pkg, images: list[np.ndarray], threshold: Callable[[list], float],
            batch_size: int = 5) -> Parity:
    """Score ``images`` with the package in batches, set both predictors' threshold to
    ``threshold(those predictions)``, then score with both one by one and compare."""
    batched = [p for _, p in pkg.predict_many(images, batch_size=batch_size)]
    ref.threshold = pkg.threshold = threshold(batched)
    want = [p for _, p in ref.predict_many(images)]
    got = [pkg.predict(img) for img in images]
    assert len(got) == len(want) == len(batched)
    return Parity(
        want, got,
        d_score=max(abs(a.score - b.score) for a, b in zip(want, got)),
        d_batch=max(abs(a.score - b.score) for a, b in zip(batched, got)),
        d_heat=max(float(np.abs(a.heatmap - b.heatmap).max()) for a, b in zip(want, got)))


def tiny_package(folder, size=(32, 32), channels=1, graph_size=None, graph_channels=None,
                 threshold=0.5, resize="resize", stamp=False, broken=False):
    """A hand-made ONNX export package, no torch and no training: score = sigmoid(4 * (mean
    of the image in [0, 1]) - 2), heatmap = the image's mean over channels. ``graph_size`` /
    ``graph_channels``: fixed input dimensions of the graph (default: dynamic), to make a
    package whose preprocessing does not match its graph. ``stamp``: the manifest's kind and
    preprocessing also in the ONNX metadata, as export-model writes them. ``broken``: the
    graph reshapes its input to [1, 1, 32, 32], so ONNX Runtime fails on anything else."""
    import hashlib
    import json
    from pathlib import Path

    import onnx
    from onnx import TensorProto, helper

    folder = Path(folder)
    folder.mkdir(parents=True)
    gc = graph_channels if graph_channels is not None else "C"
    gh, gw = (graph_size[1], graph_size[0]) if graph_size else ("H", "W")
    nodes = [
        helper.make_node("ReduceMean", ["x", "all_axes"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "four"], ["m4"]),
        helper.make_node("Sub", ["m4", "two"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
        helper.make_node("ReduceMean", ["x", "channel_axis"], ["heat"], keepdims=0),
        helper.make_node("Clip", ["heat", "zero", "one"], ["heatmap"]),
    ]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [], [v])
             for n, v in (("four", 4.0), ("two", 2.0), ("zero", 0.0), ("one", 1.0))]
    inits += [helper.make_tensor("all_axes", TensorProto.INT64, [3], [1, 2, 3]),
              helper.make_tensor("channel_axis", TensorProto.INT64, [1], [1])]
    if broken:
        nodes.insert(0, helper.make_node("Reshape", ["image", "fixed"], ["x"]))
        inits.append(helper.make_tensor("fixed", TensorProto.INT64, [4], [1, 1, 32, 32]))
    else:
        nodes.insert(0, helper.make_node("Identity", ["image"], ["x"]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                      ["N", gc, gh, gw])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", gh, gw])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    pre = {"input_size": list(size), "resize": resize, "channels": channels}
    if stamp:
        for key, value in (("kind", "segdec"), ("preprocess", json.dumps(pre))):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(folder / "model.onnx"))
    digest = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    manifest = {"package_format": 1, "kind": "segdec", "format": "onnx", "model": "tiny",
                "run_id": "tiny-pkg", "threshold": threshold, "threshold_source": "test",
                "preprocess": pre,
                "files": {"model.onnx": digest}, "model_sha256": digest}
    (folder / "package.json").write_text(json.dumps(manifest, indent=2))
    return folder


def tiny_score(image) -> float:
    """What tiny_package scores ``image`` (uint8) as, up to resizing."""
    import math

    m = float(np.asarray(image, np.float64).mean()) / 255.0
    return 1.0 / (1.0 + math.exp(-(4.0 * m - 2.0)))


def read_jsonl(path: Path) -> list[dict]:
    """The JSON lines of a results file (none when it is missing; a torn line skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
