"""The one progress display of the command line: `progress_bar("importing")` returns a
progress(done, total) callback.

On a terminal it is a tqdm bar on stderr; elsewhere (logs, pipes, the GUI reading a
child's stderr), or without tqdm, about ten plain lines "importing 40/400", which read well
in a file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO


def progress_bar(label: str, stream: IO[str] | None = None, *,
                 lines: int = 10) -> Callable[[int, int], None]:
    """A progress(done, total) callback writing to `stream` (default stderr)."""
    out = stream if stream is not None else sys.stderr
    tty = bool(getattr(out, "isatty", lambda: False)())
    return _Bar(label, out) if tty and _has_tqdm() else _Lines(label, out, lines)


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


class _Bar:
    def __init__(self, label: str, stream: IO[str]) -> None:
        self.label, self.stream, self.bar = label, stream, None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None or self.bar.total != total:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=self.label, file=self.stream, unit="img",
                            dynamic_ncols=True, leave=True)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.bar.close()
            self.bar = None


class _Lines:
    def __init__(self, label: str, stream: IO[str], lines: int) -> None:
        self.label, self.stream, self.lines, self.last = label, stream, max(1, lines), -1

    def __call__(self, done: int, total: int) -> None:
        step = done * self.lines // max(1, total)
        if step != self.last or done >= total:
            self.last = step
            self.stream.write(f"{self.label} {done}/{total}\n")
            self.stream.flush()
