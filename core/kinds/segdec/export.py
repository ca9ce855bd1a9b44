"""ONNX export of a segmentation + decision run (MixSup, MFFPA): the segdec kind's exporter.

The graph is the trained network plus the two sigmoids the predictor applies, so the
package's outputs are probabilities: ``score`` [batch] and ``heatmap`` [batch, H/8, W/8].
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from defect_studio.errors import ModelFileError
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
    from defect_studio.deploy.export import ONNX_OPSET
    from defect_studio.deploy.package import INPUT_NAME, OUTPUT_NAMES
    from defect_studio.kinds.segdec.runmodel import load_run_model

    model, config = load_run_model(run_dir, "cpu")
    wrapper = _Probabilities(model).eval()
    W, H = config.input_size
    example = torch.zeros(2, int(config.channels), H, W)  # batch 2: not specialised to 1
    batch = torch.export.Dim("batch", min=1, max=4096)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes={"image": {0: batch}}, external_data=False, verbose=False)
            program.save(str(onnx_path), external_data=False)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; say which run
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # the exporter colours its text
        first = (text.splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"the network of run '{Path(run_dir).name}' could not be exported "
                             f"to ONNX: {first}") from None
    return {
        "model": config.model,
        "preprocess": Preprocessing.of(config).to_dict(),
        "model_spec": config.extra.get("model_spec"),
        "heatmap": {"resolution": f"1/{model.input_multiple} of the input",
                    "mapping": "defect_studio.preprocess.heatmap_to_image: bilinear, pixel centres "
                               "aligned, the padding cut off"},
    }
