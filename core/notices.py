"""Things the core must tell the user that are not errors (e.g. files moved aside when
a project was opened). Front ends subscribe: the CLI prints each notice as one line to
stderr; the app shows what concerns its own project itself (see Project.orphans_message).

Dependency-free on purpose: core/cli.py subscribes before any command module loads.
"""

from __future__ import annotations

from collections.abc import Callable

listeners: list[Callable[[str], None]] = []


def tell(text: str) -> None:
    """Hand a one-line notice to every listener (a failing listener is skipped)."""
    for listener in list(listeners):
        try:
            listener(text)
        except Exception:  # noqa: BLE001 - a notice must never break the operation
            pass
