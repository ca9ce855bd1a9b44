"""CPU of an idle `watch` beside many parts it has already handled.

Without --move-to scored parts stay in the inbox, and the watcher lists the inbox every
``--rescan`` seconds (network shares send no file events). The script fills a temporary
inbox with N small files, brings a Watcher to the state it has after handling them (each
file's size and time remembered), and measures the CPU time of one rescan: the listing
plus the look at every entry. It prints ms per rescan and the share of one core at the
default rescan period (10 s). For comparison it also times the per-entry look the watcher
did before (two path resolves per entry), on the same files.

    python benchmarks/watch_idle.py                 # 20,000 files
    python benchmarks/watch_idle.py --files 5000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import queue
import tempfile
import time
from pathlib import Path


class _NoModel:
    run_id, threshold = "none", 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from defect_studio.deploy.watch import RESCAN_DEFAULT_S, Watcher, _candidate

    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        for i in range(args.files):
            (inbox / f"part{i:06d}.png").write_bytes(b"\x89PNG" + i.to_bytes(4, "little"))
        w = Watcher(inbox, _NoModel(), Path(tmp) / "out")
        for e in os.scandir(inbox):
            st = e.stat()
            w._seen[e.name] = (st.st_size, st.st_mtime_ns)

        def now_look() -> None:
            w._rescan()
            w._collect()
            assert not w._pending

        def old_look() -> None:  # the collection path before: resolve two paths per entry
            q: queue.SimpleQueue = queue.SimpleQueue()
            for e in os.scandir(inbox):
                q.put(Path(e.path))
            while not q.empty():
                p = q.get_nowait()
                if p.parent.resolve() != w.folder.resolve() or not _candidate(p.name):
                    continue
                s = p.stat()
                if w._seen.get(p.name) == (s.st_size, s.st_mtime_ns):
                    continue

        for name, look in (("now", now_look), ("before", old_look)):
            cpu = []
            for _ in range(args.repeat):
                t = time.process_time()
                look()
                cpu.append(time.process_time() - t)
            best = min(cpu)
            print(f"{name:7s} {args.files} handled files: {best * 1000:7.1f} ms CPU per rescan, "
                  f"{100 * best / RESCAN_DEFAULT_S:5.2f} % of a core at one rescan per "
                  f"{RESCAN_DEFAULT_S:g} s")
        w.claims.close()


if __name__ == "__main__":
    main()
