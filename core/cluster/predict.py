"""``predict --cluster ADDRESS --model PACKAGE``: batch scoring with Ray tasks over the
torch-free runtime (defect_studio.deploy.runtime).

The export package travels once (``ray.put``: the object store hands it to each node),
each node keeps it in its cache under the sha256 of its files and each worker process
loads it once. The images travel in chunks (their bytes, read here); each chunk is one
Ray task that returns its predictions. At most a few chunks per CPU are in flight, so
memory stays bounded for an archive of any size, and results are handed back in input
order, so the CSV is the one a local run writes. A task whose worker dies is retried by
Ray (``max_retries``); an image that cannot be read or scored is its own error row, never
the chunk's. Each image is scored and written once.

Fault injection for the tests: a worker with ``DEFECT_STUDIO_FAULT_SCORER_EXIT`` naming
a file that does not exist yet creates it and dies in its first task (a dead worker).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MAX_RETRIES = 3
_LOADED: dict[str, Any] = {}  # package key -> predictor, per worker process


def package_files(package: Path) -> dict[str, bytes]:
    """The package folder's files: relative posix path -> bytes."""
    out = {}
    for p in sorted(Path(package).rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(package).as_posix()] = p.read_bytes()
    return out


def package_key(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def _predictor(key: str, files: dict[str, bytes], threshold: float) -> Any:
    """The package's predictor in this worker process (written to the node cache once)."""
    if key not in _LOADED:
        from defect_studio.cluster.worker import cache_root
        from defect_studio.deploy.runtime import load_package
        from defect_studio.io.atomic import atomic_write_bytes

        folder = cache_root() / "packages" / key
        for name, data in files.items():
            parts = name.split("/")
            if any(x in ("", ".", "..") for x in parts) or name.startswith("/"):
                raise ValueError(f"bad file name in the package: {name!r}")
            target = folder.joinpath(*parts)
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, data)
        _LOADED[key] = load_package(folder, num_threads=1)
    predictor = _LOADED[key]
    predictor.threshold = threshold
    return predictor


def score_chunk(key: str, files: dict[str, bytes], threshold: float,
                items: list[tuple[int, str, bytes]], heatmaps: bool) -> list[tuple[int, Any]]:
    """One task: [(index, name, bytes)] -> [(index, Prediction or error message)]."""
    import dataclasses

    import numpy as np

    from defect_studio.errors import UserError
    from defect_studio.io.images import decode_image

    marker = os.environ.get("DEFECT_STUDIO_FAULT_SCORER_EXIT")
    if marker and not os.path.exists(marker):
        Path(marker).write_text("died once\n")
        os._exit(1)
    predictor = _predictor(key, files, threshold)
    out: list[tuple[int, Any]] = []
    images, order = [], []
    for index, name, data in items:
        try:
            images.append(decode_image(data, name))
            order.append(index)
        except UserError as e:
            out.append((index, str(e)))
    for index, (_, pred) in zip(order, predictor.predict_many(images, batch_size=8),
                                strict=True):
        if not isinstance(pred, str) and not heatmaps:
            pred = dataclasses.replace(pred, heatmap=np.zeros((1, 1), np.float32))
        out.append((index, pred))
    return out


def score_on_cluster(address: str, package: Path, files: list[Path], *, threshold: float,
                     chunk: int, heatmaps: bool,
                     progress: Callable[[int, int], Any] | None = None
                     ) -> Iterator[tuple[Path, Any]]:
    """Yield (path, Prediction or error message) for every file, in input order."""
    from defect_studio.cluster.client import connect

    connect(address)
    import ray

    try:
        pkg = package_files(package)
        key = package_key(pkg)
        pkg_ref = ray.put(pkg)
        task = ray.remote(score_chunk).options(num_cpus=1, max_retries=MAX_RETRIES,
                                               retry_exceptions=False)
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        chunks = [list(range(i, min(i + chunk, len(files)))) for i in range(0, len(files), chunk)]
        pending: dict[Any, int] = {}  # ref -> chunk number
        results: dict[int, list[tuple[int, Any]]] = {}
        next_send = next_yield = done = 0
        while next_yield < len(chunks):
            while next_send < len(chunks) and len(pending) < window:
                items = []
                for i in chunks[next_send]:
                    try:
                        items.append((i, str(files[i]), files[i].read_bytes()))
                    except OSError as e:
                        results.setdefault(next_send, []).append(
                            (i, f"cannot read {files[i]}: {e.strerror or e}"))
                pending[task.remote(key, pkg_ref, threshold, items, heatmaps)] = next_send
                next_send += 1
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                number = pending.pop(ref)
                try:
                    got = ray.get(ref)
                except ray.exceptions.RayError as e:  # retried MAX_RETRIES times already
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    got = [(i, f"the cluster could not score it: {msg}")
                           for i in chunks[number]]
                results.setdefault(number, []).extend(got)
            while next_yield in results and next_yield not in pending.values():
                by_index = dict(results.pop(next_yield))
                for i in chunks[next_yield]:
                    yield files[i], by_index.get(i, "no result came back")
                done += len(chunks[next_yield])
                next_yield += 1
                if progress is not None:
                    progress(done, len(files))
    finally:
        ray.shutdown()
