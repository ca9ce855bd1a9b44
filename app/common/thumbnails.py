"""Thumbnails made lazily in a worker thread and cached on disk (project/cache/thumbs).

The browser asks only for the thumbnails it paints, so a project of thousands of
images costs nothing until scrolled. Requests are served newest first: what is on
screen now comes before what was scrolled past.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

THUMB_SIZE = 96


def make_thumbnail(img: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    """Scale an image array (HxW / HxWx3, any bit depth) to fit size x size, 8-bit."""
    a = img
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)).astype(np.uint8)
    h, w = a.shape[:2]
    s = min(size / w, size / h)
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    if (tw, th) != (w, h):
        # AREA for shrinking (no aliasing), LINEAR for the rare tiny image.
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        a = cv2.resize(a, (tw, th), interpolation=interp)
    return np.ascontiguousarray(a)


def _to_qimage(a: np.ndarray) -> QImage:
    h, w = a.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if a.ndim == 2 else QImage.Format.Format_RGB888
    return QImage(a.data, w, h, a.strides[0], fmt).copy()


class ThumbnailWorker(QThread):
    """Makes thumbnails off the GUI thread. Emits ready(id, QImage) or failed(id, reason)."""

    ready = Signal(int, QImage)
    failed = Signal(int, str)

    def __init__(self, cache_dir: Path, size: int = THUMB_SIZE, parent=None) -> None:
        super().__init__(parent)
        self.cache_dir = Path(cache_dir)
        self.size = size
        self._queue: list[tuple[int, str, str]] = []
        self._queued: set[int] = set()
        self._cond = threading.Condition()
        self._stop = False

    def request(self, image_id: int, path: str, key: str) -> None:
        """Queue a thumbnail; `key` (the content hash) names the cache file."""
        with self._cond:
            if image_id in self._queued:
                # Already waiting: move it to the front (it is on screen again).
                self._queue = [q for q in self._queue if q[0] != image_id]
            self._queue.append((image_id, path, key))
            self._queued.add(image_id)
            self._cond.notify()

    def stop(self) -> None:
        """Finish the current thumbnail and end the thread (waits for it)."""
        with self._cond:
            self._stop = True
            self._queue.clear()
            self._queued.clear()
            self._cond.notify()
        self.wait()

    def run(self) -> None:
        from defect_studio.io.images import read_image  # lazy: keeps import of this module light

        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                image_id, path, key = self._queue.pop()  # newest first
                self._queued.discard(image_id)
            try:
                self.ready.emit(image_id, self._thumbnail(path, key, read_image))
            except Exception as exc:  # noqa: BLE001 - any unreadable file becomes a marker
                self.failed.emit(image_id, _reason(exc))

    def _thumbnail(self, path: str, key: str, read_image) -> QImage:
        cached = self.cache_dir / f"{key}_{self.size}.png"
        if cached.is_file():
            q = QImage(str(cached))
            if not q.isNull():
                return q
        from defect_studio.io.images import read_image_reduced  # JPEGs decoded at thumbnail scale

        thumb = make_thumbnail(read_image_reduced(path, self.size), self.size)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp.png")
            # cv2 wants BGR; the cache is for us only, but keep the colours right.
            bgr = thumb if thumb.ndim == 2 else cv2.cvtColor(thumb, cv2.COLOR_RGB2BGR)
            if cv2.imwrite(str(tmp), bgr):
                tmp.replace(cached)
        except OSError:
            pass  # a read-only project still shows thumbnails, just without the cache
        return _to_qimage(thumb)


def _reason(exc: Exception) -> str:
    msg = str(exc).strip()
    return msg or type(exc).__name__
