"""ONNX export of an anomaly run: the anomaly kind's exporter.

ONE graph holds the frozen teacher, the student (bottleneck + decoder) and everything
``AnomalyPredictor`` computes from them: the disagreement of the run's map taps,
upsampled to the input and summed, the Gaussian smoothing, and the calibration
``1 - 2^(-raw / raw_threshold)`` (the run's calibrated raw threshold is a constant of the
graph). Outputs, as for every kind (defect_studio.deploy.package):

- ``score`` [batch]: the calibrated image score, the maximum of the calibrated map
  (0.5 = the calibrated threshold);
- ``heatmap`` [batch, H, W]: the calibrated anomaly map at the input resolution.

The one step outside the graph is the one the runtime does for every kind: the map is
taken back to the image's own size with defect_studio.preprocess.heatmap_to_image and
clipped to [0, 1], as the predictor does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from defect_studio.preprocess import Preprocessing


class _CalibratedMaps(torch.nn.Module):
    """(score, heatmap) of an AnomalyNet, as AnomalyPredictor computes them."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.net.to_score(self.net(image)).float()
        return maps.flatten(1).amax(1), maps


def export_onnx(run_dir: Path, onnx_path: Path) -> dict[str, Any]:
    """Write the run's teacher + student to ``onnx_path``; returns its manifest fields."""
    from defect_studio.deploy.onnx_export import export_graph
    from defect_studio.deploy.package import OUTPUT_NAMES
    from defect_studio.kinds.anomaly.predictor import AnomalyPredictor

    predictor = AnomalyPredictor(run_dir, device="cpu")  # the same loading and checks
    model, config = predictor.model.eval(), predictor.config
    wrapper = _CalibratedMaps(model).eval()
    W, H = config.input_size
    example = torch.zeros(2, int(config.channels), H, W)  # batch 2: not specialised to 1
    export_graph(wrapper, example, onnx_path, run_dir, output_names=OUTPUT_NAMES,
                 what="teacher and student")
    return {
        "model": config.model,
        "preprocess": Preprocessing.of(config).to_dict(),
        "model_spec": config.extra.get("model_spec") or model.spec(),
        "outputs": {
            OUTPUT_NAMES[0]: "[batch] calibrated anomaly score in [0, 1): the maximum of the "
                             "heatmap; 0.5 is the run's calibrated threshold",
            OUTPUT_NAMES[1]: "[batch, H, W] calibrated anomaly map at the input resolution: "
                             "1 - 2^(-raw / raw_threshold) of the smoothed teacher-student "
                             "disagreement",
        },
        "calibration": {"raw_threshold": float(model.raw_threshold),
                        "formula": "1 - 2^(-max(raw, 0) / raw_threshold)",
                        "map_taps": list(model.map_taps), "sigma": model.sigma},
        # how to cover a part (issue 18): one pass over the whole image at input_size, also
        # for a run trained on crops of OK images (teacher and student are fully
        # convolutional), so there are no tiles to merge
        "tiling": {"mode": "whole_image", "tiles": 1,
                   "trained_on_crops": None if config.crop_size is None
                   else list(config.crop_size)},
        "heatmap": {"resolution": "the input size",
                    "mapping": "defect_studio.preprocess.heatmap_to_image: bilinear, pixel centres "
                               "aligned, the padding cut off; clipped to [0, 1]"},
    }
