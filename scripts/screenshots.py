"""Drive the real app on a fresh demo project and save screenshots (called by screenshots.sh).

Steps: label page with a painted mask; train a tiny run through the Train page (live
curves); review with a heatmap. The train and review steps run only when those pages
are available; otherwise they are skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QPointF, QSettings, Qt
from PySide6.QtGui import QImage, QMouseEvent, qRgb
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait(seconds: float, until=None) -> bool:
    """Run the event loop for up to `seconds`, or until `until()` is true."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    return until is None


def save(win, out: Path, name: str) -> None:
    """Grab the window and save a small PNG (1280x800 in well under ~150 KB).

    A 256-colour palette fitted to the shot (k-means on a pixel sample) keeps the
    textures faithful; Qt's fixed palette would posterise them.
    """
    wait(0.3)
    img = win.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(
        img.height(), img.bytesPerLine() // 4, 4)[:, :img.width(), :3]
    pixels = a.reshape(-1, 3).astype(np.float32)
    sample = pixels[np.random.default_rng(0).choice(len(pixels), 30000, replace=False)]
    _, _, centres = cv2.kmeans(sample, 256, None, (cv2.TERM_CRITERIA_MAX_ITER, 8, 1.0), 1,
                               cv2.KMEANS_PP_CENTERS)
    table = [qRgb(int(r), int(g), int(b)) for b, g, r in np.clip(centres, 0, 255)]
    small = img.convertToFormat(QImage.Format.Format_Indexed8, table,
                                Qt.ImageConversionFlag.ThresholdDither)
    path = out / f"{name}.png"
    small.save(str(path), "PNG", 9)
    print(f"saved {path} ({path.stat().st_size // 1024} KB, {img.width()}x{img.height()})")


def drag(canvas, points) -> None:
    """A left-button stroke through image points, sent as real mouse events."""
    vp = canvas.viewport()
    pos = [canvas.mapFromScene(QPointF(x, y)).toPointF() for x, y in points]
    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton

    def send(kind, p, button, buttons):
        ev = QMouseEvent(kind, p, vp.mapToGlobal(p.toPoint()).toPointF(), button, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(vp, ev)
        QApplication.processEvents()

    send(QEvent.Type.MouseButtonPress, pos[0], left, left)
    for p in pos[1:]:
        send(QEvent.Type.MouseMove, p, none, left)
    send(QEvent.Type.MouseButtonRelease, pos[-1], left, none)


def label_step(win, out: Path) -> None:
    page = win.label_page
    b = page.browser
    recs = [b.model.record(i) for i in b.model.image_ids()]
    # The defective image with the largest mask among the first few: a visible defect.
    masked = [r for r in recs if r.label == "defective" and r.has_mask][:12] or recs[:1]
    def area(rec) -> int:
        m = win.project.load_mask(rec.id) if rec.has_mask else None
        return 0 if m is None else int(np.count_nonzero(m))

    target = max(masked, key=area)
    b.select_image(target.id)
    wait(0.5)
    canvas = page.canvas
    mask = canvas.mask()
    ys, xs = np.nonzero(mask) if mask is not None and mask.any() else ([target.height // 2],
                                                                      [target.width // 2])
    cx, cy = float(np.mean(xs)), float(np.mean(ys))
    canvas.set_tool("brush")
    canvas.set_brush_size(max(4, target.width // 16))
    # A stroke from the defect's centre out past its edge, like a user touching up its mask.
    x_end = float(np.max(xs)) + canvas.brush_size
    drag(canvas, [(cx + (x_end - cx) * t / 10, cy) for t in range(11)])
    canvas.mouseMoveEvent(QMouseEvent(
        QEvent.Type.MouseMove, canvas.mapFromScene(QPointF(cx + 14, cy + 10)).toPointF(),
        QPointF(), Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier))
    page.browser.view.scrollTo(page.browser.model.index(page.browser.model.row_of(target.id)))
    wait(1.5, until=lambda: len(b.model._thumbs) >= min(12, b.model.rowCount()))
    save(win, out, "label")


def train_step(win, out: Path, epochs: int, timeout: float, size: int = 128) -> bool:
    train = win.pages.get("Train")
    if not win.page_ok.get("Train") or not hasattr(train, "start_training"):
        print("skipped the training screenshot: the Train page is not available")
        return False
    win.tabs.setCurrentWidget(train)
    for name, value in (("epochs_spin", epochs), ("width_spin", size), ("height_spin", size)):
        spin = getattr(train, name, None)
        if spin is not None:
            spin.setValue(value)
    ended: list[str] = []
    train.job_ended.connect(ended.append)
    train.start_training()
    print(f"training {epochs} epochs through the Train page...")
    # The finished run shows the whole loss curve and the validation points; if it
    # does not finish in time, the running state is shown instead.
    if not wait(timeout, until=lambda: bool(ended)):
        save(win, out, "train")
        print("training did not finish in time; the train screenshot shows it running")
        return False
    print(f"training ended: {ended[0]}")
    save(win, out, "train")
    return ended[0] == "finished"


def review_step(win, out: Path, timeout: float) -> None:
    review = win.pages.get("Review")
    if not win.page_ok.get("Review") or not hasattr(review, "predict"):
        print("skipped the review screenshot: the Review page is not available")
        return
    win.tabs.setCurrentWidget(review)
    review.refresh()
    done: list[str] = []
    review.prediction_ended.connect(done.append)
    if not review.predict("test"):
        print("skipped the review screenshot: nothing to predict")
        return
    if not wait(timeout, until=lambda: bool(done)):
        print("prediction did not finish in time")
    rows = review.model.rowCount() if hasattr(review, "model") else 0
    best = 0
    items = getattr(review.model, "items", None)
    if callable(items):
        scores = [getattr(it, "score", 0.0) for it in items()]
        best = int(np.nanargmax(scores)) if scores else 0
    if rows:
        review.select_row(best)
    wait(3.0)
    save(win, out, "review")
    viewer = getattr(review, "viewer", None)
    if viewer is not None:
        # the same part side by side: image | heatmap | true mask | predicted mask
        masked = [r for r, it in enumerate(review.model.items())
                  if it.image_id is not None and win.project.image(it.image_id).has_mask]
        if masked:
            review.select_row(masked[0])
        viewer.setCurrentWidget(viewer.side)
        wait(3.0, until=lambda: viewer.side.panes["Heatmap"]._qimage is not None)
        save(win, out, "review-side")
        viewer.setCurrentIndex(0)


def evaluate_step(win, out: Path, timeout: float) -> None:
    ev = win.pages.get("Evaluate")
    if not win.page_ok.get("Evaluate") or not hasattr(ev, "evaluate"):
        print("skipped the evaluate screenshot: the Evaluate page is not available")
        return
    loaded: list[str] = []
    ev.evaluation_loaded.connect(loaded.append)
    win.tabs.setCurrentWidget(ev)
    ev.refresh()
    if ev._eval is None and not wait(timeout, until=lambda: bool(loaded) or ev._eval is not None):
        print("evaluation did not finish in time")
        return
    if hasattr(ev, "show_cell"):
        counts = ev.counts() or {}
        ev.show_cell(*((1, 0) if counts.get("fp") else (0, 1) if counts.get("fn") else (0, 0)))
    wait(1.0)
    save(win, out, "evaluate")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--count", type=int, default=80, help="demo images")
    ap.add_argument("--size", type=int, default=192, help="demo image size (square)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train-size", type=int, default=128, help="training input size (square)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per long step")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the generated demo project")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ds-shots-"))
    # Own settings: the screenshots must not depend on (or change) the user's app state.
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(work / "cfg"))

    from defect_studio.app.shell.window import MainWindow, create_app
    from defect_studio.demo import generate_demo_project

    _app = create_app()
    t0 = time.monotonic()
    project = generate_demo_project(work / "demo", count=args.count,
                                    size=(args.size, args.size), seed=0, defect_rate=0.3)
    project.close()
    print(f"demo project: {args.count} images in {time.monotonic() - t0:.1f} s at {work / 'demo'}")
    win = MainWindow()
    win.resize(1280, 800)
    win.show()
    wait(0.5)
    if not win.open_project(work / "demo"):
        print("could not open the demo project", file=sys.stderr)
        return 1
    win.resize(1280, 800)
    try:
        label_step(win, out)
        if not args.skip_train and train_step(win, out, args.epochs, args.timeout,
                                                  args.train_size):
            evaluate_step(win, out, args.timeout)
            review_step(win, out, args.timeout)
    finally:
        win.close()  # stops the background threads and releases the project
        win.deleteLater()
        wait(0.5)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is saved and the window is closed; skip the interpreter's teardown of
    # the remaining Qt/pyqtgraph objects, which can abort at exit ("none_dealloc").
    os._exit(code)
