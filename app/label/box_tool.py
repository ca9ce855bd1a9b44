"""The box tool of the Label page: typed defect boxes on the mask canvas.

With the tool on (toolbar "Boxes", key X): drag on empty image area to draw a box of
the current type, drag a box to move it, drag a corner of the selected box to resize
it, Delete removes the selected box, a type's hotkey (Alt+1 ...) gives the selected
box that type (or, with none selected, makes it the type of new boxes), Escape
deselects. Every finished edit is saved to the store at once (Project.set_boxes).

`BoxTool` draws and edits boxes on a MaskCanvas (the canvas hands it the mouse and
keys first while it is on); `BoxLabelling` wires tool, types panel and browser filter
into the Label page.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsSimpleTextItem, QToolBar

from defect_studio.app.label.types_panel import TypesPanel
from defect_studio.app.shell.shortcuts import key_sequences
from defect_studio.errors import UserError
from defect_studio.project.boxes import Box

MIN_SIZE = 2.0  # image pixels: a smaller drag is a click, not a box
HANDLE_PX = 8  # screen pixels around a corner that grab it


class BoxTool(QObject):
    """Boxes of the image shown on `canvas`. Signals: boxes_changed() after each
    finished edit; selection_changed(int) (index, -1 = none); message(str)."""

    boxes_changed = Signal()
    selection_changed = Signal(int)
    message = Signal(str)

    def __init__(self, canvas) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        canvas.box_tool = self
        self.active = False
        self.current_type: str | None = None
        self._types: dict[str, object] = {}  # lower-case name -> DefectType
        self._boxes: list[Box] = []
        self._items: list[QGraphicsRectItem] = []
        self._selected = -1
        self._drag: dict | None = None
        self._preview: QGraphicsRectItem | None = None

    # ------------------------------------------------------------------ state
    def set_types(self, types: list) -> None:
        self._types = {t.name.lower(): t for t in types}
        if self.current_type is None or self.current_type.lower() not in self._types:
            self.current_type = types[0].name if types else None
        self._redraw()

    def set_boxes(self, boxes: list[Box]) -> None:
        """Show these boxes (of the image now on the canvas); nothing is saved."""
        self._boxes = list(boxes)
        self._selected = -1
        self._drag = None
        self._redraw()

    def boxes(self) -> list[Box]:
        return list(self._boxes)

    def selected(self) -> int:
        return self._selected

    def set_active(self, on: bool) -> None:
        self.active = bool(on)
        if not on:
            self._select(-1)
        self._redraw()

    def scene_reset(self) -> None:
        """The canvas cleared its scene (new image): the items are gone."""
        self._items, self._preview, self._drag = [], None, None

    def _image_size(self) -> tuple[int, int] | None:
        m = self.canvas.mask()
        return None if m is None else (m.shape[1], m.shape[0])

    # ------------------------------------------------------------------ drawing
    def _color(self, type_name: str) -> QColor:
        t = self._types.get(type_name.lower())
        return QColor(t.color if t is not None else "#ff00ff")

    def _redraw(self) -> None:
        scene = self.canvas.scene()
        for item in self._items:
            if item.scene() is scene:
                scene.removeItem(item)
        self._items = []
        if self._image_size() is None:
            return
        for i, b in enumerate(self._boxes):
            color = self._color(b.type)
            item = QGraphicsRectItem(QRectF(b.x, b.y, b.w, b.h))
            pen = QPen(color, 3 if i == self._selected else 1.5)
            pen.setCosmetic(True)
            if i == self._selected:
                pen.setStyle(Qt.PenStyle.DashLine)
            item.setPen(pen)
            fill = QColor(color)
            fill.setAlpha(40 if i == self._selected else 0)
            item.setBrush(QBrush(fill))
            item.setZValue(10)
            text = QGraphicsSimpleTextItem(b.type, item)
            text.setBrush(QBrush(color))
            text.setFlag(QGraphicsSimpleTextItem.GraphicsItemFlag.ItemIgnoresTransformations)
            text.setPos(b.x, b.y - 1)
            scene.addItem(item)
            self._items.append(item)

    def _select(self, index: int) -> None:
        if index != self._selected:
            self._selected = index
            self.selection_changed.emit(index)
            self._redraw()

    # ------------------------------------------------------------------ hit tests
    def _corner_at(self, p: QPointF) -> int | None:
        """0..3 (x0y0, x1y0, x0y1, x1y1) when p is on a corner of the selected box."""
        if self._selected < 0:
            return None
        b = self._boxes[self._selected]
        tol = HANDLE_PX / max(self.canvas.zoom(), 1e-6)
        for k, (cx, cy) in enumerate(((b.x, b.y), (b.x + b.w, b.y), (b.x, b.y + b.h),
                                      (b.x + b.w, b.y + b.h))):
            if abs(p.x() - cx) <= tol and abs(p.y() - cy) <= tol:
                return k
        return None

    def _box_at(self, p: QPointF) -> int:
        """The smallest box containing p (-1: none)."""
        hits = [(b.w * b.h, i) for i, b in enumerate(self._boxes)
                if b.x <= p.x() <= b.x + b.w and b.y <= p.y() <= b.y + b.h]
        return min(hits)[1] if hits else -1

    # ------------------------------------------------------------------ mouse
    def mouse_press(self, p: QPointF, event) -> bool:
        if not self.active or self._image_size() is None or \
                event.button() != Qt.MouseButton.LeftButton:
            return False
        corner = self._corner_at(p)
        if corner is not None:
            self._drag = {"mode": "resize", "corner": corner, "start": p,
                          "box": self._boxes[self._selected]}
            return True
        hit = self._box_at(p)
        if hit >= 0:
            self._select(hit)
            self._drag = {"mode": "move", "start": p, "box": self._boxes[hit]}
            return True
        self._select(-1)
        if self.current_type is None:
            self.message.emit("Add a defect type first (types panel), then draw its boxes")
            return True
        self._drag = {"mode": "new", "start": p}
        self._preview = QGraphicsRectItem(QRectF(p, p))
        pen = QPen(self._color(self.current_type), 1.5)
        pen.setCosmetic(True)
        self._preview.setPen(pen)
        self._preview.setZValue(11)
        self.canvas.scene().addItem(self._preview)
        return True

    def _dragged_box(self, p: QPointF) -> Box | None:
        d = self._drag
        if d is None:
            return None
        s = d["start"]
        if d["mode"] == "new":
            x0, x1 = sorted((s.x(), p.x()))
            y0, y1 = sorted((s.y(), p.y()))
            return Box(self.current_type, x0, y0, x1 - x0, y1 - y0)
        b = d["box"]
        if d["mode"] == "move":
            return Box(b.type, b.x + p.x() - s.x(), b.y + p.y() - s.y(), b.w, b.h)
        x0, y0, x1, y1 = b.x, b.y, b.x + b.w, b.y + b.h
        k = d["corner"]
        x0, x1 = (p.x(), x1) if k in (0, 2) else (x0, p.x())
        y0, y1 = (p.y(), y1) if k in (0, 1) else (y0, p.y())
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        return Box(b.type, x0, y0, x1 - x0, y1 - y0)

    def _clip(self, b: Box, keep_size: bool) -> Box:
        """Inside the image, corners on whole pixels (what a user aims at)."""
        w, h = self._image_size()
        if keep_size:  # a moved box stays whole inside the image
            x = min(max(round(b.x), 0), max(0, w - round(b.w)))
            y = min(max(round(b.y), 0), max(0, h - round(b.h)))
            return Box(b.type, float(x), float(y), float(round(b.w)), float(round(b.h)))
        x0, y0 = max(round(b.x), 0), max(round(b.y), 0)
        x1, y1 = min(round(b.x + b.w), w), min(round(b.y + b.h), h)
        return Box(b.type, float(x0), float(y0), float(x1 - x0), float(y1 - y0))

    def mouse_move(self, p: QPointF, event) -> bool:
        if self._drag is None:
            return False
        b = self._dragged_box(p)
        if self._drag["mode"] == "new" and self._preview is not None:
            self._preview.setRect(QRectF(b.x, b.y, b.w, b.h))
        elif self._selected >= 0 and self._selected < len(self._items):
            self._items[self._selected].setRect(QRectF(b.x, b.y, b.w, b.h))
        return True

    def mouse_release(self, p: QPointF, event) -> bool:
        if self._drag is None:
            return False
        mode = self._drag["mode"]
        b = self._dragged_box(p)
        self._drag = None
        if self._preview is not None:
            self.canvas.scene().removeItem(self._preview)
            self._preview = None
        b = self._clip(b, keep_size=(mode == "move"))
        if mode == "new":
            if b.w < MIN_SIZE or b.h < MIN_SIZE:
                return True
            self._boxes.append(b)
            self._selected = len(self._boxes) - 1
        else:
            if b == self._boxes[self._selected] or b.w < MIN_SIZE or b.h < MIN_SIZE:
                self._redraw()
                return True
            self._boxes[self._selected] = b
        self._redraw()
        self.boxes_changed.emit()
        return True

    # ------------------------------------------------------------------ keys
    def type_for_key(self, event) -> str | None:
        pressed = QKeySequence(event.keyCombination()).toString()
        for t in self._types.values():
            if t.hotkey and QKeySequence(t.hotkey).toString() == pressed:
                return t.name
        return None

    def key_press(self, event) -> bool:
        if not self.active:
            return False
        if event.key() == Qt.Key.Key_Delete and event.modifiers() == \
                Qt.KeyboardModifier.NoModifier and self._selected >= 0:
            self.delete_selected()
            return True
        if event.key() == Qt.Key.Key_Escape and self._selected >= 0:
            self._select(-1)
            return True
        name = self.type_for_key(event)
        if name is not None:
            self.change_type(name)
            return True
        return False

    def delete_selected(self) -> None:
        if 0 <= self._selected < len(self._boxes):
            del self._boxes[self._selected]
            self._selected = -1
            self.selection_changed.emit(-1)
            self._redraw()
            self.boxes_changed.emit()

    def change_type(self, name: str) -> None:
        """The selected box gets this type; with none selected, new boxes do."""
        if 0 <= self._selected < len(self._boxes):
            b = self._boxes[self._selected]
            if b.type != name:
                self._boxes[self._selected] = Box(name, b.x, b.y, b.w, b.h)
                self._redraw()
                self.boxes_changed.emit()
        else:
            self.current_type = name
            self.message.emit(f"New boxes: {name}")


class BoxLabelling(QObject):
    """Box tool + types panel + type filter, wired into a LabelPage."""

    def __init__(self, page) -> None:
        super().__init__(page)
        self.page = page
        self.project = None
        self.tool = BoxTool(page.canvas)
        self.panel = TypesPanel()
        page.splitter.addWidget(self.panel)
        page.splitter.setStretchFactor(2, 0)
        self.action = QAction("Boxes", page)
        self.action.setCheckable(True)
        self.action.setShortcuts(key_sequences("tool_box"))  # the key F1 lists
        self.action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.action.setToolTip("Box tool (X): draw, move, resize typed defect boxes; Delete "
                               "removes the selected box; a type's hotkey changes its type")
        page.addAction(self.action)
        bar = page.findChild(QToolBar)
        if bar is not None:
            bar.addAction(self.action)
        self.action.toggled.connect(self.set_box_mode)
        page.canvas.tool_changed.connect(lambda _t: self.action.setChecked(False))
        page.browser.current_changed.connect(self._load)
        self.tool.boxes_changed.connect(self._save)
        self.tool.message.connect(page.status_message)
        self.panel.current_type_changed.connect(self._on_type)
        self.panel.add_requested.connect(self.add_type)
        self.panel.filter_changed.connect(self._filter)

    def set_box_mode(self, on: bool) -> None:
        self.tool.set_active(on)
        if on:
            self.page.status_message.emit(
                "Boxes: drag to draw, drag a box to move it, drag a corner to resize; "
                "Delete removes, a type's hotkey changes the type")

    def set_project(self, project) -> None:
        self.project = project
        self._filter(None)
        self.refresh_types()

    def refresh_types(self) -> None:
        if self.project is None:
            self.tool.set_types([])
            self.panel.set_types([], {})
            return
        types = self.project.defect_types()
        self.tool.set_types(types)
        self.panel.set_types(types, self.project.box_counts())

    def add_type(self, name: str) -> None:
        if self.project is None:
            return
        try:
            t = self.project.add_type(name)
        except UserError as exc:
            self.page.status_message.emit(f"Type not added: {exc}")
            return
        self.refresh_types()
        self.panel.select_type(t.name)

    def _on_type(self, name: str) -> None:
        self.tool.current_type = name

    def _load(self, image_id: int) -> None:
        if self.project is None or image_id < 0 or self.page.canvas.mask() is None:
            self.tool.set_boxes([])
            return
        self.tool.set_boxes(self.project.boxes(image_id))

    def _save(self) -> None:
        image_id = self.page.current_image_id()
        if self.project is None or image_id < 0:
            return
        try:
            rec = self.project.set_boxes(image_id, self.tool.boxes())
        except UserError as exc:
            self.page.status_message.emit(f"Boxes not saved: {exc}")
            self.tool.set_boxes(self.project.boxes(image_id))
            return
        self.page.browser.update_record(rec)
        self.page._show_info(rec)
        self.panel.set_types(self.project.defect_types(), self.project.box_counts())
        self.page.labels_changed.emit()

    def _filter(self, name: str | None) -> None:
        ids = None
        if name is not None and self.project is not None:
            ids = {r.id for r in self.project.images_with_type(name)}
        self.page.browser.model.set_only_ids(ids)
