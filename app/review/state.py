"""The Review page's state and decisions, without Qt (ReviewPage only shows them).

The queue of scored parts in worst-first order, which images a source scores, what a
decision key writes and when to ask first, the store writes of a label, and the review
export (results CSV + overlay PNGs).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from defect_studio.app.common.heatmaps import expand_heatmap
from defect_studio.io.images import IMAGE_EXTENSIONS  # the one list of image types

SOURCES = (
    ("Unlabeled images", "unlabeled"),
    ("Test split", "test"),
    ("All images", "all"),
    ("Folder of new parts\u2026", "folder"),
)
IMAGE_SUFFIXES = set(IMAGE_EXTENSIONS)
# What each decision key writes: (label, source); "accept" writes the model's decision.
KEY_LABELS = {"review_ok": ("ok", "user"), "review_defective": ("defective", "user"),
              "review_accept": (None, "prediction")}
SOURCE_WORDS = {"user": "by a person", "import": "on import"}
REVIEW_CSV = "review.csv"


@dataclass
class ReviewItem:
    """One scored part. image_id is None for a file outside the project (until labelled)."""

    path: str  # absolute path of the image file
    name: str
    image_id: int | None = None
    score: float = float("nan")
    is_ng: bool = False
    label: str = "unlabeled"
    label_source: str = ""
    heatmap: np.ndarray | None = None  # uint8, small (defect_studio.app.common.heatmaps)
    image_shape: tuple[int, int] | None = None
    error: str | None = None

    @property
    def decision(self) -> str:
        if self.error:
            return "error"
        return "NG" if self.is_ng else "OK"

    @property
    def model_label(self) -> str:
        """The label the model's decision means."""
        return "defective" if self.is_ng else "ok"

    def sort_key(self) -> tuple:
        """Worst first: NG before OK, then by score descending; errors last."""
        bad = self.error is not None or not math.isfinite(self.score)
        return (bad, not self.is_ng, -(self.score if not bad else 0.0), self.name)


class ReviewQueue:
    """ReviewItems, always in worst-first order (the order does not change with labels)."""

    def __init__(self) -> None:
        self._items: list[ReviewItem] = []
        self._keys: list[tuple] = []  # sort keys of _items, for bisect

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[ReviewItem]:
        return list(self._items)

    def item(self, row: int) -> ReviewItem:
        return self._items[row]

    def set_items(self, items: list[ReviewItem]) -> None:
        self._items = sorted(items, key=ReviewItem.sort_key)
        self._keys = [it.sort_key() for it in self._items]

    def insertion_row(self, item: ReviewItem) -> int:
        """Where `item` goes to keep the order."""
        return bisect.bisect_left(self._keys, item.sort_key())

    def insert(self, row: int, item: ReviewItem) -> None:
        self._items.insert(row, item)
        self._keys.insert(row, item.sort_key())

    def remove(self, row: int) -> None:
        del self._items[row]
        del self._keys[row]

    def row_of(self, item: ReviewItem) -> int:
        for i, it in enumerate(self._items):
            if it is item:
                return i
        return -1

    def row_of_path(self, path: str) -> int:
        for i, it in enumerate(self._items):
            if it.path == path:
                return i
        return -1

    def next_row(self, row: int) -> int | None:
        """The row after `row`, None at the end of the queue."""
        return row + 1 if row + 1 < len(self._items) else None

    def counts_text(self) -> str:
        n_ng = sum(1 for it in self._items if it.is_ng and not it.error)
        return f"{len(self._items)} parts, {n_ng} NG"


@dataclass(frozen=True)
class Decision:
    """What a decision key does with a part.

    action: "none" (nothing to decide: no part, or it could not be scored), "keep" (it is
    already labelled so: the label and its source stay), "ask" (it would replace a label a
    person or an import gave: ask first, with `question`), "write" (write `label`, `source`).
    """

    action: str
    label: str = ""
    source: str = ""
    question: str = ""


def decide(item: ReviewItem | None, key: str) -> Decision:
    """The decision of a key ("review_accept", "review_ok", "review_defective") on a part."""
    if key not in KEY_LABELS:
        raise ValueError(f"not a review decision key: {key!r}")
    if item is None or item.error:
        return Decision("none")
    label, source = KEY_LABELS[key]
    if source == "user":  # a correction by the user is written as is
        return Decision("write", label, source)
    label = item.model_label
    if item.label == label:
        return Decision("keep", label, source)
    if item.label != "unlabeled" and item.label_source != "prediction":
        who = SOURCE_WORDS.get(item.label_source, item.label_source)
        return Decision("ask", label, source, (
            f"{item.name} was labelled {item.label} {who}; the model says {label}.\n\n"
            "Replace the label with the model's decision?"))
    return Decision("write", label, source)


class ReviewState:
    """The open project, the run that scores, and its review queue."""

    def __init__(self) -> None:
        self.project = None
        self.run_id: str | None = None
        self.queue = ReviewQueue()

    def set_project(self, project) -> None:
        self.project = project
        self.run_id = project.active_run() if project is not None else None

    def run_dir(self) -> Path | None:
        if self.project is None or not self.run_id:
            return None
        return Path(self.project.runs_dir) / self.run_id

    # -- what gets scored ------------------------------------------------------------------
    def images_of(self, source: str) -> list:
        """The project's records a source ("unlabeled" / "test" / "all") scores."""
        if self.project is None:
            return []
        if source == "unlabeled":
            return self.project.images(label="unlabeled")
        if source == "test":
            return self.project.images(split="test")
        if source == "all":
            return self.project.images()
        raise ValueError(f"unknown review source {source!r}")

    @staticmethod
    def folder_images(folder: str | Path) -> list[Path]:
        """The image files under a folder of new parts, sorted."""
        return sorted(p for p in Path(folder).rglob("*")
                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def known_records(self, files: list[Path]) -> dict[str, object]:
        """Which files of a folder of new parts are already in the project: path -> record.

        Matched by content (the sha1 the store keeps), as the store itself matches a file
        imported twice: a part once imported with --copy lives under another path, so the
        folder's path alone would not find it and its label would be lost (issue 16)."""
        import hashlib

        if self.project is None:
            return {}
        by_hash = {r.hash: r for r in self.project.images()}
        out: dict[str, object] = {}
        for path in files:
            rec = self.project.find_image(str(path))
            if rec is None and by_hash:
                try:
                    digest = hashlib.sha1(Path(path).read_bytes()).hexdigest()
                except OSError:
                    continue  # scored as an error later, with its reason
                rec = by_hash.get(digest)
            if rec is not None:
                out[str(path)] = rec
        return out

    def item_for(self, rec, *, score: float = float("nan"), is_ng: bool = False) -> ReviewItem:
        return ReviewItem(path=str(self.project.image_path(rec)), name=rec.name, image_id=rec.id,
                          score=float(score), is_ng=bool(is_ng), label=rec.label,
                          label_source=rec.label_source)

    def stored_items(self) -> list[ReviewItem]:
        """The run's stored predictions as queue items (images deleted since left out)."""
        if self.project is None or not self.run_id:
            return []
        stored = self.project.predictions(self.run_id)
        recs = {r.id: r for r in self.project.images()}
        return [self.item_for(recs[i], score=score, is_ng=is_ng)
                for i, (score, is_ng) in stored.items() if i in recs]

    def reload_labels(self) -> list[int]:
        """Take the stored labels (another page may have changed them); the changed rows."""
        recs = {r.id: r for r in self.project.images()}
        changed = []
        for row, it in enumerate(self.queue.items()):
            rec = recs.get(it.image_id) if it.image_id is not None else None
            if rec is not None and (rec.label, rec.label_source) != (it.label, it.label_source):
                it.label, it.label_source = rec.label, rec.label_source
                changed.append(row)
        return changed

    def store_predictions(self, rows: list[tuple[int, float, bool]]) -> None:
        """Add rows to the run's stored predictions (save_predictions replaces them all)."""
        if self.project is None or not self.run_id:
            return
        merged = self.project.predictions(self.run_id)
        merged.update({i: (score, ng) for i, score, ng in rows})
        self.project.save_predictions(
            self.run_id, [(i, score, ng) for i, (score, ng) in merged.items()])

    # -- labels ----------------------------------------------------------------------------
    def write_label(self, item: ReviewItem, label: str, source: str):
        """Store a label of a part: (record, label and source before). A part from a folder
        becomes training data: copied into the project with its label and given a split,
        so that Retrain uses it. Raises UserError when the store refuses."""
        before = (item.label, item.label_source)
        if item.image_id is None:
            rec = self.project.add_image(item.path, copy=True, label=label, source=source)
            item.image_id = rec.id
            if (rec.label, rec.label_source) != (label, source):
                # the same content was in the project already (add_image returns it as it
                # is): the correction is written to that record, never dropped
                before = (rec.label, rec.label_source)
                rec = self.project.set_label(rec.id, label, source=source)
            else:
                before = ("unlabeled", "import")
            if rec.split is None:
                self.project.assign_splits(only_unassigned=True)
                rec = self.project.image(rec.id)
            self.store_predictions([(rec.id, item.score, item.is_ng)])
        else:
            rec = self.project.set_label(item.image_id, label, source=source)
        item.label, item.label_source = rec.label, rec.label_source
        return rec, before

    # -- what the page says ----------------------------------------------------------------
    def empty_hint(self, predicting: bool = False) -> str:
        """What the empty image area says: the next step, not just "No image"."""
        if self.project is None:
            return "Open a project to review its parts."
        if not self.run_id:
            return "No trained model yet: train one on the Train page, then score parts here."
        if predicting:
            return "Scoring\u2026"
        if not len(self.queue):
            return (f"Choose the images to score under \u201cImages\u201d above and press "
                    f"Predict (model: run {self.run_id}).")
        return "Select a part in the list."

    def export_rows(self) -> list[tuple]:
        """(path, score, is_ng, label, small heatmap) of the parts that were scored."""
        return [(it.path, it.score, it.is_ng, it.label, it.heatmap)
                for it in self.queue.items() if not it.error]


def write_review_export(folder: Path, run_dir: Path, rows: list, *, overlays: bool = True,
                        alpha: float = 0.5, colormap: str = "jet",
                        vmax: float | None = None) -> int:
    """review.csv + overlays/<name>.png for (path, score, is_ng, label, small heatmap) rows;
    the number of rows. Each row names the run and the threshold that decided it; the
    overlays show the heat relative to `vmax` (the run's range) with NG peaks marked.

    Written by the one writer of results and overlays that predict and watch use too
    (defect_studio.inference.results: review.csv atomically, overlays with unique names,
    bounded in size, a failed overlay left empty without stopping the export); rows
    without a heatmap are scored again with the run to get one.
    """
    from defect_studio.inference.prediction import read_threshold
    from defect_studio.inference.results import REVIEW_COLUMNS, ResultsWriter
    from defect_studio.io.images import read_image

    threshold, _source = read_threshold(run_dir)
    run_id = Path(run_dir).name
    predictor = None
    with ResultsWriter(Path(folder), REVIEW_CSV, REVIEW_COLUMNS,
                       overlay_dir="overlays" if overlays else "", overlay_suffix="",
                       atomic=True) as out:
        for path, score, is_ng, label, small in rows:
            overlay_name = ""
            if overlays:
                image = read_image(path)
                if small is not None:
                    heat = expand_heatmap(small, image.shape[:2])
                else:
                    if predictor is None:
                        from defect_studio.inference import load_predictor

                        predictor = load_predictor(run_dir)
                    heat = predictor.predict(image).heatmap
                overlay_name = out.write_overlay(path, image, heat, score, is_ng,
                                                 alpha=alpha, colormap=colormap, vmax=vmax)
            out.add({"path": path, "score": f"{score:.6f}", "decision": "NG" if is_ng else "OK",
                     "label": label, "overlay": overlay_name, "run_id": run_id,
                     "threshold": "" if threshold is None else repr(float(threshold))})
    return out.count
