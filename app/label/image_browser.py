"""The image browser: a QListView in icon mode over a QAbstractListModel.

One model row per image (no widget per item), so thousands of images stay fast.
Rows carry badges (label colour, mask marker, prediction score, error marker)
painted by a delegate; filters and sort run on plain Python lists.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractListModel, QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.thumbnails import THUMB_SIZE, ThumbnailWorker
from defect_studio.app.label.state import (
    FILTERS,
    SORTS,
    SPLIT_BADGES,
    SPLIT_FILTERS,
    LabelState,
)
from defect_studio.app.shell.theme import colors

RecordRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2
ErrorRole = Qt.ItemDataRole.UserRole + 3
ImageIdRole = Qt.ItemDataRole.UserRole + 4


class ImageListModel(QAbstractListModel):
    """Shows a LabelState: rows = the images that pass its filters, in its order.

    Records come from Project.images(); predictions from Project.predictions(run).
    Thumbnails are requested from the worker when a row is first painted.
    """

    def __init__(self, parent=None, state: LabelState | None = None) -> None:
        super().__init__(parent)
        self.state = state if state is not None else LabelState()
        self._errors: dict[int, str] = {}
        self._rows: list[int] = []
        self._row_of: dict[int, int] = {}
        self._thumbs: dict[int, QPixmap] = {}
        self._paths: dict[int, tuple[str, str]] = {}
        self._worker: ThumbnailWorker | None = None

    # ---- data in
    def set_images(self, records: list, paths: dict[int, tuple[str, str]] | None = None,
                   predictions: dict[int, tuple[float, bool]] | None = None) -> None:
        """Replace all records; paths maps id -> (absolute file path, cache key)."""
        self.beginResetModel()
        self.state.set_images(records, predictions)
        self._paths = dict(paths or {})
        self._errors = {}
        self._thumbs = {}
        self._rebuild_rows()
        self.endResetModel()

    def set_predictions(self, predictions: dict[int, tuple[float, bool]]) -> None:
        self.state.predictions = dict(predictions)
        self.refilter()

    def set_thumbnail_worker(self, worker: ThumbnailWorker | None) -> None:
        if self._worker is not None:
            self._worker.ready.disconnect(self._on_thumb)
            self._worker.failed.disconnect(self._on_thumb_failed)
        self._worker = worker
        if worker is not None:
            worker.ready.connect(self._on_thumb)
            worker.failed.connect(self._on_thumb_failed)

    def update_record(self, rec) -> None:
        """A record changed (label, mask): repaint its row. It stays in view until the
        next refilter, so labelling inside a filter does not make rows jump away."""
        self.state.update_record(rec)
        row = self._row_of.get(rec.id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)

    def set_error(self, image_id: int, reason: str) -> None:
        """Mark an image as unreadable (shown with an error marker)."""
        self._errors[image_id] = reason
        row = self._row_of.get(image_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)

    def set_filter(self, name: str) -> None:
        self.state.set_filter(name)
        self.refilter()

    def set_split_filter(self, name: str) -> None:
        """Show only one split ("train", "val", "test", "none" = no split, "all")."""
        self.state.set_split_filter(name)
        self.refilter()

    def set_search(self, text: str) -> None:
        """Show only images whose file name contains `text` (any case)."""
        self.state.set_search(text)
        self.refilter()

    def set_sort(self, name: str) -> None:
        self.state.set_sort(name)
        self.refilter()

    def refilter(self) -> None:
        self.beginResetModel()
        self._rebuild_rows()
        self.endResetModel()

    def set_only_ids(self, ids: set[int] | None) -> None:
        """Show only these images on top of the filter (None: no such limit)."""
        self.state.set_only_ids(ids)
        self.refilter()

    def _rebuild_rows(self) -> None:
        self._rows = self.state.ordered_ids()
        self._row_of = {i: n for n, i in enumerate(self._rows)}

    # ---- data out
    @property
    def filter_name(self) -> str:
        return self.state.filter

    @property
    def sort_name(self) -> str:
        return self.state.sort

    def image_ids(self) -> list[int]:
        """The ids in view order."""
        return list(self._rows)

    def row_of(self, image_id: int) -> int | None:
        return self._row_of.get(image_id)

    def record(self, image_id: int):
        return self.state.records.get(image_id)

    def records(self) -> list:
        return list(self.state.records.values())

    def prediction(self, image_id: int) -> tuple[float, bool] | None:
        return self.state.predictions.get(image_id)

    def error(self, image_id: int) -> str | None:
        return self._errors.get(image_id)

    def counts(self) -> dict[str, int]:
        """Counts over all images (not just the filtered ones)."""
        return self.state.counts()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or index.row() >= len(self._rows):
            return None
        image_id = self._rows[index.row()]
        rec = self.state.records[image_id]
        if role == Qt.ItemDataRole.DisplayRole:
            return rec.name
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(image_id)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(rec)
        if role == RecordRole:
            return rec
        if role == ImageIdRole:
            return image_id
        if role == ScoreRole:
            p = self.state.predictions.get(image_id)
            return None if p is None else p[0]
        if role == ErrorRole:
            return self._errors.get(image_id)
        return None

    def _tooltip(self, rec) -> str:
        lines = [rec.name, f"{rec.width}x{rec.height}, label: {rec.label} ({rec.label_source})",
                 f"split: {rec.split or 'none'}" + (" (pinned)" if rec.split_pinned else "")]
        if rec.has_mask:
            lines.append("mask" + (" (rough)" if rec.mask_rough else ""))
        p = self.state.predictions.get(rec.id)
        if p is not None:
            lines.append(f"score {p[0]:.3f} -> {'NG' if p[1] else 'OK'}")
        if rec.id in self._errors:
            lines.append(f"cannot read: {self._errors[rec.id]}")
        return "\n".join(lines)

    def _thumbnail(self, image_id: int) -> QPixmap | None:
        pm = self._thumbs.get(image_id)
        if pm is not None:
            return pm
        if image_id in self._errors or self._worker is None:
            return None
        src = self._paths.get(image_id)
        if src is not None:
            self._worker.request(image_id, src[0], src[1])
        return None

    def _on_thumb(self, image_id: int, img: QImage) -> None:
        self._thumbs[image_id] = QPixmap.fromImage(img)
        row = self._row_of.get(image_id)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def _on_thumb_failed(self, image_id: int, reason: str) -> None:
        self.set_error(image_id, reason)


def name_lines(name: str, metrics, width: int) -> str:
    """The whole file name on up to two lines; only a name longer than that is shortened,
    at the start of the second line, so its start (line 1) and its end (the part number
    and extension) stay readable."""
    if metrics.horizontalAdvance(name) <= width:
        return name
    cut = len(name)
    while cut > 1 and metrics.horizontalAdvance(name[:cut]) > width:
        cut -= 1
    rest = name[cut:]
    rest = metrics.elidedText(rest, Qt.TextElideMode.ElideLeft, width)
    return name[:cut] + "\n" + rest


class BadgeDelegate(QStyledItemDelegate):
    """Paints a thumbnail with its label frame, label badge, mask marker and score."""

    CELL = QSize(THUMB_SIZE + 16, THUMB_SIZE + 42)

    def sizeHint(self, option, index) -> QSize:
        return self.CELL

    def paint(self, painter: QPainter, option, index: QModelIndex) -> None:
        rec = index.data(RecordRole)
        if rec is None:
            return
        c = colors()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        r = option.rect
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(r, option.palette.highlight())
        label_color = {"ok": c.ok, "defective": c.defective}.get(rec.label, c.unlabeled)
        thumb_rect = QRect(r.x() + 8, r.y() + 6, THUMB_SIZE, THUMB_SIZE)
        painter.fillRect(thumb_rect, option.palette.base())
        err = index.data(ErrorRole)
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        if pm is not None and not pm.isNull():
            x = thumb_rect.x() + (THUMB_SIZE - pm.width()) // 2
            y = thumb_rect.y() + (THUMB_SIZE - pm.height()) // 2
            painter.drawPixmap(x, y, pm)
        elif err:
            painter.setPen(QPen(c.error, 2))
            painter.drawLine(thumb_rect.topLeft(), thumb_rect.bottomRight())
            painter.drawLine(thumb_rect.topRight(), thumb_rect.bottomLeft())
        painter.setPen(QPen(label_color, 3))
        painter.drawRect(thumb_rect.adjusted(1, 1, -1, -1))

        small = QFont(option.font)
        small.setPointSizeF(max(6.0, option.font.pointSizeF() * 0.8))
        small.setBold(True)
        painter.setFont(small)
        text = {"ok": "OK", "defective": "NG"}.get(rec.label, "?")
        badge = QRect(thumb_rect.x() + 3, thumb_rect.y() + 3, 24, 15)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(label_color)
        painter.drawRoundedRect(badge, 4, 4)
        painter.setPen(QColor("white"))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        if rec.has_mask:
            m = QRect(thumb_rect.right() - 20, thumb_rect.y() + 3, 17, 15)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(120, 60, 200) if not rec.mask_rough else QColor(150, 110, 200))
            painter.drawRoundedRect(m, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(m, Qt.AlignmentFlag.AlignCenter, "M")
        if err:
            e = QRect(thumb_rect.x() + 3, thumb_rect.bottom() - 17, 15, 15)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c.error)
            painter.drawEllipse(e)
            painter.setPen(QColor("white"))
            painter.drawText(e, Qt.AlignmentFlag.AlignCenter, "!")
        split = SPLIT_BADGES.get(rec.split)
        if split:
            sp = QRect(thumb_rect.x() + 3, thumb_rect.bottom() - 17, 20, 15)
            if err:
                sp.translate(18, 0)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(40, 40, 40, 170))
            painter.drawRoundedRect(sp, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(sp, Qt.AlignmentFlag.AlignCenter, split)
        score = index.data(ScoreRole)
        if score is not None:
            s = QRect(thumb_rect.right() - 38, thumb_rect.bottom() - 17, 36, 15)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(0, 0, 0, 160))
            painter.drawRoundedRect(s, 4, 4)
            painter.setPen(QColor("white"))
            painter.drawText(s, Qt.AlignmentFlag.AlignCenter, f"{score:.2f}")
        painter.setFont(option.font)
        painter.setPen(option.palette.color(
            option.palette.ColorRole.HighlightedText
            if option.state & QStyle.StateFlag.State_Selected else option.palette.ColorRole.Text))
        name_rect = QRect(r.x() + 2, thumb_rect.bottom() + 3, r.width() - 4, r.bottom() -
                          thumb_rect.bottom() - 3)
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                         name_lines(rec.name, painter.fontMetrics(), name_rect.width()))
        painter.restore()


class ImageBrowser(QWidget):
    """Filter and sort controls, per-label counts and the thumbnail grid.

    Signal current_changed(int image_id) when the selected image changes (-1: none).
    """

    current_changed = Signal(int)
    splits_changed = Signal()  # images were moved to another split here

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._project = None
        self.model = ImageListModel(self)
        self.filter_box = QComboBox()
        for key, text in FILTERS.items():
            self.filter_box.addItem(text, key)
        self.filter_box.setToolTip("Show only some of the images")
        self.sort_box = QComboBox()
        for key, text in SORTS.items():
            self.sort_box.addItem(text, key)
        self.split_box = QComboBox()
        for key, text in SPLIT_FILTERS.items():
            self.split_box.addItem(text, key)
        self.split_box.setToolTip("Show only one split (train / validation / test)")
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search file names")
        self.search_box.setClearButtonEnabled(True)
        self.counts_label = QLabel()
        self.counts_label.setWordWrap(True)
        self.view = QListView()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(200)
        self.view.setSpacing(2)
        self.view.setGridSize(BadgeDelegate.CELL + QSize(4, 4))
        # Several images at once (Shift/Ctrl+click) can be moved to a split.
        self.view.setSelectionMode(QListView.SelectionMode.ExtendedSelection)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        # Keys belong to the labelling shortcuts, not to the list's keyboard search.
        self.view.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.view.setItemDelegate(BadgeDelegate(self.view))
        self.view.setModel(self.model)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.model.modelReset.connect(self._restore_current)
        self.model.modelReset.connect(self.update_counts)
        self.filter_box.currentIndexChanged.connect(
            lambda _i: self.model.set_filter(self.filter_box.currentData()))
        self.sort_box.currentIndexChanged.connect(
            lambda _i: self.model.set_sort(self.sort_box.currentData()))
        self.split_box.currentIndexChanged.connect(
            lambda _i: self.model.set_split_filter(self.split_box.currentData()))
        self.search_box.textChanged.connect(self.model.set_search)

        top = QHBoxLayout()
        top.addWidget(self.filter_box, 1)
        top.addWidget(self.sort_box, 1)
        second = QHBoxLayout()
        second.addWidget(self.split_box, 1)
        second.addWidget(self.search_box, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addLayout(second)
        lay.addWidget(self.counts_label)
        lay.addWidget(self.view, 1)
        self._current: int = -1
        self._worker: ThumbnailWorker | None = None

    # ---- project
    def set_project(self, project) -> None:
        """Load all images of the project (None: empty)."""
        self._stop_worker()
        self._current = -1
        self._project = project
        if project is None:
            self.model.set_images([])
            self.current_changed.emit(-1)
            return
        self._worker = ThumbnailWorker(project.cache_dir / "thumbs", parent=self)
        self.model.set_thumbnail_worker(self._worker)
        self._worker.start(ThumbnailWorker.Priority.LowPriority)
        self.reload(project)
        if self.model.rowCount():
            self.select_image(self.model.image_ids()[0])

    def reload(self, project) -> None:
        """Re-read records and predictions from the store, keeping the selection."""
        recs = project.images()
        paths = {r.id: (str(project.image_path(r)), r.hash) for r in recs}
        preds: dict = {}
        run = project.active_run()
        if run:
            preds = project.predictions(run)
        keep = self._current
        self.model.set_images(recs, paths, preds)
        if keep >= 0 and self.model.row_of(keep) is not None:
            self.select_image(keep)

    def update_record(self, rec) -> None:
        """A record changed in the store (label, mask): repaint it and the counts."""
        self.model.update_record(rec)
        self.update_counts()

    def shutdown(self) -> None:
        """Stop the thumbnail thread (before the project closes)."""
        self._stop_worker()

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self.model.set_thumbnail_worker(None)
            self._worker.stop()
            self._worker.deleteLater()
            self._worker = None

    # ---- splits
    def selected_ids(self) -> list[int]:
        """The selected images, in view order (the current one when none is selected)."""
        ids = [int(i.data(ImageIdRole)) for i in self.view.selectionModel().selectedIndexes()]
        if not ids and self._current >= 0:
            ids = [self._current]
        order = {i: n for n, i in enumerate(self.model.image_ids())}
        return sorted(set(ids), key=lambda i: order.get(i, 0))

    def move_to_split(self, split: str, ids: list[int] | None = None) -> int:
        """Put the selected (or given) images in `split` (pinned: re-splitting leaves them)."""
        if self._project is None:
            return 0
        from defect_studio.errors import UserError

        ids = self.selected_ids() if ids is None else list(ids)
        moved = 0
        try:
            with self._project.batch():
                for image_id in ids:
                    self.model.update_record(self._project.set_split(image_id, split))
                    moved += 1
        except UserError as exc:
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.warning(self, "Split not changed", str(exc))
            self.reload(self._project)
            return 0
        self.update_counts()
        self.splits_changed.emit()
        return moved

    def _context_menu(self, pos) -> None:
        if self._project is None or not self.selected_ids():
            return
        n = len(self.selected_ids())
        menu = QMenu(self)
        sub = menu.addMenu(f"Move {n} image{'s' if n != 1 else ''} to split")
        for split, text in (("train", "Train"), ("val", "Validation"), ("test", "Test")):
            sub.addAction(text, lambda s=split: self.move_to_split(s))
        menu.exec(self.view.viewport().mapToGlobal(pos))

    # ---- selection / navigation
    def current_id(self) -> int:
        return self._current

    def select_image(self, image_id: int) -> bool:
        row = self.model.row_of(image_id)
        if row is None:
            return False
        idx = self.model.index(row)
        self.view.setCurrentIndex(idx)
        self.view.scrollTo(idx)
        return True

    def step(self, delta: int, *, unlabeled_only: bool = False) -> bool:
        """Select the next (+1) / previous (-1) image in view order; False at the end."""
        target = self.model.state.step(self.model.image_ids(), self._current, delta,
                                       unlabeled_only=unlabeled_only)
        return target is not None and self.select_image(target)

    def _on_current(self, current: QModelIndex, _prev: QModelIndex) -> None:
        image_id = current.data(ImageIdRole) if current.isValid() else -1
        image_id = -1 if image_id is None else int(image_id)
        if image_id != self._current:
            self._current = image_id
            self.current_changed.emit(image_id)

    def _restore_current(self) -> None:
        # A reset drops the selection; put it back on the same image if still shown.
        if self._current >= 0:
            row = self.model.row_of(self._current)
            if row is not None:
                self.view.selectionModel().blockSignals(True)
                self.view.setCurrentIndex(self.model.index(row))
                self.view.selectionModel().blockSignals(False)
                self.view.viewport().update()

    def update_counts(self) -> None:
        self.counts_label.setText(self.model.state.counts_text(self.model.rowCount()))
