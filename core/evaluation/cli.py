"""`defect-studio evaluate`: metrics of a run on a split, as JSON or a readable summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _confusion_line(c: dict[str, Any]) -> str:
    return (f"P {_num(c['precision'], 3)}  R {_num(c['recall'], 3)}  F1 {_num(c['f1'], 3)}  "
            f"TP {c['tp']}  FP {c['fp']}  TN {c['tn']}  FN {c['fn']}")


def format_summary(r: dict[str, Any]) -> str:
    """A few readable lines of an evaluate_run result."""
    lines = [
        f"run {r['run_id']} ({r['model']}) on the {r['split']} split: "
        f"{r['n']} images, {r['n_pos']} defective",
        f"  AP (trapezoidal PR area) {_num(r['ap_trapz'])}   "
        f"AP (sklearn average_precision) {_num(r['ap_sklearn'])}   ROC AUC {_num(r['auc'])}",
    ]
    rt = r["run_threshold"]
    lines.append(f"  run threshold {_num(rt['threshold'])} ({rt['source']}): {_confusion_line(rt)}")
    bf = r["best_f1"]
    if bf["threshold"] is not None:
        lines.append(f"  best-F1 threshold {_num(bf['threshold'])}: {_confusion_line(bf)}")
    px = r["pixel"]
    if px.get("pixel_auroc") is not None:
        lines.append(f"  pixel AUROC {_num(px['pixel_auroc'])}   pixel AP {_num(px['pixel_ap'])}   "
                     f"({px['n_images']} images: masked ones, OK ones as clean)")
    elif px.get("note"):
        lines.append(f"  pixel metrics: {px['note']}")
    from defect_studio.kinds import UnknownModelError, kind_of_model

    try:  # the parts of the result that are the run's kind's own (e.g. boxes)
        lines += kind_of_model(str(r.get("model"))).evaluation_lines(r)
    except UnknownModelError:
        pass
    if r.get("note"):
        lines.append(f"  note: {r['note']}")
    if r["errors"]:
        lines.append(f"  {len(r['errors'])} image(s) could not be read:")
        lines += [f"    {e['path']}: {e['error']}" for e in r["errors"][:20]]
        if len(r["errors"]) > 20:
            lines.append(f"    ... and {len(r['errors']) - 20} more (see the JSON file)")
    if r.get("files"):
        lines.append(f"  written: {r['files']['scores']}, {r['files']['json']} "
                     "(+ pr/roc curve CSVs)")
    return "\n".join(lines)


def default_run(project_root: str) -> str:
    """The run `evaluate` takes without --run: the active run, else the newest finished
    one (said on stderr); UserError when there is none."""
    from defect_studio.errors import UserError
    from defect_studio.project import Project

    with Project.open(project_root, readonly=True) as p:
        active = p.active_run()
        finished = [r.id for r in p.runs() if r.state == "finished"]
    if active:
        print(f"evaluating the active run {active}", file=sys.stderr)
        return active
    if not finished:
        raise UserError(f"{project_root} has no finished run: train one first, or name one "
                        "with --run")
    print(f"evaluating the newest finished run {finished[-1]} (no active run set)",
          file=sys.stderr)
    return finished[-1]


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate --run on --split of --project; prints JSON (--json) or a summary."""
    from defect_studio.evaluation import evaluate_run
    from defect_studio.evaluation.evaluate import without_curves
    from defect_studio.inference.cli import progress_printer

    run_id = args.run if args.run is not None else default_run(args.project)
    result = evaluate_run(args.project, run_id, args.split, progress=progress_printer())
    if args.json:
        print(json.dumps(without_curves(result), indent=2))
    else:
        print(format_summary(result))
    if result.get("save_error"):
        print(f"error: the results could not be saved in the run folder: "
              f"{result['save_error']}; the metrics above are complete", file=sys.stderr)
        return 1
    return 0
