"""ONNX export of a detector run: the detector kind's exporter.

ONE graph holds the whole two-stage detector as ``DetectorPredictor`` runs it: backbone
and FPN, the RPN with its NMS, RoIAlign, the box head (with the relation module when
the run has it), the per-type NMS, the boxes below ``MIN_BOX_SCORE`` dropped. Outputs:

- ``score`` [1]: the highest box confidence (0 without boxes), as the predictor's score;
- ``heatmap`` [1, H, W]: at the input resolution, each box's pixels set to its
  confidence (the highest where boxes overlap), for consumers that read only score and
  heatmap;
- ``boxes`` [N, 4] (x0, y0, x1, y1 in input pixels), ``box_scores`` [N] and
  ``box_labels`` [N] (int64 index into the manifest's ``box_types``), most confident first.

One image per call (input batch 1): torchvision's detector handles an image list in
Python, so its batch does not trace as a dynamic dimension; the runtime calls the
graph once per image. The RoIAlign and NMS ops of torchvision export through the
TorchScript exporter (``dynamo=False``): torch.export stops at the data-dependent box
counts of the NMS (GuardOnDataDependentSymNode in torchvision.ops.boxes).

Outside the graph, as the predictor does it: the boxes are scaled from the input to
the image's own size, and the image's heatmap is drawn from those boxes
(defect_studio.inference.prediction.boxes_heatmap), so that it equals the predictor's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from defect_studio.preprocess import Preprocessing


class _Detections(torch.nn.Module):
    """(score, heatmap, boxes, box_scores, box_labels) of one image [1, 3, H, W]."""

    def __init__(self, detector: torch.nn.Module, min_score: float,
                 size: tuple[int, int]) -> None:
        super().__init__()
        self.detector = detector
        self.min_score = float(min_score)
        W, H = size
        self.register_buffer("xs", torch.arange(W, dtype=torch.float32), persistent=False)
        self.register_buffer("ys", torch.arange(H, dtype=torch.float32), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        r = self.detector([image[0]])[0]
        keep = r["scores"] >= self.min_score
        boxes, scores = r["boxes"][keep], r["scores"][keep]
        labels = r["labels"][keep] - 1  # 0 is the background class
        zero = torch.zeros(1, dtype=scores.dtype)
        score = torch.cat([scores, zero]).max().reshape(1)
        # each box's input pixels [floor(x0), ceil(x1)) x [floor(y0), ceil(y1)) = its score
        in_x = (self.xs[None] >= boxes[:, 0:1].floor()) & (self.xs[None] < boxes[:, 2:3].ceil())
        in_y = (self.ys[None] >= boxes[:, 1:2].floor()) & (self.ys[None] < boxes[:, 3:4].ceil())
        inside = in_y[:, :, None] & in_x[:, None, :]  # [N, H, W]
        filled = torch.where(inside, scores[:, None, None], torch.zeros_like(scores)[:, None, None])
        empty = torch.zeros(1, self.ys.shape[0], self.xs.shape[0], dtype=scores.dtype)
        heat = torch.cat([filled, empty]).amax(0, keepdim=True)
        return score, heat, boxes, scores, labels


def export_onnx(run_dir: Path, onnx_path: Path) -> dict[str, Any]:
    """Write the run's detector to ``onnx_path``; returns its manifest fields."""
    from defect_studio.deploy.onnx_export import export_graph
    from defect_studio.deploy.package import BOX_OUTPUT_NAMES, INPUT_NAME, OUTPUT_NAMES
    from defect_studio.kinds.detector.predictor import MIN_BOX_SCORE, DetectorPredictor

    predictor = DetectorPredictor(run_dir, device="cpu")  # the same loading and checks
    model, config, classes = predictor.model.eval(), predictor.config, predictor.classes
    W, H = config.input_size
    wrapper = _Detections(model, MIN_BOX_SCORE, (W, H)).eval()
    example = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0))
    names = list(OUTPUT_NAMES) + list(BOX_OUTPUT_NAMES)
    # fixed batch 1 with the TorchScript exporter: the dynamo exporter fails on NMS
    export_graph(wrapper, example, onnx_path, run_dir, output_names=names,
                 dynamic_batch=False, what="detector")
    boxes, box_scores, box_labels = BOX_OUTPUT_NAMES
    return {
        "model": config.model,
        "preprocess": Preprocessing.of(config).to_dict(),
        "model_spec": {"name": config.model, **config.switches(), "classes": list(classes),
                       "backbone": "efficientnet-lite0"},
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW, batch 1 (one image "
                  "per call)"},
        "outputs": {
            OUTPUT_NAMES[0]: "[1] the highest box confidence, 0 without boxes",
            OUTPUT_NAMES[1]: "[1, H, W] at the input resolution: each box's pixels set to its "
                             "confidence (the highest where boxes overlap)",
            boxes: "[N, 4] x0, y0, x1, y1 in input pixels, most confident first",
            box_scores: f"[N] box confidence in [0, 1], at least {MIN_BOX_SCORE}",
            box_labels: "[N] int64: index of the box's defect type in box_types",
        },
        "box_outputs": list(BOX_OUTPUT_NAMES),
        "box_types": list(classes),
        "min_box_score": MIN_BOX_SCORE,
        "heatmap": {"resolution": "the input size",
                    "mapping": "the runtime scales the boxes to the image (x by image width / "
                               "input width, y by image height / input height) and draws the "
                               "image's heatmap from them (each box's pixels [floor, ceil) = its "
                               "confidence, max over boxes), as the detector's predictor does"},
        "decision": "NG when score (the highest box confidence) >= threshold; the boxes shown "
                    "are those with confidence >= threshold",
    }
