"""Cold start in the GUI: a project without defective labels trains the anomaly model
(good parts only), whose scores then put the likely defects first on the Label page.

Train page: ``TrainState.propose_cold_start`` (defect_studio.app.train.state) picks the
model of the kind that trains on good parts only when no image is labelled defective.
Label page: ``LikelyDefectsButton`` shows the unlabeled images sorted by the newest
anomaly run's score, scoring the ones it has not scored yet in the background.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QPushButton, QWidget


class LikelyDefectsButton(QPushButton):
    """Label page: show the unlabeled images, most anomalous first."""

    def __init__(self, page: QWidget) -> None:
        super().__init__("Likely defects first", page)
        self.page = page
        self.worker = None
        self.setToolTip("Unlabeled images sorted by the anomaly model's score (train the "
                        "'Anomaly model (good parts only)' first)")
        self.clicked.connect(self.start)

    def _run(self) -> str | None:
        """The active run when it is a run trained on good parts only (the anomaly model),
        else the newest such finished run."""
        from defect_studio.inference.propose import runs_trained_on

        project = self.page.project
        runs = runs_trained_on(project.runs_dir, "ok_only")
        active = project.active_run()
        return active if active in runs else (runs[0] if runs else None)

    def start(self) -> bool:
        """Score what is missing (in the background), then sort. False when it cannot."""
        from defect_studio.app.common.jobs import PredictionItem, PredictionWorker

        page = self.page
        if page.project is None or (self.worker is not None and self.worker.isRunning()):
            return False
        run_id = self._run()
        if run_id is None:
            page.status_message.emit("No anomaly model yet: train the 'Anomaly model (good parts "
                                     "only)' on the Train page first.")
            return False
        self.run_id = run_id
        project = page.project
        scored = project.predictions(run_id)
        todo = [r for r in project.images(label="unlabeled") if r.id not in scored]
        if not todo:
            self._apply()
            return True
        items = [PredictionItem(str(project.image_path(r)), r.id, r.name) for r in todo]
        self._rows = [(i, s, ng) for i, (s, ng) in scored.items()]
        self.worker = PredictionWorker(Path(project.runs_dir) / run_id, items, parent=self)
        self.worker.progress.connect(lambda d, t: self.setText(f"Scoring {d}/{t}\u2026"))
        self.worker.results.connect(self._on_results)
        self.worker.failed.connect(lambda m: page.status_message.emit(f"Scoring failed: {m}"))
        self.worker.done.connect(self._on_done)
        self.setEnabled(False)
        page.status_message.emit(f"Scoring {len(items)} unlabeled images with {run_id}\u2026")
        self.worker.start()
        return True

    def _on_results(self, results: list) -> None:
        self._rows += [(r.item.image_id, r.score, r.is_ng) for r in results if r.error is None]

    def _on_done(self, state: str) -> None:
        from defect_studio.errors import UserError

        w, self.worker = self.worker, None
        if w is not None:
            w.wait(2000)
            w.deleteLater()
        self.setText("Likely defects first")
        self.setEnabled(True)
        if self.page.project is None:
            return
        try:  # kept with the run, so the next sort is instant
            self.page.project.save_predictions(self.run_id, self._rows)
        except (UserError, OSError) as e:
            self.page.status_message.emit(f"Scores not stored: {e}")
        if state == "finished":
            self._apply()

    def _apply(self) -> None:
        b = self.page.browser
        b.model.set_predictions(self.page.project.predictions(self.run_id))
        b.filter_box.setCurrentIndex(b.filter_box.findData("unlabeled"))
        b.sort_box.setCurrentIndex(b.sort_box.findData("score"))
        b.model.set_sort("score")  # also when the box already showed it
        ids = b.model.image_ids()
        if ids:
            b.select_image(ids[0])
        self.page.status_message.emit(
            f"Unlabeled images, most anomalous first (run {self.run_id}).")
