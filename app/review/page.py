"""The Review page: score parts with the active run, walk the rejected ones worst-first,
accept or correct each decision with one key, export the results."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, Signal, Slot
from PySide6.QtGui import QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from defect_studio.app.common.actions import action, critical_user, warn_user
from defect_studio.app.common.heatmap_view import HEAT_SCALES, HeatmapView
from defect_studio.app.common.heatmaps import expand_heatmap
from defect_studio.app.common.jobs import (
    FunctionWorker,
    PredictionItem,
    PredictionResult,
    PredictionWorker,
)
from defect_studio.app.common.label_history import LabelHistory
from defect_studio.app.review.boxes import ReviewBoxes
from defect_studio.app.review.queue import ReviewQueueModel
from defect_studio.app.review.state import (
    SOURCES,
    ReviewItem,
    ReviewState,
    decide,
    write_review_export,
)
from defect_studio.app.review.viewer import ReviewViewer
from defect_studio.app.shell.shortcuts import key_sequences, shortcut
from defect_studio.inference.overlay import COLORMAPS

# Review keys come from the shortcut table, so F1 lists the keys that work here.
KEY_ACCEPT, KEY_OK, KEY_DEFECTIVE, KEY_HEATMAP = (
    shortcut(a).keys[0]
    for a in ("review_accept", "review_ok", "review_defective", "review_heatmap"))


class ReviewPage(QWidget):
    """Review page. Signals for the main window: labels_changed(), retrain_requested(),
    edit_mask_requested(image_id); prediction_ended(state) when a prediction job ends."""

    labels_changed = Signal()
    retrain_requested = Signal()
    edit_mask_requested = Signal(int)
    # image id, draft mask (defect_studio.app.review.mask_proposal)
    propose_mask_requested = Signal(int, object)
    prediction_ended = Signal(str)
    export_finished = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = ReviewState()
        self.worker: PredictionWorker | None = None
        self._heatmap_worker: PredictionWorker | None = None
        self._heatmap_wanted: ReviewItem | None = None
        self._heatmap_for: ReviewItem | None = None
        self._new_results: list[PredictionResult] = []
        self._labelled_during_run = False
        self._shown: ReviewItem | None = None
        self._retired: list[PredictionWorker] = []
        self._export_worker: FunctionWorker | None = None
        self.history = LabelHistory()  # labels written here, for Ctrl+Z
        self._build()
        self._update_enabled()

    # -- UI --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_label = QLabel("Run: none")
        self.source_combo = QComboBox()
        for text, key in SOURCES:
            self.source_combo.addItem(text, key)
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Score the chosen images with the active run "
                                       "(in the background)")
        self.predict_button.clicked.connect(self._on_predict_clicked)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_prediction)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("not started")  # "0 / 100" before anything ran misled
        self.progress_bar.setValue(0)
        self.status_label = QLabel("")
        top = QHBoxLayout()
        top.addWidget(self.run_label)
        top.addWidget(QLabel("Images:"))
        top.addWidget(self.source_combo)
        top.addWidget(self.predict_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress_bar, 1)

        self.model = ReviewQueueModel(self, self.state.queue)
        self.queue_view = QTableView()
        self.queue_view.setModel(self.model)
        self.queue_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.queue_view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.queue_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.queue_view.verticalHeader().setVisible(False)
        # Part names differ in their numbers, not in the common prefix or ".png".
        self.queue_view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        # Fixed widths: ResizeToContents measures every row on each change (slow on long queues).
        header = self.queue_view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col, width in ((1, 60), (2, 64), (3, 130)):
            header.resizeSection(col, width)
        self.queue_view.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.counts_label = QLabel("")

        keys = QHBoxLayout()
        self.accept_button = QPushButton(f"Accept ({KEY_ACCEPT})")
        self.accept_button.setToolTip("Keep the model's decision as the label")
        self.accept_button.clicked.connect(self.accept_current)
        self.ok_button = QPushButton(f"OK ({KEY_OK})")
        self.ok_button.setToolTip("Correct to OK")
        self.ok_button.clicked.connect(lambda: self.decide_current("review_ok"))
        self.ng_button = QPushButton(f"Defective ({KEY_DEFECTIVE})")
        self.ng_button.setToolTip("Correct to defective")
        self.ng_button.clicked.connect(lambda: self.decide_current("review_defective"))
        self.mask_button = QPushButton("Paint mask\u2026")
        self.mask_button.setToolTip("Open this image on the Label page to paint its defect mask")
        self.mask_button.clicked.connect(self._request_mask)
        for b in (self.accept_button, self.ok_button, self.ng_button, self.mask_button):
            keys.addWidget(b)
        from defect_studio.app.review.mask_proposal import add_propose_button
        self.propose_button = add_propose_button(self, keys)

        left = QVBoxLayout()
        left.addWidget(QLabel("Parts, worst first"))
        left.addWidget(self.queue_view, 1)
        left.addWidget(self.counts_label)
        left.addLayout(keys)
        bottom = QHBoxLayout()
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setToolTip("Train a new run that includes your corrections")
        self.retrain_button.clicked.connect(self.retrain_requested)
        self.export_button = QPushButton("Export\u2026")
        self.export_button.setToolTip("Write a CSV (path, score, decision, label) and overlay PNGs")
        self.export_button.clicked.connect(self._on_export_clicked)
        bottom.addWidget(self.retrain_button)
        bottom.addWidget(self.export_button)
        left.addLayout(bottom)
        left_w = QWidget()
        left_w.setLayout(left)

        self.view = HeatmapView()
        self.heatmap_check = QCheckBox(f"Heatmap ({KEY_HEATMAP})")
        self.heatmap_check.setChecked(True)
        self.heatmap_check.toggled.connect(self.view.set_heatmap_visible)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(int(self.view.alpha() * 100))
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.opacity_slider.valueChanged.connect(lambda v: self.view.set_alpha(v / 100.0))
        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(list(COLORMAPS))
        self.colormap_combo.setCurrentText(self.view.colormap())
        self.colormap_combo.currentTextChanged.connect(self.view.set_colormap)
        self.scale_combo = QComboBox()
        for text, key in HEAT_SCALES:
            self.scale_combo.addItem(text, key)
        self.scale_combo.setToolTip(
            "Which heat gets the top colour: the run's range (its hottest defect), this "
            "part's own peak (auto-contrast: a weak map becomes visible), or absolute 0\u20131")
        self.scale_combo.currentIndexChanged.connect(
            lambda _i: self.view.set_scale_mode(self.scale_combo.currentData()))
        opts = QHBoxLayout()
        opts.addWidget(self.heatmap_check)
        opts.addWidget(QLabel("Opacity"))
        opts.addWidget(self.opacity_slider, 1)
        opts.addWidget(QLabel("Scale"))
        opts.addWidget(self.scale_combo)
        opts.addWidget(QLabel("Colours"))
        opts.addWidget(self.colormap_combo)
        self.detail_label = QLabel("")
        self.detail_label.setWordWrap(True)
        self.viewer = ReviewViewer(self.view)
        right = QVBoxLayout()
        right.addWidget(self.viewer, 1)
        right.addLayout(opts)
        right.addWidget(self.detail_label)
        right_w = QWidget()
        right_w.setLayout(right)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_w)
        split.addWidget(right_w)
        split.setStretchFactor(1, 2)
        split.setSizes([440, 840])  # the queue shows whole part names at 1280 px
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addWidget(self.status_label)
        self.boxes = ReviewBoxes(self)  # predicted boxes of detector runs

        ctx = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for key, slot in (("review_accept", self.accept_current),
                             ("review_ok", lambda: self.decide_current("review_ok")),
                             ("review_defective", lambda: self.decide_current("review_defective")),
                             ("review_heatmap", self.heatmap_check.toggle),
                             ("review_undo", self.undo_label)):
            for seq in key_sequences(key):
                sc = QShortcut(seq, self)
                sc.setContext(ctx)
                sc.activated.connect(slot)

    # -- project and run -------------------------------------------------------------------
    @property
    def _project(self):
        return self.state.project

    @property
    def _run_id(self) -> str | None:
        return self.state.run_id

    def set_project(self, project) -> None:
        """Show the stored predictions of `project`'s active run; None clears the page."""
        self._retire_workers()
        self.state.set_project(project)
        self.history.clear()
        self.status_label.setText("")
        self.detail_label.setText("")
        self.model.clear()
        self.view.clear()
        self.viewer.clear()
        self.viewer.set_runs(project, self._run_id)
        self._load_stored()
        self._update_enabled()

    def refresh(self) -> None:
        """Re-read the active run and its stored predictions (e.g. after training)."""
        if self._project is None:
            return
        run_id = self._project.active_run()
        self.viewer.set_runs(self._project, run_id)
        if run_id != self._run_id:
            self._retire_workers()
            self.state.run_id = run_id
            self.model.clear()
            self.view.clear()
            self._load_stored()
        else:
            self._reload_labels()
        self._update_enabled()

    def _reload_labels(self) -> None:
        """Labels may have changed on the Label page: show the stored ones."""
        for row in self.state.reload_labels():
            self.model.item_changed(row)

    def _retire_workers(self) -> None:
        """Stop and disconnect running scoring workers: their results belong to the old
        project (or run) and must not be shown or stored with the new one."""
        for attr in ("worker", "_heatmap_worker"):
            w = getattr(self, attr)
            if w is None:
                continue
            setattr(self, attr, None)
            w.cancel()
            for sig in (w.progress, w.results, w.failed, w.done):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):  # nothing connected
                    pass
            if w.isRunning():
                self._retired.append(w)  # keep a reference until the thread has ended
                w.finished.connect(
                    lambda w=w: self._retired.remove(w) if w in self._retired else None)
                w.finished.connect(w.deleteLater)
            else:
                w.deleteLater()
        self._new_results = []
        self._heatmap_for = self._heatmap_wanted = self._shown = None
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setFormat("not started")
        self.progress_bar.setValue(0)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        # The review keys act within this page: start with the queue focused.
        self.queue_view.setFocus()

    def run_id(self) -> str | None:
        return self._run_id

    def _run_dir(self) -> Path | None:
        return self.state.run_dir()

    def _load_stored(self) -> None:
        from defect_studio.inference.heat_range import read_heat_range

        self.run_label.setText(f"Run: {self._run_id or 'none (train one first)'}")
        run_dir = self._run_dir()
        self.view.set_run_range(read_heat_range(run_dir) if run_dir is not None else None)
        if self._project is None or not self._run_id:
            return
        self.model.set_items(self.state.stored_items())
        self._after_queue_change(select_first=True)

    # -- prediction ------------------------------------------------------------------------
    def _on_predict_clicked(self) -> None:
        source = self.source_combo.currentData()
        if source == "folder":
            from defect_studio.app.common.dialog_dirs import pick_folder

            folder = pick_folder(self, "Folder of new parts")
            if not folder:
                return
            self.predict_folder(folder)
        else:
            self.predict(source)

    def predict(self, source: str = "unlabeled") -> bool:
        """Score the project's "unlabeled" / "test" / "all" images; False if nothing to do."""
        if self._project is None:
            return False
        recs = self.state.images_of(source)
        items = [PredictionItem(str(self._project.image_path(r)), r.id, r.name) for r in recs]
        if not items:
            self.status_label.setText(
                f"No images in “{self.source_combo.itemText(self._source_index(source))}” "
                "to score: choose another set of images.")
            return False
        started = self._start_prediction(items)
        if started:
            self._show_source(source)
        return started

    def _source_index(self, source: str) -> int:
        return max(0, self.source_combo.findData(source))

    def _show_source(self, source: str) -> None:
        """The Images combo names what is being scored (also when called from code)."""
        self.source_combo.setCurrentIndex(self._source_index(source))

    def predict_folder(self, folder: str | Path) -> bool:
        """Score the image files of a folder (new parts, not yet in the project)."""
        folder = Path(folder)
        files = self.state.folder_images(folder)
        if not files:
            warn_user(self, "No images", f"No image files found in {folder}.")
            return False
        known = self.state.known_records(files)  # by path or by content
        items = [PredictionItem(str(p), known[str(p)].id if str(p) in known else None, p.name)
                 for p in files]
        started = self._start_prediction(items)
        if started:
            self._show_source("folder")
        return started

    def _start_prediction(self, items: list[PredictionItem]) -> bool:
        run_dir = self._run_dir()
        if run_dir is None:
            QMessageBox.information(self, "No model", "Train a model (or set an active run) first.")
            return False
        if self.is_predicting():
            self.status_label.setText("A prediction is already running.")
            return False
        self._new_results = []
        self._labelled_during_run = False
        self.progress_bar.setFormat("%v / %m")
        self.progress_bar.setRange(0, len(items))
        self.progress_bar.setValue(0)
        self.status_label.setText(f"Scoring {len(items)} images with run {self._run_id}\u2026")
        worker = PredictionWorker(run_dir, items, parent=self,
                                  range_paths=self._range_paths())
        worker.heat_range.connect(self.view.set_run_range)
        worker.progress.connect(self._on_progress)
        worker.results.connect(self._on_results)
        worker.failed.connect(self._on_failed)
        worker.done.connect(self._on_done)
        self.worker = worker
        worker.start()
        self._update_enabled()
        return True

    def _range_paths(self) -> list:
        """Defective images to measure the run's heat range on, when it has none yet."""
        from defect_studio.inference.heat_range import sample_paths

        if self._project is None or self.view.run_range() is not None:
            return []
        return sample_paths(self._project)

    def is_predicting(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    @Slot()
    def cancel_prediction(self) -> None:
        if self.is_predicting():
            self.status_label.setText("Cancelling\u2026")
            self.worker.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)

    def _on_results(self, results: list[PredictionResult]) -> None:
        self._new_results.extend(results)
        items = []
        for r in results:
            it = ReviewItem(path=r.item.path, name=r.item.name or Path(r.item.path).name,
                            image_id=r.item.image_id, score=r.score, is_ng=r.is_ng,
                            heatmap=r.heatmap, image_shape=r.image_shape, error=r.error)
            if it.image_id is not None and self._project is not None:
                rec = self._project.image(it.image_id)
                it.label, it.label_source = rec.label, rec.label_source
            items.append(it)
        current = self.current_item()
        self.model.add_items(items)
        if current is not None and self.model.row_of(current) < 0:
            self.select_row(self.model.row_of_path(current.path))  # it was scored again
        self._after_queue_change(select_first=current is None)

    def _on_failed(self, message: str) -> None:
        critical_user(self, "Prediction failed", message)

    def _on_done(self, state: str) -> None:
        worker = self.worker
        rows = [(r.item.image_id, r.score, r.is_ng) for r in self._new_results
                if r.item.image_id is not None and r.error is None]
        n_err = sum(1 for r in self._new_results if r.error)
        if rows:
            self._store_predictions(rows)
        msg = {"finished": "Scored", "cancelled": "Cancelled after",
               "failed": "Failed after"}[state]
        text = f"{msg} {len(self._new_results)} images"
        if n_err:
            text += f" ({n_err} could not be read: see the tooltips)"
        self.status_label.setText(text + ".")
        self._new_results = []
        if not self._labelled_during_run and self.model.rowCount():
            self.select_row(0)  # the review starts at the worst part
        if worker is not None:
            worker.wait(2000)
            worker.deleteLater()
        self.worker = None
        self._update_enabled()
        self.prediction_ended.emit(state)

    def _store_predictions(self, rows: list[tuple[int, float, bool]]) -> None:
        """Add rows to the run's stored predictions (save_predictions replaces them all)."""
        from defect_studio.errors import UserError

        try:
            self.state.store_predictions(rows)
        except (UserError, OSError) as e:  # the results stay on screen and exportable
            warn_user(self, "Predictions not saved", str(e))

    # -- selection and display -------------------------------------------------------------
    def current_item(self) -> ReviewItem | None:
        idx = self.queue_view.currentIndex()
        if not idx.isValid() or idx.row() >= self.model.rowCount():
            return None
        return self.model.item(idx.row())

    def select_row(self, row: int) -> None:
        if 0 <= row < self.model.rowCount():
            idx = self.model.index(row, 0)
            self.queue_view.selectionModel().setCurrentIndex(
                idx, QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows)
            self.queue_view.scrollTo(idx)

    def _after_queue_change(self, *, select_first: bool = False,
                            keep: ReviewItem | None = None) -> None:
        self.counts_label.setText(self.state.queue.counts_text())
        if keep is not None and self.model.row_of(keep) >= 0:
            self.select_row(self.model.row_of(keep))
        elif select_first and self.model.rowCount():
            self.select_row(0)
        self._update_enabled()

    def _on_current_changed(self, current, _previous) -> None:
        it = self.current_item()
        if it is not self._shown or it is None:
            self._show(it)
        self._update_enabled()

    def _show(self, it: ReviewItem | None) -> None:
        if it is not self._shown and it is not None:
            self.viewer.fit_all()  # a new part starts whole: a defect is never off-screen
        self._shown = it
        if it is None:
            self.view.clear()
            self.viewer.clear()
            self.detail_label.setText("")
            return
        from defect_studio.errors import UserError
        from defect_studio.io.images import read_image

        try:
            image = read_image(it.path)
        except UserError as e:
            self.view.clear()
            self.view.set_message(str(e))
            self.detail_label.setText(str(e))
            return
        image = self.boxes.decorate(it, image)
        heat = None
        if it.heatmap is not None:
            heat = expand_heatmap(it.heatmap, image.shape[:2])
        score = None if it.error else it.score
        self.view.set_content(image, heat, score, None if it.error else it.is_ng)
        mask = None
        if it.image_id is not None and self._project is not None:
            try:
                mask = self._project.load_mask(it.image_id)
            except (UserError, OSError):
                mask = None
        self.viewer.show_item(it, image, heat, mask, it.label)
        self.detail_label.setText(
            f"{it.name} \u2014 score {it.score:.4f}, model says {it.decision}; label: {it.label}"
            + (f" ({it.label_source})" if it.label != "unlabeled" else "")
            if not it.error else f"{it.name}: {it.error}")
        if it.heatmap is None and not it.error:
            self._load_heatmap(it)

    def _load_heatmap(self, it: ReviewItem) -> None:
        """Stored predictions have no heatmap: compute the shown one in the background."""
        self._heatmap_wanted = it
        if self._heatmap_worker is not None and self._heatmap_worker.isRunning():
            return  # picked up when the running one ends
        run_dir = self._run_dir()
        if run_dir is None:
            return
        w = PredictionWorker(run_dir, [PredictionItem(it.path, it.image_id, it.name)], parent=self,
                             range_paths=self._range_paths())
        w.heat_range.connect(self.view.set_run_range)
        w.results.connect(self._on_heatmap)
        w.done.connect(self._on_heatmap_done)
        self._heatmap_worker = w
        self._heatmap_for = it
        w.start()

    def _on_heatmap(self, results: list[PredictionResult]) -> None:
        for r in results:
            if r.error is None and self._heatmap_for is not None \
                    and r.item.path == self._heatmap_for.path:
                self._heatmap_for.heatmap = r.heatmap
                self._heatmap_for.image_shape = r.image_shape
                if self.current_item() is self._heatmap_for:
                    self._show(self._heatmap_for)

    def _on_heatmap_done(self, _state: str) -> None:
        w, self._heatmap_worker = self._heatmap_worker, None
        if w is not None:
            w.wait(1000)
            w.deleteLater()
        cur = self.current_item()
        if cur is not None and cur.heatmap is None and cur is self._heatmap_wanted \
                and cur is not self._heatmap_for:
            self._load_heatmap(cur)

    # -- decisions -------------------------------------------------------------------------
    @Slot()
    def accept_current(self) -> None:
        """A: the model's decision becomes the label (source "prediction")."""
        self.decide_current("review_accept")

    def label_current(self, label: str) -> None:
        """O / D: the user's correction (source "user")."""
        self.decide_current({"ok": "review_ok", "defective": "review_defective"}[label])

    def decide_current(self, key: str) -> None:
        """What a decision key ("review_accept", "review_ok", "review_defective") does with
        the current part (ReviewState's `decide`); this page asks and shows."""
        it = self.current_item()
        d = decide(it, key)
        if d.action == "none":
            return
        if d.action == "keep":
            # Already labelled so (by a person or an import): keep that label and its source.
            self.status_label.setText(f"{it.name}: already labelled {d.label}.")
            self._advance(self.model.row_of(it))
            return
        if d.action == "ask":
            answer = QMessageBox.question(
                self, "Replace the label?", d.question,
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                self.status_label.setText(f"{it.name}: label kept ({it.label}).")
                return
        self._write_label(it, d.label, d.source)

    def _write_label(self, it: ReviewItem, label: str, source: str) -> None:
        if self._project is None:
            return
        from defect_studio.errors import UserError

        try:
            rec, before = self.state.write_label(it, label, source)
        except UserError as e:
            warn_user(self, "Label not saved", str(e))
            return
        self.history.record(rec.id, it.name, before, (rec.label, rec.label_source))
        self._labelled_during_run = True
        row = self.model.row_of(it)
        self.model.item_changed(row)
        self.labels_changed.emit()
        how = "accepted" if source == "prediction" else "corrected"
        split = f" In the {rec.split} split." if rec.split else ""
        self.status_label.setText(f"{it.name}: labelled {label} ({how}).{split} Ctrl+Z undoes.")
        action(f"review: {it.name} (image {rec.id}) labelled {label} ({how}, run {self._run_id})")
        self._advance(row)

    def _advance(self, row: int) -> None:
        """The next part comes up (the queue order does not change with labels)."""
        nxt = self.state.queue.next_row(row)
        if nxt is not None:
            self.select_row(nxt)
        else:
            it = self.current_item()
            if it is not None:
                self._show(it)
            # what was just saved stays said
            said = self.status_label.text()
            self.status_label.setText(f"{said} End of the queue." if said else
                                      "End of the queue.")

    def undo_label(self) -> None:
        """Ctrl+Z: give the last image labelled here its label before."""
        if self._project is None or not self.history.can_undo():
            return
        from defect_studio.errors import UserError

        try:
            step, rec = self.history.undo(self._project)
        except UserError as e:
            warn_user(self, "Cannot undo", str(e))
            return
        for row, item in enumerate(self.model.items()):
            if item.image_id == rec.id:
                item.label, item.label_source = rec.label, rec.label_source
                self.model.item_changed(row)
                self.select_row(row)
        self.labels_changed.emit()
        self.status_label.setText(f"Undone: {step.name} is {rec.label} again.")
        action(f"review: undone, {step.name} is {rec.label} again")

    def _request_mask(self) -> None:
        it = self.current_item()
        if it is not None and it.image_id is not None:
            self.edit_mask_requested.emit(it.image_id)

    # -- export ----------------------------------------------------------------------------
    def _on_export_clicked(self) -> None:
        from defect_studio.app.common.dialog_dirs import pick_folder

        folder = pick_folder(self, "Export review results to")
        if folder:
            self.export_results(folder)

    def export_results(self, folder: str | Path, *, overlays: bool = True) -> bool:
        """Write review.csv (path, score, decision, label) and overlay PNGs in the background."""
        rows = self.state.export_rows()
        run_dir = self._run_dir()
        if not rows or run_dir is None:
            self.status_label.setText("Nothing to export: score some images first.")
            return False
        if self._export_worker is not None and self._export_worker.isRunning():
            return False
        alpha, cmap = self.view.alpha(), self.view.colormap()
        vmax = self.view.run_range() if self.view.scale_mode() != "absolute" else None
        worker = FunctionWorker(
            lambda: write_review_export(Path(folder), run_dir, rows, overlays=overlays,
                                        alpha=alpha, colormap=cmap, vmax=vmax), self)
        worker.result.connect(lambda n: self._on_exported(str(folder), n))
        worker.failed.connect(lambda msg: critical_user(self, "Export failed", msg))
        worker.finished.connect(self._update_enabled)
        self._export_worker = worker
        self.status_label.setText(f"Exporting {len(rows)} results\u2026")
        worker.start()
        self._update_enabled()
        return True

    def _on_exported(self, folder: str, n: int) -> None:
        self.status_label.setText(f"Exported {n} results to {folder}.")
        action(f"review: exported {n} results to {folder}")
        self.export_finished.emit(folder)

    def empty_hint(self) -> str:
        """What the empty image area says: the next step, not just "No image"."""
        return self.state.empty_hint(self.is_predicting())

    def _update_enabled(self) -> None:
        if self.current_item() is None:
            self.view.set_message(self.empty_hint())
        has_run = self._project is not None and bool(self._run_id)
        busy = self.is_predicting()
        it = self.current_item()
        usable = it is not None and not it.error
        self.predict_button.setEnabled(has_run and not busy)
        self.source_combo.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        for b in (self.accept_button, self.ok_button, self.ng_button):
            b.setEnabled(usable)
        self.mask_button.setEnabled(usable and it.image_id is not None)
        self.retrain_button.setEnabled(self._project is not None)
        exporting = self._export_worker is not None and self._export_worker.isRunning()
        self.export_button.setEnabled(has_run and self.model.rowCount() > 0 and not exporting)

    def shutdown(self) -> None:
        """Stop background work (used when the window closes)."""
        self.viewer.shutdown()
        for w in (self.worker, self._heatmap_worker, self._export_worker, *self._retired):
            if w is not None and w.isRunning():
                if isinstance(w, PredictionWorker):
                    w.cancel()
                w.wait(5000)

