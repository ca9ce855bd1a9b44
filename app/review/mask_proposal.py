""""Propose mask": the anomaly heatmap of a reviewed part becomes a draft mask that the
inspector corrects on the Label page canvas, then saves (or discards).

Review page: ``add_propose_button(panel, layout)`` adds the button; it emits the panel's
``propose_mask_requested(image_id, mask)``. Label page: ``MaskProposalBar`` puts the draft on
the canvas (undoable, not saved) and shows Save / Discard; while a draft is pending the page
does not store the canvas after each stroke (``pending``).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from defect_studio.errors import UserError


def add_propose_button(panel, layout) -> QPushButton:
    """The "Propose mask" button of the Review page (enabled with the other decision keys)."""
    button = QPushButton("Propose mask")
    button.setToolTip("Draft a defect mask from the heatmap (above the decision threshold) and "
                      "open it on the Label page to correct and save")
    button.clicked.connect(lambda: propose_from_review(panel))
    layout.addWidget(button)
    return button


def proposal_for(panel) -> tuple[int, np.ndarray] | str:
    """(image_id, mask) for the Review page's current part, or why there is none."""
    from defect_studio.app.common.heatmaps import expand_heatmap
    from defect_studio.inference.prediction import read_threshold
    from defect_studio.inference.propose import propose_mask

    it = panel.current_item()
    if it is None or it.error:
        return "Select a scored part first."
    if it.image_id is None:
        return "Only images of the project can get a mask: label the part first."
    if it.heatmap is None or it.image_shape is None:
        return "The heatmap of this part is still being computed; try again in a moment."
    run_dir = panel._run_dir()
    try:
        t, _ = read_threshold(run_dir) if run_dir is not None else (None, "")
        heat = expand_heatmap(it.heatmap, tuple(it.image_shape))
        mask, _used = propose_mask(heat, 0.5 if t is None else t)
    except UserError as e:
        return str(e)
    if not mask.any():
        return "The heatmap of this part is flat: there is no region to propose."
    return it.image_id, mask


def propose_from_review(panel) -> bool:
    got = proposal_for(panel)
    if isinstance(got, str):
        panel.status_label.setText(got)
        return False
    panel.propose_mask_requested.emit(*got)
    return True


class MaskProposalBar(QFrame):
    """Shown on the Label page while a proposed mask waits for Save or Discard."""

    def __init__(self, page: QWidget) -> None:
        super().__init__(page)
        self.page = page
        self._image_id: int | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.save_button = QPushButton("Save mask")
        self.save_button.setToolTip("Store the corrected mask; the image becomes defective")
        self.save_button.clicked.connect(self.save)
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Forget the proposal; the stored mask stays as it was")
        self.discard_button.clicked.connect(self.discard)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.save_button)
        lay.addWidget(self.discard_button)
        page.browser.current_changed.connect(self._on_image_changed)
        self.hide()

    @property
    def pending(self) -> bool:
        return self._image_id is not None

    def start(self, image_id: int, mask: np.ndarray) -> bool:
        """Put ``mask`` on the canvas of image ``image_id`` (which the page must show)."""
        page = self.page
        if page.current_image_id() != image_id or not page.canvas.has_image():
            page.status_message.emit("Cannot show the proposed mask: the image is not open.")
            return False
        self._image_id = image_id  # before the edit: the page must not store it yet
        if not page.canvas.merge_mask(mask, notify=False):
            self._image_id = None
            page.status_message.emit("The proposed mask adds nothing to the mask already there.")
            return False
        self.text.setText("<b>Proposed mask</b> from the anomaly model: correct it with the "
                          "brush and eraser, then Save mask (or Discard).")
        self.show()
        return True

    def save(self) -> bool:
        page, image_id = self.page, self._image_id
        if image_id is None or page.project is None:
            return False
        mask = page.canvas.mask()
        if mask is None or not mask.any():
            self.discard()
            page.status_message.emit("The mask is empty: nothing saved.")
            return False
        try:
            rec = page.project.save_mask(image_id, mask)
        except UserError as e:
            page.status_message.emit(f"Mask not saved: {e}")
            return False
        self._end()
        page.browser.update_record(rec)
        page._show_info(rec)
        page.labels_changed.emit()
        page.status_message.emit(f"{rec.name}: mask saved, labelled {rec.label}.")
        return True

    def discard(self) -> None:
        image_id = self._image_id
        self._end()
        if image_id is not None and self.page.current_image_id() == image_id:
            self.page._on_current_changed(image_id)  # reload the stored mask

    def _end(self) -> None:
        self._image_id = None
        self.hide()

    def _on_image_changed(self, image_id: int) -> None:
        if self._image_id is not None and image_id != self._image_id:
            self.page.canvas.finish_edit()  # a stroke in progress belongs to the draft: not stored
            self._end()
            self.page.status_message.emit("Proposed mask discarded (another image was opened).")
