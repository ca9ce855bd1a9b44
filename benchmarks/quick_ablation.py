"""Which training switches earn their place in the quick preset: one switch at a time.

Every variant is the quick preset with one setting changed (the fidelity switches of
docs/models.md, one at a time, and all of the paper-exact ones together), trained with
the same seeds and the same epochs on one demo project and evaluated on its test split
(benchmarks/quick_preset_demo.py does each run). Results are appended, one JSON line per
variant, to --json; --table prints the markdown table of such a file.

    python benchmarks/quick_ablation.py --project /tmp/demo --json /tmp/ablation.jsonl
    python benchmarks/quick_ablation.py --variants norm,target --threads 1 --json a.jsonl
    python benchmarks/quick_ablation.py --table /tmp/ablation.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# name -> (what changes, TrainConfig overrides of the quick preset)
VARIANTS: dict[str, tuple[str, dict]] = {
    "quick": ("the quick preset as it is", {}),
    "fp32": ("float32 training instead of bf16 autocast", {"cpu_bf16": False}),
    "norm": ("original MixSup feature norm (and the norm on the seg output)",
             {"norm": "original"}),
    "target": ("decision target of a masked defect = max of the downsampled mask",
               {"dec_target": "mask_max"}),
    "dilate": ("dilation at image resolution (3 px of the source image)",
               {"dilate_at": "image"}),
    "balance": ("dynamic balancing on (seg first, decision later)", {"dyn_balance": True}),
    "noaug": ("no flips / turns", {"augment": False}),
    "best": ("validation every epoch, best epoch kept", {"val_every": 1}),
    "paper": ("the paper-exact switches together: norm + target + dilation + balancing",
              {"norm": "original", "dec_target": "mask_max", "dilate_at": "image",
               "dyn_balance": True}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--project", help="an existing demo project (default: each variant "
                                     "generates the default demo, which is deterministic)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a change applied to every variant (e.g. cpu_bf16=true)")
    p.add_argument("--json", help="append one JSON line per variant to this file")
    p.add_argument("--table", metavar="JSONL", help="only print the table of a results file")
    return p.parse_args(argv)


def table(lines: list[dict]) -> str:
    """Markdown: one row per variant, AP per seed, mean AP / AUC and the change against
    the "quick" row (when present)."""
    base = next((r for r in lines if r["label"] == "quick"), None)
    out = ["| variant | change | AP per seed | mean test AP | Δ AP vs quick | mean AUC | "
           "mean CPU s |", "|---|---|---|---|---|---|---|"]
    for r in lines:
        what = VARIANTS.get(r["label"], (json.dumps(r["overrides"]), {}))[0]
        seeds = " / ".join(f"{row['ap']:.3f}" for row in r["rows"])
        delta = "" if base is None or r is base else f"{r['mean']['ap'] - base['mean']['ap']:+.3f}"
        out.append(f"| {r['label']} | {what} | {seeds} | {r['mean']['ap']:.3f} | {delta} | "
                   f"{r['mean']['auc']:.3f} | {r['mean']['cpu_s']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table:
        with open(args.table, encoding="utf-8") as f:
            print(table([json.loads(line) for line in f if line.strip()]))
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    from benchmarks import quick_preset_demo

    for name in names:
        cmd = ["--seeds", args.seeds, "--threads", str(args.threads), "--label", name]
        if args.project:
            cmd += ["--project", args.project]
        if args.json:
            cmd += ["--json", args.json]
        for item in args.set + [f"{k}={json.dumps(v)}" for k, v in VARIANTS[name][1].items()]:
            cmd += ["--set", item]
        print(f"== {name}: {VARIANTS[name][0]}", flush=True)
        quick_preset_demo.main(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
