"""Predicted boxes on the Review page (runs of the detector kind).

For the shown part: its predicted boxes at the run's threshold, drawn on the image with
type and confidence, and listed; "Accept box" stores the selected box (with the type
chosen in "as", to correct it) as a label, "Accept all" stores every listed box
(Project.set_boxes, source "prediction"). The type filter hides the parts in the queue
without a predicted box of that type. Predictions are computed on demand with the run's
DetectorPredictor and kept per image while the run stays the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from defect_studio.errors import UserError
from defect_studio.project.boxes import PALETTE, Box
from defect_studio.units import count_of


def is_detector_run(run_dir: Path | None) -> bool:
    """The run's predictions carry typed boxes (its kind says so in the registry)."""
    if run_dir is None or not (run_dir / "config.json").is_file():
        return False
    from defect_studio.kinds import kind_of_run

    return kind_of_run(run_dir).outputs_boxes


def draw_boxes(image: np.ndarray, boxes: list, colors: dict[str, str]) -> np.ndarray:
    """RGB uint8 copy of the image with the boxes (type and confidence) drawn on it."""
    import cv2

    from defect_studio.io.images import to_float01

    img = image
    if img.dtype != np.uint8:
        img = (to_float01(img) * 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    out = np.ascontiguousarray(img[:, :, :3]).copy()
    thick = max(1, round(max(out.shape[:2]) / 300))
    for b in boxes:
        c = colors.get(b.type.lower(), PALETTE[0]).lstrip("#")
        rgb = tuple(int(c[i:i + 2], 16) for i in (0, 2, 4))
        p0 = (int(round(b.x)), int(round(b.y)))
        p1 = (int(round(b.x + b.w)) - 1, int(round(b.y + b.h)) - 1)
        cv2.rectangle(out, p0, p1, rgb, thick)
        cv2.putText(out, f"{b.type} {b.score:.2f}", (p0[0], max(10, p0[1] - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.35 * thick, rgb, thick, cv2.LINE_AA)
    return out


class ReviewBoxes(QObject):
    """The boxes panel of a ReviewPage (see the module docstring)."""

    def __init__(self, panel) -> None:
        super().__init__(panel)
        self.panel = panel
        self._predictor = None
        self._predictor_dir: Path | None = None
        self._cache: dict[str, object] = {}  # image path -> DetectionPrediction
        self.widget = QWidget()
        self.type_filter = QComboBox()
        self.type_filter.addItem("All types", None)
        self.type_filter.setToolTip("Show only parts with a predicted box of this type")
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.as_type = QComboBox()
        self.as_type.setToolTip("The type the accepted box is stored with (correct it here)")
        self.accept_one = QPushButton("Accept box")
        self.accept_all = QPushButton("Accept all boxes")
        row = QHBoxLayout()
        row.addWidget(QLabel("Filter"))
        row.addWidget(self.type_filter, 1)
        row.addWidget(QLabel("as"))
        row.addWidget(self.as_type, 1)
        row.addWidget(self.accept_one)
        row.addWidget(self.accept_all)
        lay = QVBoxLayout(self.widget)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list)
        lay.addLayout(row)
        panel.detail_label.parentWidget().layout().addWidget(self.widget)
        self.widget.setVisible(False)
        self.list.currentRowChanged.connect(self._on_row)
        self.accept_one.clicked.connect(self.accept_selected)
        self.accept_all.clicked.connect(self.accept_every)
        self.type_filter.currentIndexChanged.connect(lambda _i: self.apply_filter())

    # ------------------------------------------------------------------ predictions
    def _detector(self):
        run_dir = self.panel._run_dir()
        if not is_detector_run(run_dir):
            self._predictor, self._predictor_dir, self._cache = None, None, {}
            return None
        if run_dir != self._predictor_dir:
            from defect_studio.inference import load_predictor

            self._predictor = load_predictor(run_dir, num_threads=1)
            self._predictor_dir, self._cache = run_dir, {}
        return self._predictor

    def prediction(self, path: str, image: np.ndarray | None = None):
        det = self._detector()
        if det is None:
            return None
        if path not in self._cache:
            if image is None:
                from defect_studio.io.images import read_image

                image = read_image(path)
            self._cache[path] = det.predict(image)
        return self._cache[path]

    def _colors(self) -> dict[str, str]:
        project = self.panel._project
        if project is None:
            return {}
        return {t.name.lower(): t.color for t in project.defect_types()}

    # ------------------------------------------------------------------ the shown part
    def decorate(self, item, image: np.ndarray) -> np.ndarray:
        """The image to show for `item`: with its predicted boxes when the run is a
        detector (and the panel filled), else unchanged."""
        try:
            pred = self.prediction(item.path, image)
        except UserError as e:
            self.panel.status_label.setText(f"Boxes not predicted: {e}")
            pred = None
        self.widget.setVisible(pred is not None)
        self._item, self._shown_boxes = item, []
        self.list.clear()
        if pred is None:
            return image
        self._refresh_type_lists()
        self._shown_boxes = pred.boxes_at(self._predictor.threshold)
        for b in self._shown_boxes:
            self.list.addItem(QListWidgetItem(
                f"{b.type}  {b.score:.2f}  at {b.x:.0f}, {b.y:.0f}  {b.w:.0f}x{b.h:.0f}"))
        if self._shown_boxes:
            self.list.setCurrentRow(0)
        return draw_boxes(image, self._shown_boxes, self._colors())

    def _refresh_type_lists(self) -> None:
        names = list(self._predictor.classes)
        project = self.panel._project
        if project is not None:
            names += [t.name for t in project.defect_types() if t.name not in names]
        if [self.as_type.itemText(i) for i in range(self.as_type.count())] != names:
            self.as_type.clear()
            self.as_type.addItems(names)
        have = [self.type_filter.itemData(i) for i in range(1, self.type_filter.count())]
        if have != list(self._predictor.classes):
            self.type_filter.blockSignals(True)
            keep = self.type_filter.currentData()
            while self.type_filter.count() > 1:
                self.type_filter.removeItem(1)
            for c in self._predictor.classes:
                self.type_filter.addItem(c, c)
            i = self.type_filter.findData(keep)
            self.type_filter.setCurrentIndex(max(i, 0))
            self.type_filter.blockSignals(False)

    def _on_row(self, row: int) -> None:
        if 0 <= row < len(self._shown_boxes):
            self.as_type.setCurrentText(self._shown_boxes[row].type)

    # ------------------------------------------------------------------ decisions
    def accept_selected(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self._shown_boxes):
            b = self._shown_boxes[row]
            self._store([Box(self.as_type.currentText() or b.type, b.x, b.y, b.w, b.h)])

    def accept_every(self) -> None:
        self._store([Box(b.type, b.x, b.y, b.w, b.h) for b in self._shown_boxes])

    def _store(self, new: list[Box]) -> None:
        project, it = self.panel._project, getattr(self, "_item", None)
        if project is None or it is None or not new:
            return
        if it.image_id is None:
            self.panel.status_label.setText(
                f"{it.name} is not in the project: label it first (D or O), then accept boxes")
            return
        try:
            rec = project.set_boxes(it.image_id, project.boxes(it.image_id) + new,
                                    source="prediction", create_types=True)
        except UserError as e:
            self.panel.status_label.setText(f"Boxes not saved: {e}")
            return
        it.label, it.label_source = rec.label, rec.label_source
        self.panel.model.item_changed(self.panel.model.row_of(it))
        self.panel.labels_changed.emit()
        self.panel.status_label.setText(
            f"{it.name}: {count_of(len(new), 'box')} stored as labels "
            f"({', '.join(b.type for b in new)})")

    # ------------------------------------------------------------------ filter
    def apply_filter(self) -> None:
        """Hide the queue rows without a predicted box of the chosen type."""
        wanted = self.type_filter.currentData()
        view, model = self.panel.queue_view, self.panel.model
        for row, it in enumerate(model.items()):
            hide = False
            if wanted is not None and not it.error:
                try:
                    pred = self.prediction(it.path)
                except UserError:
                    pred = None
                thr = self._predictor.threshold if self._predictor is not None else 1.0
                hide = pred is None or not any(b.type == wanted for b in pred.boxes_at(thr))
            view.setRowHidden(row, hide)
