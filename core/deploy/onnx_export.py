"""Writing a kind's wrapped network as ONNX: the one exporter call every kind's `export` uses.

``export_graph(module, example, onnx_path, run_dir, output_names=...)`` exports with the
package's input name and opset, silences the exporter's chatter, and turns whatever the
exporter raises into one ModelFileError line naming the run. ``dynamic_batch=True`` uses
torch's dynamo exporter with a dynamic batch dimension (segdec, anomaly);
``dynamic_batch=False`` the TorchScript exporter at the example's fixed batch (the
detector: the dynamo exporter fails on torchvision's NMS). Needs torch; the line runtime
never imports it.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from defect_studio.deploy.package import INPUT_NAME, ONNX_OPSET
from defect_studio.errors import ModelFileError

MAX_BATCH = 4096


def export_graph(module: torch.nn.Module, example: torch.Tensor, onnx_path: Path,
                 run_dir: Path, *, output_names: Sequence[str], dynamic_batch: bool = True,
                 what: str = "network") -> None:
    """Write ``module`` (in eval mode) to ``onnx_path``; ModelFileError when it cannot."""
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            if dynamic_batch:
                batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
                program = torch.onnx.export(
                    module, (example,), dynamo=True, opset_version=ONNX_OPSET,
                    input_names=[INPUT_NAME], output_names=list(output_names),
                    dynamic_shapes={INPUT_NAME: {0: batch}}, external_data=False,
                    verbose=False)
                program.save(str(onnx_path), external_data=False)
            else:
                torch.onnx.export(module, (example,), str(onnx_path), dynamo=False,
                                  opset_version=ONNX_OPSET, input_names=[INPUT_NAME],
                                  output_names=list(output_names), do_constant_folding=True)
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; say which run
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # the exporter colours its text
        first = (text.splitlines() or [type(e).__name__])[0]
        raise ModelFileError(f"the {what} of run '{Path(run_dir).name}' could not be exported "
                             f"to ONNX: {first}") from None
