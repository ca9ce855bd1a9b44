"""Undo of image labels (Ctrl+Z on the Label and Review pages).

Each page keeps its own short history of label changes it wrote; undo writes the label
(and its source) the image had before, through the store like any other change.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_STEPS = 200


@dataclass(frozen=True)
class LabelChange:
    """One label write: the image and its (label, source) before and after."""

    image_id: int
    name: str
    before: tuple[str, str]
    after: tuple[str, str]


class LabelHistory:
    """A bounded stack of label changes that can be undone."""

    def __init__(self) -> None:
        self._steps: list[LabelChange] = []

    def record(self, image_id: int, name: str, before: tuple[str, str],
               after: tuple[str, str]) -> None:
        if before == after:
            return
        self._steps.append(LabelChange(int(image_id), name, tuple(before), tuple(after)))
        del self._steps[:-MAX_STEPS]

    def can_undo(self) -> bool:
        return bool(self._steps)

    def clear(self) -> None:
        self._steps.clear()

    def undo(self, project):
        """Restore the label before the last change; returns (change, updated record).

        UserError (the step stays) when the store refuses, e.g. a mask painted since.
        None when there is nothing to undo."""
        if not self._steps:
            return None
        step = self._steps[-1]
        label, source = step.before
        rec = project.set_label(step.image_id, label, source)
        self._steps.pop()
        return step, rec

