"""The one table of keyboard shortcuts.

Menus, toolbar tooltips, the canvas key handling and the F1 help dialog all read
this table, so a key documented in the help is the key that works.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QKeySequence


@dataclass(frozen=True)
class Shortcut:
    """One command: an id used in code, the keys (first is the primary), a group and a text."""

    action: str
    keys: tuple[str, ...]
    group: str
    text: str


SHORTCUTS: tuple[Shortcut, ...] = (
    # File
    Shortcut("new_project", ("Ctrl+N",), "File", "New project"),
    Shortcut("open_project", ("Ctrl+O",), "File", "Open project"),
    Shortcut("import", ("Ctrl+I",), "File", "Import images"),
    Shortcut("export", ("Ctrl+E",), "File", "Export project"),
    Shortcut("quit", ("Ctrl+Q",), "File", "Quit"),
    # Labelling
    Shortcut("label_ok", ("O",), "Label", "Mark image OK"),
    Shortcut("label_defective", ("D", "N"), "Label", "Mark image defective (NG)"),
    Shortcut("label_clear", ("U", "Backspace"), "Label", "Clear the label"),
    Shortcut("next_image", ("J", "Right"), "Label", "Next image"),
    Shortcut("prev_image", ("K", "Left"), "Label", "Previous image"),
    # Mask tools
    Shortcut("tool_brush", ("B",), "Mask", "Brush: paint the defect mask"),
    Shortcut("tool_eraser", ("E",), "Mask", "Eraser"),
    Shortcut("tool_lasso", ("L",), "Mask",
             "Polygon / lasso: click points or drag, Enter or double-click fills"),
    Shortcut("tool_grabcut", ("G",), "Mask",
             "Assisted mask: drag a rough box or stroke, GrabCut refines it"),
    Shortcut("tool_pan", ("H",), "Mask", "Pan tool (also middle-drag or Space+drag)"),
    Shortcut("brush_smaller", ("[",), "Mask", "Smaller brush"),
    Shortcut("brush_larger", ("]",), "Mask", "Larger brush"),
    Shortcut("close_polygon", ("Return",), "Mask", "Close and fill the polygon"),
    Shortcut("cancel_polygon", ("Escape",), "Mask", "Cancel the polygon being drawn"),
    Shortcut("clear_mask", ("Ctrl+Delete",), "Mask", "Clear the whole mask"),
    Shortcut("undo", ("Ctrl+Z",), "Mask", "Undo the last mask edit, else the last label"),
    Shortcut("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Mask", "Redo mask edit"),
    # Boxes (keys handled by the box tool; listed here so that F1 shows them)
    Shortcut("tool_box", ("X",), "Boxes",
             "Box tool: draw, move and resize typed defect boxes"),
    Shortcut("box_delete", ("Delete",), "Boxes", "Remove the selected box"),
    Shortcut("box_type", tuple(f"Alt+{n}" for n in range(1, 10)), "Boxes",
             "Give the selected box the type with this hotkey (shown in the Types list)"),
    # View
    Shortcut("fit", ("F",), "View", "Fit image to window"),
    Shortcut("zoom_in", ("Ctrl++", "+"), "View", "Zoom in"),
    Shortcut("zoom_out", ("Ctrl+-", "-"), "View", "Zoom out"),
    Shortcut("actual_size", ("1",), "View", "Actual size (100 %)"),
    Shortcut("toggle_mask", ("M",), "View", "Show / hide the mask overlay"),
    # Review page (active while it is shown; O and D mean the same as on the Label page)
    Shortcut("review_accept", ("A",), "Review", "Accept the model's decision as the label"),
    Shortcut("review_ok", ("O",), "Review", "Correct the part to OK"),
    Shortcut("review_defective", ("D",), "Review", "Correct the part to defective (NG)"),
    Shortcut("review_heatmap", ("H",), "Review", "Show / hide the heatmap"),
    Shortcut("review_undo", ("Ctrl+Z",), "Review", "Undo the last label written here"),
    # Pages
    Shortcut("page_label", ("Ctrl+1",), "Pages", "Label page"),
    Shortcut("page_train", ("Ctrl+2",), "Pages", "Train page"),
    Shortcut("page_evaluate", ("Ctrl+3",), "Pages", "Evaluate page"),
    Shortcut("page_review", ("Ctrl+4",), "Pages", "Review page"),
    Shortcut("page_next", ("Ctrl+Tab",), "Pages", "Next page"),
    Shortcut("page_prev", ("Ctrl+Shift+Tab",), "Pages", "Previous page"),
    Shortcut("help", ("F1",), "Help", "Keyboard shortcuts"),
)

_BY_ACTION = {s.action: s for s in SHORTCUTS}


def shortcut(action: str) -> Shortcut:
    """The table entry of an action (KeyError for an unknown id: a typo in code)."""
    return _BY_ACTION[action]


def key_sequences(action: str) -> list[QKeySequence]:
    """All key sequences of an action, for QAction.setShortcuts."""
    return [QKeySequence(k) for k in _BY_ACTION[action].keys]


def keys_text(action: str) -> str:
    """Human text of the keys, e.g. 'D / N'."""
    return " / ".join(
        QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText)
        for k in _BY_ACTION[action].keys
    )


def tooltip(action: str, text: str | None = None) -> str:
    """A tooltip that carries the shortcut: 'Brush: paint the defect mask (B)'."""
    s = _BY_ACTION[action]
    return f"{text or s.text} ({keys_text(action)})"


def help_html() -> str:
    """The F1 help as an HTML table, grouped, generated from SHORTCUTS."""
    rows: list[str] = []
    group = None
    for s in SHORTCUTS:
        if s.group != group:
            group = s.group
            rows.append(f"<tr><td colspan=2><h3 style='margin-top:8px'>{group}</h3></td></tr>")
        keys = (f"<b>{_esc(s.keys[0])}</b> \u2026 <b>{_esc(s.keys[-1])}</b>"
                if len(s.keys) > 3 else " / ".join(f"<b>{_esc(k)}</b>" for k in s.keys))
        rows.append(f"<tr><td style='padding-right:18px'>{keys}</td><td>{_esc(s.text)}</td></tr>")
    extra = (
        "<p>Mouse: wheel zooms at the cursor, middle-drag or Space+drag pans. "
        "Painting a mask marks the image defective; masks are saved at the end of "
        "each stroke.</p>"
    )
    return "<table>" + "".join(rows) + "</table>" + extra


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
