"""`defect-studio model-info`: parameters and MACs of the model variants."""

from __future__ import annotations

import argparse
import json
import re

from defect_studio.kinds.segdec.complexity import count_macs, count_params, split_params
from defect_studio.kinds.segdec.models import MODEL_NAMES, build_model
from defect_studio.kinds.segdec.network import ModelInputError

# Seed paper, table 9, at a 3x640x232 (C x W x H) input.
REFERENCE_INPUT = (3, 640, 232)
REFERENCE = {
    "mixsup": {"params_m": 15.64, "macs_g": 47.99},
    "mixsup+mff": {"params_m": 8.58, "macs_g": 31.79},
    "mixsup+pa": {"params_m": 10.87, "macs_g": 32.35},
    "mffpa": {"params_m": 11.29, "macs_g": 33.32},
}


def parse_input(text: str) -> tuple[int, int, int]:
    """'CxWxH' (e.g. 3x640x232) -> (C, W, H)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise ModelInputError(f"--input must be CxWxH, e.g. 3x640x232; got {text!r}")
    c, w, h = (int(g) for g in m.groups())
    if c < 1 or w < 1 or h < 1:
        raise ModelInputError(f"--input sizes must be positive; got {text!r}")
    return c, w, h


def model_info(name: str, input_cwh: tuple[int, int, int] = REFERENCE_INPUT) -> dict:
    """Size of one variant at an input of (C, W, H), compared with the paper where it applies."""
    c, w, h = input_cwh
    model = build_model(name, in_channels=c)
    params = count_params(model)
    macs = count_macs(model, (c, h, w))
    seg, dec = split_params(model)
    ref = REFERENCE[model.name]
    deviation = None
    if tuple(input_cwh) == REFERENCE_INPUT:
        deviation = {
            "params": round(100 * (params / 1e6 / ref["params_m"] - 1), 2),
            "macs": round(100 * (macs / 1e9 / ref["macs_g"] - 1), 2),
        }
    return {
        "model": model.name,
        "input": [c, w, h],
        "params": params,
        "params_m": round(params / 1e6, 3),
        "macs": macs,
        "macs_g": round(macs / 1e9, 3),
        "seg_params": seg,
        "dec_params": dec,
        "reference": {**ref, "input": list(REFERENCE_INPUT)},
        "deviation_pct": deviation,  # None when the input is not the paper's
    }


def _table(rows: list[dict]) -> str:
    head = f"{'model':<11} {'input CxWxH':<12} {'params (M)':>10} {'MACs (G)':>9} " \
           f"{'seg (M)':>8} {'dec (M)':>8} {'paper M / G':>13} {'dev % P / MAC':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ref = r["reference"]
        dev = r["deviation_pct"]
        dev_s = f"{dev['params']:+.2f} / {dev['macs']:+.2f}" if dev else "n/a"
        lines.append(
            f"{r['model']:<11} {'x'.join(map(str, r['input'])):<12} {r['params_m']:>10.3f} "
            f"{r['macs_g']:>9.3f} {r['seg_params'] / 1e6:>8.3f} {r['dec_params'] / 1e6:>8.3f} "
            f"{ref['params_m']:>6.2f} / {ref['macs_g']:<5.2f} {dev_s:>14}")
    if any(r["deviation_pct"] is None for r in rows):
        lines.append("paper figures are for a 3x640x232 input; no deviation at other sizes")
    return "\n".join(lines)


def cmd_model_info(args: argparse.Namespace) -> int:
    """Print size figures of one variant (or `all`) as a table or JSON."""
    from defect_studio.kinds.segdec.kind import KIND

    cwh = parse_input(args.input)
    model = args.model or KIND.default_model
    names = list(MODEL_NAMES) if str(model).strip().lower() == "all" else [model]
    rows = [model_info(n, cwh) for n in names]
    if args.json:
        print(json.dumps(rows if len(names) > 1 else rows[0], indent=2))
    else:
        print(_table(rows))
    return 0
