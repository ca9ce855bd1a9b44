"""The Evaluate page's state and decisions, without Qt (EvaluatePage only shows them).

Which run is shown, its evaluation read back from the files evaluate_run writes, the
threshold (best F1, for an escape rate, or set by hand) and its confusion counts, the
images behind each confusion cell, and the texts that describe them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EVAL_SPLITS = ("test", "val", "all")
EVALUATION_FILE = "evaluation.json"  # the last evaluate_run result without its curves
THRESHOLD_FILE = "threshold.json"
CELLS = ("tp", "fn", "fp", "tn")
THRESHOLD_DECIMALS = 6  # the page shows, counts with and saves the threshold at this grid


def on_grid(t: float) -> float:
    """``t`` rounded DOWN to THRESHOLD_DECIMALS: a threshold chosen at a score (score >= t
    is NG) is shown, counted with and saved as one value that still calls that score NG."""
    scale = 10 ** THRESHOLD_DECIMALS
    g = math.floor(float(t) * scale + 1e-6) / scale  # a value already on the grid stays
    while g > t:  # float noise of the division
        g = (math.floor(g * scale) - 1) / scale
    return g


def fmt_threshold(t: float) -> str:
    """A threshold as the page shows it (as its spin box does): THRESHOLD_DECIMALS digits."""
    return f"{t:.{THRESHOLD_DECIMALS}f}"
CELL_TITLES = {"tp": "Defects caught (true NG)", "fn": "Missed defects (escapes)",
               "fp": "False alarms (good parts called NG)", "tn": "Good parts passed (true OK)"}


@dataclass
class RunEvaluation:
    """What the page shows of one run's evaluation (read from the files evaluate_run writes)."""

    run_id: str
    split: str
    y_true: np.ndarray  # 1 = defective
    scores: np.ndarray
    pr: dict  # precision, recall (arrays)
    roc: dict  # fpr, tpr (arrays)
    threshold: float | None  # the run's threshold.json value
    threshold_source: str
    image_ids: list = field(default_factory=list)  # per score (None: not in the project)
    names: list = field(default_factory=list)  # file names, per score
    pixel: dict | None = None  # pixel metrics of the last evaluation (evaluation.json)


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _floats(rows: list[dict], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in rows if r.get(key, "") != ""], dtype=np.float64)


def load_evaluation(run_dir: Path) -> RunEvaluation | None:
    """The run's scores.csv + pr_curve.csv + roc_curve.csv; None when not evaluated yet."""
    run_dir = Path(run_dir)
    files = [run_dir / n for n in ("scores.csv", "pr_curve.csv", "roc_curve.csv")]
    if not all(f.is_file() for f in files):
        return None
    from defect_studio.errors import UserError

    try:
        scores_rows, pr_rows, roc_rows = (_read_csv(f) for f in files)
        y = np.array([1 if r["label"] == "defective" else 0 for r in scores_rows], dtype=np.int8)
        s = _floats(scores_rows, "score")
        pr = {"precision": _floats(pr_rows, "precision"), "recall": _floats(pr_rows, "recall")}
        roc = {"fpr": _floats(roc_rows, "fpr"), "tpr": _floats(roc_rows, "tpr")}
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"the evaluation files of run {run_dir.name} are damaged ({e}); "
                        "press Evaluate to write them again") from None
    splits = {r.get("split", "") for r in scores_rows}
    split = splits.pop() if len(splits) == 1 else "all"
    from defect_studio.inference.prediction import read_threshold

    thr, source = read_threshold(run_dir)
    ids = [int(r["image_id"]) if str(r.get("image_id", "")).isdigit() else None
           for r in scores_rows]
    names = [Path(str(r.get("path", ""))).name or f"row {n + 1}"
             for n, r in enumerate(scores_rows)]
    pixel = None
    try:
        saved = json.loads((run_dir / EVALUATION_FILE).read_text(encoding="utf-8"))
        if isinstance(saved, dict) and isinstance(saved.get("pixel"), dict):
            pixel = saved["pixel"]
    except (OSError, ValueError):
        pass
    return RunEvaluation(run_dir.name, split or "all", y, s, pr, roc, thr, source, ids, names,
                         pixel)


def evaluate_and_load(project_root: Path, run_id: str, split: str) -> RunEvaluation | None:
    """Score the split with the run (defect_studio.evaluation.evaluate_run), keep its
    summary for the next time the run is shown, and read the result back."""
    from defect_studio.evaluation import evaluate_run
    from defect_studio.evaluation.evaluate import without_curves
    from defect_studio.project.runs import write_json_atomic

    root = Path(project_root)
    result = evaluate_run(root, run_id, split=split)
    try:  # pixel metrics and counts, shown again when the run is reopened
        write_json_atomic(root / "runs" / run_id / EVALUATION_FILE, without_curves(result))
    except (OSError, TypeError, ValueError):
        pass
    return load_evaluation(root / "runs" / run_id)


@dataclass(frozen=True)
class CellRow:
    """One image of a confusion cell."""

    image_id: int | None
    name: str
    score: float
    label: str


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


class EvaluateState:
    """The open project, the run shown, its evaluation and the threshold."""

    def __init__(self) -> None:
        self.project = None
        self.evaluation: RunEvaluation | None = None
        self.metrics: dict | None = None
        self.sweep = None
        self.threshold = 0.5
        self._active_seen: str | None = None  # the active run when the list was last read

    # -- runs ------------------------------------------------------------------------------
    def forget_runs(self) -> None:
        """Another project: the next list read opens its active run."""
        self._active_seen = None

    def runs(self) -> list[tuple[str, str]]:
        """(run id, text) of the finished runs, newest first; the active one is marked."""
        if self.project is None:
            return []
        active = self.project.active_run()
        return [(r.id, r.id + ("  (active)" if r.id == active else ""))
                for r in reversed(self.project.runs()) if r.state == "finished"]

    def run_to_show(self, current: str | None, listed: list[str] | None = None) -> str | None:
        """The run shown after the list is read again: the active run when it changed since
        the list was last read (the page opens the run marked "(active)"), else the one
        shown, else the active run, else the newest finished one."""
        listed = [r for r, _ in self.runs()] if listed is None else listed
        active = self.project.active_run() if self.project is not None else None
        changed, self._active_seen = active != self._active_seen, active
        if not listed:
            return None
        order = (active, current) if changed else (current, active)
        for want in order:
            if want in listed:
                return want
        return listed[0]

    def run_dir(self, run_id: str) -> Path:
        return Path(self.project.runs_dir) / run_id

    def load(self, run_id: str) -> RunEvaluation | None:
        """The run's evaluation files (None: not evaluated yet; UserError: damaged)."""
        return load_evaluation(self.run_dir(run_id))

    # -- the evaluation --------------------------------------------------------------------
    def set_evaluation(self, ev: RunEvaluation | None) -> bool:
        """Show an evaluation (None: nothing). The threshold starts at the run's saved one,
        else at the best F1 (0.5 when there is none). False when there is nothing to show."""
        from defect_studio.evaluation.metrics import ThresholdSweep, image_metrics

        self.evaluation, self.metrics, self.sweep = ev, None, None
        if ev is None or ev.scores.size == 0:
            return False
        self.metrics = image_metrics(ev.y_true, ev.scores)
        self.sweep = ThresholdSweep(ev.y_true, ev.scores)
        start = ev.threshold
        if start is None:
            start = self.best_f1_threshold()
            start = 0.5 if start is None else start
        self.set_threshold(float(start), exact=ev.threshold is not None)
        return True

    def ready(self) -> bool:
        return self.sweep is not None

    # -- the threshold ---------------------------------------------------------------------
    def set_threshold(self, t: float, exact: bool = False) -> float:
        """Clamp to [0, 1], round down to the grid the page shows (on_grid) and take it;
        the threshold taken, which is the value shown, counted with and saved. ``exact``
        keeps a run's saved threshold as it is (counted as saved, saved again unchanged)."""
        t = min(1.0, max(0.0, float(t)))
        self.threshold = t if exact else on_grid(t)
        return self.threshold

    def best_f1_threshold(self) -> float | None:
        if self.metrics and self.metrics["best_f1"]["threshold"] is not None:
            return float(self.metrics["best_f1"]["threshold"])
        return None

    def threshold_for_escape_rate(self, fraction: float) -> float:
        """The highest threshold that misses at most `fraction` of the defective images
        (fewest false alarms); taken as the threshold. UserError when none does."""
        from defect_studio.evaluation.operating_point import threshold_for_escape_rate

        ev = self.evaluation
        op = threshold_for_escape_rate(ev.y_true, ev.scores, float(fraction))
        return self.set_threshold(op["threshold"])

    def counts(self, threshold: float | None = None) -> dict | None:
        """Confusion dict at the threshold (or at `threshold`): tp, fp, tn, fn, precision,
        recall, f1..."""
        t = self.threshold if threshold is None else float(threshold)
        return self.sweep.at(t) if self.sweep is not None else None

    def threshold_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / THRESHOLD_FILE

    def save_threshold(self, run_id: str, threshold: float | None = None) -> float:
        """Write threshold.json of the run: {"threshold": t, "source": "user"} with the
        threshold (or `threshold`); OSError when it cannot. The evaluation shown takes it."""
        from defect_studio.project.runs import write_json_atomic

        t = self.threshold if threshold is None else float(threshold)
        if not math.isfinite(t):
            raise ValueError("the threshold is not a number")
        if threshold is not None:
            t = on_grid(min(1.0, max(0.0, t)))
        write_json_atomic(self.threshold_path(run_id), {"threshold": t, "source": "user"})
        if self.evaluation is not None and self.evaluation.run_id == run_id:
            self.evaluation.threshold, self.evaluation.threshold_source = t, "user"
        return t

    # -- confusion cells -------------------------------------------------------------------
    def cell_rows(self, cell: str, threshold: float | None = None) -> list[CellRow]:
        """The images of a confusion cell at the threshold (or `threshold`), worst first."""
        from defect_studio.evaluation.operating_point import cell_members

        if cell not in CELLS:
            raise ValueError(f"unknown confusion cell {cell!r}")
        ev = self.evaluation
        if ev is None:
            return []
        return [CellRow(ev.image_ids[i], ev.names[i], float(ev.scores[i]),
                        "defective" if ev.y_true[i] else "ok")
                for i in cell_members(ev.y_true, ev.scores,
                                      self.threshold if threshold is None else threshold, cell)]

    # -- texts and marker positions --------------------------------------------------------
    def summary(self) -> tuple[str, str]:
        """(header, tooltip): one clear AP in the header; both AP variants and the counts
        on hover."""
        ev, m = self.evaluation, self.metrics
        if ev is None or m is None:
            return "", ""
        text = (f"<b>AP {_fmt(m['ap_sklearn'])}</b> \u00b7 ROC AUC {_fmt(m['auc'])} \u00b7 "
                f"run {ev.run_id}, {ev.split} split: {m['n']} images, {m['n_pos']} defective")
        if ev.threshold is not None:
            text += f" \u00b7 threshold {fmt_threshold(ev.threshold)} ({ev.threshold_source})"
        if m.get("note"):
            text += f" \u00b7 note: {m['note']}"
        tip = (f"AP = average precision (scikit-learn): {_fmt(m['ap_sklearn'])}\n"
               f"AP as the trapezoidal area under the PR curve: {_fmt(m['ap_trapz'])}\n"
               f"ROC AUC: {_fmt(m['auc'])}\n"
               f"Images: {m['n']} ({m['n_pos']} defective, {m['n'] - m['n_pos']} OK)")
        return text, tip

    def pixel_text(self) -> str:
        ev = self.evaluation
        px = (ev.pixel if ev is not None else None) or {}
        if px.get("pixel_auroc") is not None:
            return (f"Pixel level ({px.get('n_images', '?')} images with masks or OK): "
                    f"AUROC {_fmt(px.get('pixel_auroc'))} \u00b7 AP {_fmt(px.get('pixel_ap'))}"
                    + (" (sampled pixels)" if px.get("subsampled") else ""))
        if px:
            return f"Pixel level: {px.get('note', 'not available')}."
        return ""

    @staticmethod
    def rates_text(c: dict | None) -> str:
        if c is None:
            return ""
        called = c["tp"] + c["fp"]
        n_pos = c["tp"] + c["fn"]
        # Above the top score nothing is called NG: precision is undefined, not 0.
        prec = f"{c['precision']:.3f}" if called else "\u2014 (no part called NG)"
        escape = f"{c['fn'] / n_pos * 100:.1f} % ({c['fn']} of {n_pos})" if n_pos else "\u2014"
        return (f"Precision {prec}\nRecall {c['recall']:.3f}\nF1 {c['f1']:.3f}\n"
                f"Accuracy {c['accuracy']:.3f}\nEscape rate {escape}")

    @staticmethod
    def markers(c: dict) -> tuple[tuple[float, float], tuple[float, float]]:
        """((recall, precision), (fpr, tpr)): where the threshold sits on the PR and ROC
        curves. With no NG call precision is undefined; the marker sits at the curve's end
        (recall 0, precision 1)."""
        neg = c["fp"] + c["tn"]
        fpr = c["fp"] / neg if neg else 0.0
        prec = c["precision"] if (c["tp"] + c["fp"]) else 1.0
        return (c["recall"], prec), (fpr, c["recall"])
