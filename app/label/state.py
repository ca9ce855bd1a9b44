"""The Label page's state and decisions, without Qt (LabelPage and its image browser only
show them).

The project's image records and the active run's predictions, which of them pass the
filter, split filter, search and type limit, in which order, the counts, where "next" and
"next unlabeled" go, what a labelling key writes and what follows, and what the end of a
mask stroke does to the store.
"""

from __future__ import annotations

FILTERS = {
    "all": "All images",
    "unlabeled": "Unlabeled",
    "ok": "OK",
    "defective": "Defective (NG)",
    "masked": "With mask",
    "pred_ng": "Predicted NG",
    "disagree": "Prediction disagrees",
}
SORTS = {"name": "Sort by name", "score": "Sort by score (high first)",
         "id": "Sort by import order"}
SPLIT_FILTERS = {"all": "All splits", "train": "Train split", "val": "Validation split",
                 "test": "Test split", "none": "No split"}
SPLIT_BADGES = {"train": "tr", "val": "va", "test": "te"}
# What each labelling key writes.
KEY_LABELS = {"label_ok": "ok", "label_defective": "defective", "label_clear": "unlabeled"}
ALL_LABELLED = "All images are labelled \u2014 train a model on the Train page (Ctrl+2)."


class LabelState:
    """Records (Project.images()), predictions (Project.predictions(run)) and the view's
    filter, split filter, search, type limit and order."""

    def __init__(self) -> None:
        self.records: dict[int, object] = {}
        self.predictions: dict[int, tuple[float, bool]] = {}
        self.filter = "all"
        self.split_filter = "all"
        self.search = ""
        self.sort = "name"
        self.only_ids: set[int] | None = None  # e.g. images with a box of one type

    # -- data in ---------------------------------------------------------------------------
    def set_images(self, records: list, predictions: dict | None = None) -> None:
        self.records = {r.id: r for r in records}
        self.predictions = dict(predictions or {})

    def update_record(self, rec) -> None:
        self.records[rec.id] = rec

    # -- what is shown, in which order -----------------------------------------------------
    def set_filter(self, name: str) -> None:
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}; one of {', '.join(FILTERS)}")
        self.filter = name

    def set_split_filter(self, name: str) -> None:
        """Show only one split ("train", "val", "test", "none" = no split, "all")."""
        if name not in SPLIT_FILTERS:
            raise ValueError(f"unknown split filter {name!r}; one of {', '.join(SPLIT_FILTERS)}")
        self.split_filter = name

    def set_search(self, text: str) -> None:
        """Show only images whose file name contains `text` (any case)."""
        self.search = text.strip().lower()

    def set_sort(self, name: str) -> None:
        if name not in SORTS:
            raise ValueError(f"unknown sort {name!r}; one of {', '.join(SORTS)}")
        self.sort = name

    def set_only_ids(self, ids) -> None:
        """Show only these images on top of the filter (None: no such limit)."""
        self.only_ids = None if ids is None else set(ids)

    def passes(self, rec) -> bool:
        if self.only_ids is not None and rec.id not in self.only_ids:
            return False
        sf = self.split_filter
        if sf != "all" and (rec.split or "none") != sf:
            return False
        if self.search and self.search not in rec.name.lower():
            return False
        f = self.filter
        if f == "all":
            return True
        if f in ("unlabeled", "ok", "defective"):
            return rec.label == f
        if f == "masked":
            return bool(rec.has_mask)
        pred = self.predictions.get(rec.id)
        if f == "pred_ng":
            return pred is not None and bool(pred[1])
        if f == "disagree":
            return (pred is not None and rec.label != "unlabeled"
                    and bool(pred[1]) != (rec.label == "defective"))
        return True

    def ordered_ids(self) -> list[int]:
        """The ids that pass, in view order."""
        recs = [r for r in self.records.values() if self.passes(r)]
        if self.sort == "name":
            recs.sort(key=lambda r: (r.name.lower(), r.id))
        elif self.sort == "score":
            # Highest score first; images without a prediction go last, by name.
            recs.sort(key=lambda r: (r.id not in self.predictions,
                                     -self.predictions.get(r.id, (0.0, False))[0],
                                     r.name.lower()))
        else:
            recs.sort(key=lambda r: r.id)
        return [r.id for r in recs]

    # -- counts ----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Counts over all images (not just the shown ones), labels and splits."""
        c = {"images": len(self.records), "ok": 0, "defective": 0, "unlabeled": 0, "masked": 0,
             "train": 0, "val": 0, "test": 0, "no_split": 0}
        for r in self.records.values():
            c[r.label] = c.get(r.label, 0) + 1
            c["masked"] += bool(r.has_mask)
            c[r.split if r.split in SPLIT_BADGES else "no_split"] += 1
        return c

    def counts_text(self, shown: int) -> str:
        c = self.counts()
        done = ("\nAll images are labelled \u2713 \u2014 train a model on the Train page."
                if c["images"] and not c["unlabeled"] else "")
        return (f"{c['images']} images, {shown} shown\n{c['ok']} OK \u00b7 {c['defective']} NG "
                f"\u00b7 {c['unlabeled']} unlabeled \u00b7 {c['masked']} masked\n"
                f"train {c['train']} \u00b7 val {c['val']} \u00b7 test {c['test']}"
                + (f" \u00b7 no split {c['no_split']}" if c["no_split"] else "") + done)

    # -- navigation ------------------------------------------------------------------------
    def step(self, ids: list[int], current: int, delta: int, *,
             unlabeled_only: bool = False) -> int | None:
        """The image `delta` (+1 / -1) from `current` in the view order `ids` (from the start
        or end when `current` is not shown), the next unlabeled one with `unlabeled_only`;
        None at the end."""
        if not ids:
            return None
        try:
            row = ids.index(current)
        except ValueError:
            row = None
        start = -1 if row is None and delta > 0 else (len(ids) if row is None else row)
        i = start + delta
        while 0 <= i < len(ids):
            rec = self.records.get(ids[i])
            if not unlabeled_only or (rec is not None and rec.label == "unlabeled"):
                return ids[i]
            i += delta
        return None

    def next_unlabeled(self, ids: list[int], current: int) -> tuple[int | None, str]:
        """Where "next unlabeled" goes after a label: (image id or None, note for the user).

        The next unlabeled one ahead; else the first unlabeled one in view (wrap around);
        else, when none is left at all, the next image with a note that all are labelled;
        else (unlabeled ones outside the view) just the next image.
        """
        ahead = self.step(ids, current, +1, unlabeled_only=True)
        if ahead is not None:
            return ahead, ""
        for image_id in ids:
            rec = self.records.get(image_id)
            if rec is not None and rec.label == "unlabeled":
                return image_id, ""
        note = "" if self.counts()["unlabeled"] else ALL_LABELLED
        return self.step(ids, current, +1), note

    # -- labelling -------------------------------------------------------------------------
    @staticmethod
    def label_of_key(action_id: str) -> str:
        """The label a labelling key ("label_ok", "label_defective", "label_clear") writes."""
        if action_id not in KEY_LABELS:
            raise ValueError(f"not a labelling key: {action_id!r}")
        return KEY_LABELS[action_id]

    @staticmethod
    def needs_split(rec, label: str) -> bool:
        """Every labelled image goes into a split (else training would leave it out)."""
        return rec.split is None and label != "unlabeled"

    @staticmethod
    def goes_next(label: str, auto_next: bool) -> bool:
        """After labelling, "Next unlabeled" moves on (not after clearing a label)."""
        return label != "unlabeled" and auto_next

    @staticmethod
    def mask_action(mask_any: bool, had_mask_at_load: bool | None) -> str:
        """What the end of a stroke stores: "save" the mask; "delete" it (cleared: the
        label stays, no empty mask); "restore" (back to no mask on an image that had none:
        delete it and give the label it had when shown, undoing the whole thing)."""
        if mask_any:
            return "save"
        if had_mask_at_load is not None and not had_mask_at_load:
            return "restore"
        return "delete"

    def info_text(self, rec) -> str:
        """The line above the canvas about the shown image."""
        pred = self.predictions.get(rec.id)
        ptxt = "" if pred is None else f"  |  score {pred[0]:.3f} ({'NG' if pred[1] else 'OK'})"
        mask = "  |  mask" + (" (rough)" if rec.mask_rough else "") if rec.has_mask else ""
        return (f"<b>{rec.name}</b>  {rec.width}x{rec.height}  |  label: <b>{rec.label}</b> "
                f"({rec.label_source})  |  split: {rec.split or '-'}{mask}{ptxt}")
