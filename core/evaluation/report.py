"""The evaluation report of a run as a self-contained HTML page (no Qt): run settings,
data counts, metrics, curves, confusion matrix and the worst misses and false alarms as
thumbnails — what a quality engineer attaches to a release decision.

Pictures go into a "<name>_files" folder next to the HTML; curve pictures are rendered
by the caller (the GUI grabs its plots) and passed in as PNG files.
"""

from __future__ import annotations

import csv
import html
import json
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from defect_studio.errors import DataError, ProjectError
from defect_studio.evaluation.metrics import confusion_at, image_metrics
from defect_studio.evaluation.operating_point import cell_members

THUMB_SIDE = 140
# An A4 page with 15 mm margins is 180 mm = 510 points wide, the width Qt lays the
# report out in when it prints the PDF: two curves and three thumbnails per row fit it.
THUMBS_PER_ROW = 3
CURVE_WIDTH = 245
SETTINGS = ("model", "epochs", "input_size", "lr", "batch", "seed", "device", "created")


def _read_json(path: Path) -> dict:
    try:
        v = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def _scores(run_dir: Path) -> list[dict]:
    path = run_dir / "scores.csv"
    if not path.is_file():
        raise DataError(f"run {run_dir.name} has not been evaluated yet (no scores.csv): "
                        "evaluate it first (Evaluate page or `defect-studio evaluate`)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        try:
            score = float(r["score"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(score):
            out.append({**r, "score": score, "defective": r.get("label") == "defective"})
    return out


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if not isinstance(v, (int, float)) or not math.isfinite(v) else f"{v:.{digits}f}"


def _thumbnail(project, image_id: int, out: Path) -> bool:
    """A small 8-bit PNG of an image of the project; False when it cannot be read."""
    import cv2

    from defect_studio.errors import UserError
    from defect_studio.io.images import write_png_atomic

    try:
        rec = project.image(image_id)
        img = project.read_image(rec)
    except (UserError, OSError, KeyError, ValueError):
        return False
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    h, w = img.shape[:2]
    scale = THUMB_SIDE / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    write_png_atomic(out, img)
    return True


def build_report(project, run_id: str, out_html: str | Path, *, threshold: float | None = None,
                 curve_images: dict[str, str | Path] | None = None, n_worst: int = 6,
                 app_version: str = "") -> Path:
    """Write the report of `run_id` to `out_html` (+ a "<stem>_files" folder); its path.

    threshold: the decision threshold to report (default: the run's threshold.json, else
    best F1). curve_images: {"title": png path} copied into the report. DataError when the
    run has no evaluation or the threshold is not a number in 0..1.
    """
    run_dir = project.run_dir(run_id)
    if not run_dir.is_dir():
        raise ProjectError(f"there is no run '{run_id}' in this project")
    rows = _scores(run_dir)
    if not rows:
        raise DataError(f"run {run_id} has no valid scores to report; evaluate it again")
    y = np.array([int(r["defective"]) for r in rows])
    s = np.array([r["score"] for r in rows], dtype=np.float64)
    m = image_metrics(y, s)
    thr_file = _read_json(run_dir / "threshold.json")
    saved = thr_file.get("threshold")
    source = "chosen for this report (not saved with the run)"
    if (threshold is not None and isinstance(saved, (int, float))
            and isinstance(threshold, (int, float)) and abs(float(threshold) - saved) < 1e-9):
        source = f"run ({thr_file.get('source', '?')})"
    if threshold is None:
        t = thr_file.get("threshold")
        if isinstance(t, (int, float)) and math.isfinite(t):
            threshold, source = float(t), f"run ({thr_file.get('source', '?')})"
        else:
            threshold, source = m["best_f1"]["threshold"] or 0.5, "best F1"
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise DataError(f"threshold must be a number, got {threshold!r}") from None
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise DataError(f"threshold must be from 0 to 1, got {threshold!r}")
    c = confusion_at(y, s, threshold)

    out_html = Path(out_html)
    if out_html.suffix.lower() not in (".html", ".htm"):
        out_html = out_html.with_suffix(".html")
    files = out_html.parent / f"{out_html.stem}_files"
    if files.exists() and not files.is_dir():
        raise DataError(f"'{files}' is a file; choose another report name")
    files.mkdir(parents=True, exist_ok=True)  # our pictures are overwritten, nothing else
    rel = files.name

    config = _read_json(run_dir / "config.json")
    evaluation = _read_json(run_dir / "evaluation.json")
    counts = project.counts()
    e = html.escape
    parts: list[str] = []
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<h1>Evaluation report: run {e(run_id)}</h1>")
    parts.append(f"<p>Project <b>{e(Path(project.root).name)}</b> \u00b7 written {now}"
                 + (f" \u00b7 Defect Studio {e(app_version)}" if app_version else "") + "</p>")

    parts.append("<h2>Run settings</h2><table border='1' cellspacing='0' cellpadding='4'>")
    for key in SETTINGS:
        v = config.get(key)
        if isinstance(v, dict):
            v = v.get("name", json.dumps(v))
        if isinstance(v, list):
            v = "\u00d7".join(str(x) for x in v)
        if v is not None:
            parts.append(f"<tr><td>{e(key)}</td><td>{e(str(v))}</td></tr>")
    parts.append("</table>")

    sp = counts["splits"]
    parts.append("<h2>Data</h2><table border='1' cellspacing='0' cellpadding='4'>"
                 f"<tr><td>Images</td><td>{counts['images']}</td></tr>"
                 f"<tr><td>OK / defective / unlabelled</td><td>{counts['ok']} / "
                 f"{counts['defective']} / {counts['unlabeled']}</td></tr>"
                 f"<tr><td>Defective with a mask</td><td>{counts['defective_masked']}</td></tr>"
                 f"<tr><td>Train / val / test</td><td>{sp['train']} / {sp['val']} / "
                 f"{sp['test']}</td></tr>"
                 f"<tr><td>Evaluated</td><td>{m['n']} images ({m['n_pos']} defective)</td></tr>"
                 "</table>")

    n_pos = c["tp"] + c["fn"]
    escape = f"{c['fn'] / n_pos * 100:.1f} % ({c['fn']} of {n_pos})" if n_pos else "n/a"
    prec = _f(c["precision"]) if c["tp"] + c["fp"] else "n/a (no part called NG)"
    parts.append("<h2>Metrics</h2><table border='1' cellspacing='0' cellpadding='4'>"
                 f"<tr><td>AP (average precision)</td><td><b>{_f(m['ap_sklearn'])}</b></td></tr>"
                 f"<tr><td>ROC AUC</td><td>{_f(m['auc'])}</td></tr>"
                 f"<tr><td>Threshold</td><td>{threshold:.6f} ({e(source)})</td></tr>"
                 f"<tr><td>Precision / recall / F1</td><td>{prec} / {_f(c['recall'])} / "
                 f"{_f(c['f1'])}</td></tr>"
                 f"<tr><td>Escape rate (defects called OK)</td><td>{escape}</td></tr>")
    px = evaluation.get("pixel") if isinstance(evaluation.get("pixel"), dict) else {}
    if px.get("pixel_auroc") is not None:
        parts.append(f"<tr><td>Pixel AUROC / AP</td><td>{_f(px.get('pixel_auroc'))} / "
                     f"{_f(px.get('pixel_ap'))}</td></tr>")
    parts.append("</table>")
    if m.get("note"):
        parts.append(f"<p>Note: {e(str(m['note']))}</p>")

    parts.append("<h2>Confusion matrix</h2><table border='1' cellspacing='0' cellpadding='6'>"
                 "<tr><th></th><th>Called NG</th><th>Called OK</th></tr>"
                 f"<tr><th>Defective</th><td>{c['tp']}</td><td>{c['fn']} (escapes)</td></tr>"
                 f"<tr><th>OK</th><td>{c['fp']} (false alarms)</td><td>{c['tn']}</td></tr>"
                 "</table>")

    if curve_images:
        parts.append("<h2>Curves</h2><p>")
        for n, (title, png) in enumerate(curve_images.items()):
            src = Path(png)
            if src.is_file():
                dst = files / f"curve_{n}.png"
                shutil.copyfile(src, dst)
                parts.append(f"<img src='{e(rel)}/{dst.name}' alt='{e(title)}' "
                             f"width='{CURVE_WIDTH}'> ")
        parts.append("</p>")

    for cell, title in (("fn", "Worst missed defects (lowest scores)"),
                        ("fp", "Worst false alarms (highest scores)")):
        idx = cell_members(y, s, threshold, cell)[:max(0, int(n_worst))]
        parts.append(f"<h2>{title}</h2>")
        if not idx:
            parts.append("<p>None at this threshold.</p>")
            continue
        parts.append("<table cellpadding='4'><tr>")
        for k, i in enumerate(idx):
            if k and k % THUMBS_PER_ROW == 0:  # rows that fit an A4 page's width
                parts.append("</tr><tr>")
            r = rows[i]
            name = Path(str(r.get("path", ""))).name
            img = ""
            image_id = str(r.get("image_id", ""))
            if image_id.isdigit():
                thumb = files / f"{cell}_{image_id}.png"
                if _thumbnail(project, int(image_id), thumb):
                    img = f"<img src='{e(rel)}/{thumb.name}' alt='{e(name)}'><br>"
            parts.append(f"<td align='center' valign='top'>{img}{e(name)}<br>"
                         f"score {r['score']:.4f}</td>")
        parts.append("</tr></table>")

    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
           f"<title>Run {e(run_id)} report</title>"
           "<style>body{font-family:sans-serif;max-width:960px} td,th{text-align:left}"
           "</style></head><body>" + "\n".join(parts) + "</body></html>")
    from defect_studio.io.atomic import atomic_write_bytes

    atomic_write_bytes(out_html, doc.encode("utf-8"))
    return out_html
