"""The Label page: image browser on the left, the mask canvas and its tools on the right.

Every change goes to the store at once (label on key press, mask at the end of each
stroke), so killing the app loses nothing.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.icons import icon
from defect_studio.app.common.label_history import LabelHistory
from defect_studio.app.label.box_tool import BoxLabelling
from defect_studio.app.label.canvas import MAX_BRUSH, MIN_BRUSH, MaskCanvas
from defect_studio.app.label.image_browser import ImageBrowser
from defect_studio.app.label.state import LabelState
from defect_studio.app.shell import shortcuts as sc
from defect_studio.app.shell.theme import colors
from defect_studio.errors import UserError

TOOL_ICONS = {"brush": "brush", "eraser": "eraser", "lasso": "lasso", "grabcut": "grabcut",
              "pan": "pan"}
TOOL_ACTIONS = {"brush": "tool_brush", "eraser": "tool_eraser", "lasso": "tool_lasso",
                "grabcut": "tool_grabcut", "pan": "tool_pan"}


class LabelPage(QWidget):
    """Browse, label (keys) and paint masks. Signals: labels_changed() after any change
    saved to the store; status_message(str) for the status bar."""

    labels_changed = Signal()
    status_message = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.project = None
        self._image_id = -1
        self._initial: tuple[str, str, bool] | None = None  # label, source, has_mask at load
        self._active = True
        self.history = LabelHistory()  # label changes made here, for Ctrl+Z
        self.browser = ImageBrowser()
        self.state: LabelState = self.browser.model.state  # records, filters, decisions
        self.canvas = MaskCanvas()
        self.info = QLabel()
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.actions_by_id: dict[str, QAction] = {}
        self._build_actions()
        self._build_ui()
        self.browser.current_changed.connect(self._on_current_changed)
        # a move to another split changes the current image's info line too
        self.browser.splits_changed.connect(self._show_current_info)
        self.canvas.mask_changed.connect(self._save_mask)
        self.canvas.undo_state_changed.connect(self._on_undo_state)
        self.canvas.tool_changed.connect(self._on_tool_changed)
        self.canvas.brush_size_changed.connect(self._on_brush_size)
        self.boxes = BoxLabelling(self)  # typed boxes: tool, types panel, type filter
        self._restore_settings()
        self.set_active(True)

    # ------------------------------------------------------------------ UI
    def _action(self, action_id: str, slot, icon_name: str | None = None,
                text: str | None = None, checkable: bool = False,
                color: str | None = None) -> QAction:
        a = QAction(text or sc.shortcut(action_id).text, self)
        a.setShortcuts(sc.key_sequences(action_id))
        # Window-wide, enabled only while this page is shown (set_active).
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        a.setToolTip(sc.tooltip(action_id, text))
        if icon_name:
            a.setIcon(icon(icon_name, color))
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)
        self.actions_by_id[action_id] = a
        return a

    def _build_actions(self) -> None:
        c = colors()
        self._action("label_ok", lambda: self.press_label_key("label_ok"), "ok", "OK",
                     color=c.ok.name())
        self._action("label_defective", lambda: self.press_label_key("label_defective"),
                     "defective", "NG", color=c.defective.name())
        self._action("label_clear", lambda: self.press_label_key("label_clear"), "clear_label",
                     "Clear")
        self._action("next_image", lambda: self.browser.step(+1), "next")
        self._action("prev_image", lambda: self.browser.step(-1), "prev")
        group = QActionGroup(self)
        for tool, action_id in TOOL_ACTIONS.items():
            a = self._action(action_id, lambda _c=False, t=tool: self.canvas.set_tool(t),
                             TOOL_ICONS[tool], checkable=True)
            group.addAction(a)
        self.actions_by_id["tool_brush"].setChecked(True)
        self._action("brush_smaller", lambda: self.canvas.change_brush_size(-1))
        self._action("brush_larger", lambda: self.canvas.change_brush_size(+1))
        self._action("undo", self.undo, "undo", "Undo")
        self._action("redo", self.canvas.redo, "redo")
        self._action("clear_mask", self.clear_mask, "clear_mask")
        self._action("fit", self.canvas.fit, "fit")
        self._action("zoom_in", lambda: self.canvas.zoom_by(1.25), "zoom_in")
        self._action("zoom_out", lambda: self.canvas.zoom_by(0.8), "zoom_out")
        self._action("actual_size", lambda: self.canvas.set_zoom(1.0))
        a = self._action("toggle_mask", self.canvas.set_mask_visible, "mask", checkable=True)
        a.setChecked(True)
        self.actions_by_id["undo"].setEnabled(False)
        self.actions_by_id["redo"].setEnabled(False)

    def _build_ui(self) -> None:
        a = self.actions_by_id
        tools = QToolBar("Mask tools")
        tools.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for key in ("label_ok", "label_defective", "label_clear"):
            tools.addAction(a[key])
        tools.addSeparator()
        for key in ("prev_image", "next_image"):
            tools.addAction(a[key])
        tools.addSeparator()
        for action_id in TOOL_ACTIONS.values():
            tools.addAction(a[action_id])
        tools.addSeparator()
        for key in ("undo", "redo", "clear_mask", "fit", "toggle_mask"):
            tools.addAction(a[key])

        self.size_slider = QSlider(Qt.Orientation.Horizontal)
        self.size_slider.setRange(MIN_BRUSH, MAX_BRUSH)
        self.size_slider.setValue(self.canvas.brush_size)
        self.size_slider.setFixedWidth(110)
        self.size_slider.setToolTip(
            f"Brush size in image pixels ({sc.keys_text('brush_smaller')} / "
            f"{sc.keys_text('brush_larger')})")
        self.size_slider.valueChanged.connect(self.canvas.set_brush_size)
        self.size_label = QLabel()
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(self.canvas.mask_opacity() * 100))
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setToolTip("Mask opacity")
        self.opacity_slider.valueChanged.connect(
            lambda v: self.canvas.set_mask_opacity(v / 100.0))
        self.auto_next = QCheckBox("Next unlabeled")
        self.auto_next.setToolTip("After labelling an image, go to the next unlabeled one")
        self.auto_next.setChecked(True)
        self.auto_next.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for w in (self.size_slider, self.opacity_slider):
            w.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(tools)
        bar.addStretch(1)
        settings_row = QHBoxLayout()
        settings_row.setContentsMargins(4, 0, 0, 0)
        settings_row.addWidget(QLabel("Brush"))
        settings_row.addWidget(self.size_slider)
        settings_row.addWidget(self.size_label)
        settings_row.addSpacing(12)
        settings_row.addWidget(QLabel("Mask opacity"))
        settings_row.addWidget(self.opacity_slider)
        settings_row.addSpacing(12)
        settings_row.addWidget(self.auto_next)
        settings_row.addStretch(1)
        from defect_studio.app.review.mask_proposal import MaskProposalBar
        from defect_studio.app.train.cold_start import LikelyDefectsButton
        self.likely_defects_button = LikelyDefectsButton(self)
        settings_row.addWidget(self.likely_defects_button)
        self.proposal = MaskProposalBar(self)  # a proposed mask waiting for Save / Discard

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(bar)
        rl.addLayout(settings_row)
        rl.addWidget(self.info)
        rl.addWidget(self.proposal)
        rl.addWidget(self.canvas, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.browser)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([372, 900])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.splitter)
        self._on_brush_size(self.canvas.brush_size)

    def _restore_settings(self) -> None:
        s = QSettings()
        self.auto_next.setChecked(s.value("label/auto_next", True, type=bool))
        self.size_slider.setValue(s.value("label/brush", self.canvas.brush_size, type=int))
        self.opacity_slider.setValue(s.value("label/opacity", 50, type=int))
        state = s.value("label/splitter")
        if state is not None:
            self.splitter.restoreState(state)

    def save_settings(self) -> None:
        """Remember tool settings for the next start."""
        s = QSettings()
        s.setValue("label/auto_next", self.auto_next.isChecked())
        s.setValue("label/brush", self.canvas.brush_size)
        s.setValue("label/opacity", self.opacity_slider.value())
        s.setValue("label/splitter", self.splitter.saveState())

    def set_active(self, active: bool) -> None:
        """Enable the page's shortcuts only while it is the visible tab."""
        self._active = active
        enabled = active and self.project is not None
        for a in self.actions_by_id.values():
            a.setEnabled(enabled)
        if enabled:
            stack = self.canvas.undo_stack
            self._on_undo_state(stack.can_undo(), stack.can_redo())

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        """Show a project (None: nothing). Call before closing the project."""
        self.canvas.finish_edit()
        self.project = project
        self._image_id = -1
        self.history.clear()
        self.canvas.clear()
        self.boxes.set_project(project)
        self.browser.set_project(project)
        if project is None:
            self.info.setText("No project open")
        elif self.browser.model.counts()["images"] == 0:
            self.info.setText("No images yet: add some with File › Import…")
        self.set_active(self._active)

    def refresh(self) -> None:
        """Re-read labels and predictions (another page changed them)."""
        if self.project is not None:
            self.browser.reload(self.project)
            rec = self.browser.model.record(self._image_id)
            if rec is not None:
                self._show_info(rec)

    def shutdown(self) -> None:
        """Save what is in progress and stop background threads."""
        self.canvas.finish_edit()
        self.browser.shutdown()
        self.save_settings()

    def current_image_id(self) -> int:
        return self._image_id

    # ------------------------------------------------------------------ labelling
    def press_label_key(self, action_id: str) -> None:
        """A labelling key: the label it writes (LabelState.label_of_key)."""
        self.set_label(self.state.label_of_key(action_id))

    def set_label(self, label: str) -> None:
        """Label the current image and, if chosen, move to the next unlabeled one."""
        if self.project is None or self._image_id < 0:
            return
        old = self.browser.model.record(self._image_id)
        try:
            rec = self.project.set_label(self._image_id, label)
        except UserError as exc:
            self.status_message.emit(str(exc))
            return
        if old is not None:
            self.history.record(rec.id, rec.name, (old.label, old.label_source),
                                (rec.label, rec.label_source))
        if self.state.needs_split(rec, label):
            rec = self._give_split(rec)
        self._on_undo_state(self.canvas.undo_stack.can_undo(), self.canvas.undo_stack.can_redo())
        self.browser.update_record(rec)
        self._show_info(rec)
        self.labels_changed.emit()
        self.status_message.emit(f"{rec.name}: {label}")
        if self.state.goes_next(label, self.auto_next.isChecked()):
            self._go_next_unlabeled()

    def _give_split(self, rec):
        """Every labelled image goes into a split (else training would leave it out)."""
        try:
            placed = self.project.assign_splits(only_unassigned=True)
        except UserError as exc:
            self.status_message.emit(f"No split given to {rec.name}: {exc}")
            return rec
        if sum(placed.values()) > 1:  # other images got one too: show them all
            self.browser.reload(self.project)
        return self.project.image(rec.id)

    def undo(self) -> None:
        """Ctrl+Z: undo the last mask edit of this image, else the last label change."""
        if self.canvas.undo_stack.can_undo():
            self.canvas.undo()
            return
        if self.project is None or not self.history.can_undo():
            return
        try:
            done = self.history.undo(self.project)
        except UserError as exc:
            self.status_message.emit(f"Cannot undo: {exc}")
            return
        step, rec = done
        self.browser.update_record(rec)
        if not self.browser.select_image(rec.id):
            self.browser.filter_box.setCurrentIndex(0)
            self.browser.select_image(rec.id)
        if rec.id == self._image_id:
            self._show_info(rec)
        self.labels_changed.emit()
        self.status_message.emit(f"Undone: {step.name} is {rec.label} again")
        self._on_undo_state(self.canvas.undo_stack.can_undo(), self.canvas.undo_stack.can_redo())

    def _go_next_unlabeled(self) -> None:
        b = self.browser
        target, note = self.state.next_unlabeled(b.model.image_ids(), b.current_id())
        if note:
            self.status_message.emit(note)
        if target is not None:
            b.select_image(target)

    def _on_current_changed(self, image_id: int) -> None:
        self.canvas.finish_edit()  # a stroke in progress belongs to the old image
        self._image_id = image_id
        self._initial = None
        if self.project is None or image_id < 0:
            self.canvas.clear()
            self.info.setText("")
            return
        rec = self.browser.model.record(image_id)
        self._initial = (rec.label, rec.label_source, rec.has_mask)
        self._show_info(rec)
        try:
            img = self.project.read_image(rec)
        except (UserError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            self.canvas.show_error(f"Cannot show {rec.name}:\n{reason}")
            self.browser.model.set_error(image_id, reason)
            self.status_message.emit(f"Cannot read {rec.name}: {reason}")
            return
        mask = None
        try:
            mask = self.project.load_mask(image_id)
        except (UserError, OSError) as exc:
            self.status_message.emit(f"Mask of {rec.name} not loaded: {exc}")
        self.canvas.set_image(img, mask)

    def _save_mask(self) -> None:
        """Store the canvas mask (end of a stroke, fill, undo, redo)."""
        if self.project is None or self._image_id < 0 or self.proposal.pending:
            return  # a proposed mask is stored by its Save button
        mask = self.canvas.mask()
        if mask is None:
            return
        action = self.state.mask_action(bool(mask.any()),
                                        None if self._initial is None else self._initial[2])
        try:
            if action == "restore":
                # Back to no mask on an image that had none: undo the whole thing,
                # label included, instead of leaving an empty "clean" mask behind.
                self.project.delete_mask(self._image_id)
                label, source, _ = self._initial
                rec = self.project.set_label(self._image_id, label, source)
            elif action == "delete":
                # Clearing a mask deletes it (the label stays): no "M" with 0 pixels.
                rec = self.project.delete_mask(self._image_id)
            else:
                rec = self.project.save_mask(self._image_id, mask)
        except UserError as exc:
            self.status_message.emit(f"Mask not saved: {exc}")
            return
        self.browser.update_record(rec)
        self._show_info(rec)
        self.labels_changed.emit()

    def _show_current_info(self) -> None:
        rec = self.browser.model.record(self._image_id) if self.project is not None else None
        if rec is not None:
            self._show_info(self.project.image(rec.id))

    def clear_mask(self) -> None:
        """Ctrl+Delete: erase the whole mask (saved like any edit; Ctrl+Z brings it back)
        and say so."""
        rec = self.browser.model.record(self._image_id) if self.project is not None else None
        if rec is None:
            return
        mask = self.canvas.mask()
        if mask is None or not mask.any():
            self.status_message.emit(f"{rec.name}: no mask to clear.")
            return
        self.canvas.clear_mask()
        self.status_message.emit(f"{rec.name}: mask cleared and saved (Ctrl+Z brings it back).")

    def _show_info(self, rec) -> None:
        self.info.setText(self.state.info_text(rec))

    # ------------------------------------------------------------------ tool state
    def _on_undo_state(self, can_undo: bool, can_redo: bool) -> None:
        active = self.actions_by_id["label_ok"].isEnabled()
        self.actions_by_id["undo"].setEnabled(active and (can_undo or self.history.can_undo()))
        self.actions_by_id["redo"].setEnabled(active and can_redo)

    def _on_tool_changed(self, tool: str) -> None:
        self.actions_by_id[TOOL_ACTIONS[tool]].setChecked(True)
        hints = {
            "brush": "Brush: paint the defect. [ and ] change the size.",
            "eraser": "Eraser: remove mask pixels.",
            "lasso": "Lasso: click points or drag; Enter or double-click fills.",
            "grabcut": "Assist: drag a box around the defect (Shift+drag: a stroke on it).",
            "pan": "Pan: drag to move the view.",
        }
        self.status_message.emit(hints[tool])

    def _on_brush_size(self, size: int) -> None:
        self.size_label.setText(f"{size}px")
        if self.size_slider.value() != size:
            self.size_slider.blockSignals(True)
            self.size_slider.setValue(size)
            self.size_slider.blockSignals(False)
