"""The Review page's viewer: the overlay (zoomable, colour bar, peak marker), the part side
by side as image | heatmap | true mask | predicted mask, and one part under two runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.heatmap_view import HeatmapView, heat_peak
from defect_studio.app.common.heatmaps import expand_heatmap
from defect_studio.app.common.jobs import PredictionItem, PredictionWorker
from defect_studio.app.common.zoom_image import ZoomImage, link_views
from defect_studio.inference.overlay import colorize, to_rgb_uint8

PANES = ("Image", "Heatmap", "True mask", "Predicted mask")


def mask_rgb(image_rgb: np.ndarray, mask: np.ndarray, color=(255, 60, 60)) -> np.ndarray:
    """The image dimmed, with mask pixels in `color`: shape and place of a defect at a glance."""
    out = (image_rgb.astype(np.float32) * 0.45).astype(np.uint8)
    out[np.asarray(mask) != 0] = color
    return out


class SideBySide(QWidget):
    """Four linked panes: zoom or pan one, all follow."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.panes = {name: ZoomImage() for name in PANES}
        for name, pane in self.panes.items():
            pane.caption = name
        link_views(list(self.panes.values()))
        self.mask_threshold = QDoubleSpinBox()
        self.mask_threshold.setRange(0.01, 0.99)
        self.mask_threshold.setSingleStep(0.05)
        self.mask_threshold.setValue(0.5)
        self.mask_threshold.setToolTip("Heat at or above this is drawn as predicted defect")
        self.mask_threshold.valueChanged.connect(lambda _v: self._render())
        self.colormap = "jet"
        self.info = QLabel("")
        grid = QGridLayout()
        for n, pane in enumerate(self.panes.values()):
            grid.addWidget(pane, n // 2, n % 2)
        row = QHBoxLayout()
        row.addWidget(QLabel("Predicted mask at heat \u2265"))
        row.addWidget(self.mask_threshold)
        row.addWidget(self.info, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(grid, 1)
        lay.addLayout(row)
        self._image = self._heat = self._mask = None
        self._label = "unlabeled"

    def set_content(self, image: np.ndarray | None, heat: np.ndarray | None,
                    mask: np.ndarray | None, label: str = "unlabeled") -> None:
        """image: any depth; heat: float [0,1] at image size; mask: HxW (None: no mask)."""
        self._image = None if image is None else to_rgb_uint8(image)
        self._heat, self._mask, self._label = heat, mask, label
        self._render()

    def predicted_mask(self) -> np.ndarray | None:
        if self._heat is None:
            return None
        return np.asarray(self._heat) >= self.mask_threshold.value()

    def _render(self) -> None:
        img = self._image
        p = self.panes
        if img is None:
            for pane in p.values():
                pane.set_rgb(None)
            self.info.setText("")
            return
        p["Image"].set_rgb(img)
        peak = heat_peak(self._heat, img.shape[:2])
        if self._heat is None:
            for name in ("Heatmap", "Predicted mask"):
                p[name].set_rgb(None)
                p[name].set_message("Heatmap not computed yet\u2026")
        else:
            p["Heatmap"].set_rgb(colorize(self._heat, self.colormap))
            p["Heatmap"].markers = [peak[1:]]
            pred = self.predicted_mask()
            p["Predicted mask"].set_rgb(mask_rgb(img, pred, (255, 170, 0)))
            p["Predicted mask"].markers = [peak[1:]]
        if self._mask is not None:
            p["True mask"].set_rgb(mask_rgb(img, self._mask))
        elif self._label == "ok":
            p["True mask"].set_rgb(mask_rgb(img, np.zeros(img.shape[:2], bool)))
        else:
            p["True mask"].set_rgb(None)
            p["True mask"].set_message("No mask painted for this part")
        text = []
        if peak is not None:
            n_pred = int(np.count_nonzero(self.predicted_mask()))
            text.append(f"peak heat {peak[0]:.3f} at ({peak[1]:.0f}, {peak[2]:.0f}); "
                        f"{n_pred} pixels predicted defective")
        if self._mask is not None and self._heat is not None:
            true = np.asarray(self._mask) != 0
            pred = self.predicted_mask()
            union = np.count_nonzero(true | pred)
            iou = np.count_nonzero(true & pred) / union if union else 1.0
            text.append(f"IoU with the true mask {iou:.2f}")
        self.info.setText("; ".join(text))


class CompareRuns(QWidget):
    """The shown part under the active run and under another run, linked."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.run_combo = QComboBox()
        self.run_combo.setToolTip("Another run to score the same part with")
        self.run_combo.currentIndexChanged.connect(lambda _i: self._score_other())
        self.left, self.right = HeatmapView(), HeatmapView()
        link_views([self.left, self.right])
        self.left_caption, self.right_caption = QLabel(""), QLabel("")
        panes = QGridLayout()
        panes.addWidget(self.left_caption, 0, 0)
        panes.addWidget(self.right_caption, 0, 1)
        panes.addWidget(self.left, 1, 0)
        panes.addWidget(self.right, 1, 1)
        panes.setRowStretch(1, 1)
        top = QHBoxLayout()
        top.addWidget(QLabel("Compare with run"))
        top.addWidget(self.run_combo, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addLayout(panes, 1)
        self._project = None
        self._run_id: str | None = None
        self._item = None
        self._image = None
        self._worker: PredictionWorker | None = None
        self._retired: list[PredictionWorker] = []
        self.right.set_message("Choose a run to compare with.")

    def set_runs(self, project, active: str | None) -> None:
        """List the project's other runs with a model."""
        from defect_studio.app.train.state import has_model

        self._project, self._run_id = project, active
        keep = self.run_combo.currentData()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        self.run_combo.addItem("(none)", None)
        if project is not None:
            for r in reversed(project.runs()):
                if r.id != active and has_model(r):
                    self.run_combo.addItem(r.id, r.id)
        idx = self.run_combo.findData(keep)
        self.run_combo.setCurrentIndex(max(0, idx))
        self.run_combo.blockSignals(False)
        self.left_caption.setText(f"Run {active}" if active else "")

    def other_run(self) -> str | None:
        return self.run_combo.currentData()

    def set_content(self, item, image, heat) -> None:
        """The review item (path, image_id, score, is_ng) with its image and active-run heat."""
        self._item, self._image = item, image
        if item is None or image is None:
            self.left.clear()
            self.right.clear()
            return
        self.left.set_content(image, heat, item.score, item.is_ng)
        self._score_other()

    def _score_other(self) -> None:
        run = self.other_run()
        self._retire()
        if run is None or self._item is None or self._project is None:
            self.right.clear()
            self.right.set_message("Choose a run to compare with.")
            self.right_caption.setText("")
            return
        self.right.clear()
        self.right.set_message(f"Scoring with run {run}\u2026")
        self.right_caption.setText(f"Run {run}")
        w = PredictionWorker(Path(self._project.runs_dir) / run,
                             [PredictionItem(self._item.path, self._item.image_id,
                                             self._item.name)], parent=self)
        w.results.connect(lambda results, run=run: self._on_other(run, results))
        self._worker = w
        w.start()

    def _on_other(self, run: str, results) -> None:
        if run != self.other_run() or self._item is None or self._image is None:
            return
        for r in results:
            if r.item.path != self._item.path:
                continue
            if r.error:
                self.right.set_message(f"Run {run}: {r.error}")
                continue
            heat = expand_heatmap(r.heatmap, self._image.shape[:2]) if r.heatmap is not None \
                else None
            self.right.set_content(self._image, heat, r.score, r.is_ng)
            self.right_caption.setText(f"Run {run}: score {r.score:.4f}, "
                                       f"{'NG' if r.is_ng else 'OK'}")

    def is_busy(self) -> bool:
        return self._worker is not None and self._worker.isRunning()

    def _retire(self) -> None:
        w, self._worker = self._worker, None
        if w is None:
            return
        try:
            w.results.disconnect()
        except (RuntimeError, TypeError):
            pass
        w.cancel()
        if w.isRunning():
            self._retired.append(w)
            w.finished.connect(lambda w=w: self._retired.remove(w) if w in self._retired
                               else None)
        else:
            w.deleteLater()

    def shutdown(self) -> None:
        self._retire()
        for w in list(self._retired):
            w.wait(5000)


class ReviewViewer(QTabWidget):
    """Tabs: Overlay (the given HeatmapView), Side by side, Compare runs."""

    def __init__(self, overlay_view: HeatmapView, parent=None) -> None:
        super().__init__(parent)
        self.overlay = overlay_view
        self.side = SideBySide()
        self.compare = CompareRuns()
        self.addTab(overlay_view, "Overlay")
        self.addTab(self.side, "Side by side")
        self.addTab(self.compare, "Compare runs")
        self.setToolTip("Wheel: zoom at the cursor \u00b7 drag: pan \u00b7 double-click or F: fit")
        self.currentChanged.connect(lambda _i: self._refresh_current())
        self._args = None

    def set_runs(self, project, active: str | None) -> None:
        self.compare.set_runs(project, active)

    def show_item(self, item, image, heat, mask, label: str) -> None:
        """What the overlay shows, also in the other tabs (computed for the visible one)."""
        self._args = (item, image, heat, mask, label)
        self._refresh_current()

    def fit_all(self) -> None:
        """Every pane shows the whole part again (zoom and pan are per part)."""
        self.overlay.set_view(0.0, 0.0, 0.0)
        for pane in (*self.side.panes.values(), self.compare.left, self.compare.right):
            pane.set_view(0.0, 0.0, 0.0)

    def clear(self) -> None:
        self._args = None
        self.side.set_content(None, None, None)
        self.compare.set_content(None, None, None)

    def _refresh_current(self) -> None:
        if self._args is None:
            return
        item, image, heat, mask, label = self._args
        w = self.currentWidget()
        if w is self.side:
            self.side.colormap = self.overlay.colormap()
            self.side.set_content(image, heat, mask, label)
        elif w is self.compare:
            self.compare.left.set_colormap(self.overlay.colormap())
            self.compare.right.set_colormap(self.overlay.colormap())
            self.compare.set_content(item, image, heat)

    def shutdown(self) -> None:
        self.compare.shutdown()

