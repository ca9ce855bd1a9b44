"""ONNX export of a segmentation + decision run (MixSup, MFFPA): the segdec kind's exporter.

The graph is the trained network plus the two sigmoids the predictor applies, so the
package's outputs are probabilities: ``score`` [batch] and ``heatmap`` [batch, H/8, W/8].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from defect_studio.preprocess import Preprocessing


class _Probabilities(torch.nn.Module):
    """(score, heatmap) probabilities of a SegDecNet, as Predictor computes them."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seg_logits, dec_logits = self.net(image)
        return torch.sigmoid(dec_logits.float()), torch.sigmoid(seg_logits.float()[:, 0])


def export_onnx(run_dir: Path, onnx_path: Path) -> dict[str, Any]:
    """Write the run's network to ``onnx_path``; returns its manifest fields."""
    from defect_studio.deploy.onnx_export import export_graph
    from defect_studio.deploy.package import OUTPUT_NAMES
    from defect_studio.kinds.segdec.runmodel import load_run_model
    from defect_studio.kinds.segdec.tiles import TiledNet, scoring_model

    net, config = load_run_model(run_dir, "cpu")
    model = scoring_model(net, config)  # a crop-trained run: the tiling is in the graph
    wrapper = _Probabilities(model).eval()
    W, H = config.input_size
    example = torch.zeros(2, int(config.channels), H, W)  # batch 2: not specialised to 1
    export_graph(wrapper, example, onnx_path, run_dir, output_names=OUTPUT_NAMES)
    return {
        "model": config.model,
        "preprocess": Preprocessing.of(config).to_dict(),
        "model_spec": config.extra.get("model_spec"),
        # how to cover a part (issue 18): the runtime feeds one whole image at input_size;
        # a run trained on crops splits it into crop-size tiles inside the graph and merges
        # them there (segdec/tiles.py), so the runtime has nothing to tile or merge
        "tiling": {**(model.tiling() if isinstance(model, TiledNet)
                      else {"mode": "whole_image", "tiles": 1}),
                   "trained_on_crops": None if config.crop_size is None
                   else list(config.crop_size)},
        "heatmap": {"resolution": f"1/{model.input_multiple} of the input",
                    "mapping": "defect_studio.preprocess.heatmap_to_image: bilinear, pixel centres "
                               "aligned, the padding cut off"},
    }
