"""Soak of one project used by every kind of process at once, with kill -9 of the writer.

Each round starts, on the same project:
- the app: a writer that labels (set_label) and paints masks (save_mask) and prints an
  ack after each call returned; every few writes it also opens the project read-only in
  the same process, as the Evaluate page does (issue 16);
- a training-like process reading images and masks through read-only opens;
- a database browser: plain sqlite3 that connects, reads a row and closes, again and again;
- CLI calls: `python -m defect_studio.cli info --json` and `label` (refused "in use" while the
  writer lives; after the kill it gets the lock and its write counts as acked);
then kills the writer with SIGKILL at a random moment and checks, from fresh processes:
`PRAGMA integrity_check` is ok, every acked write is visible, and the masks on disk
match the rows (the file exists and its defect pixels equal mask_pixels).

    python benchmarks/store_soak.py --minutes 2          # prints rounds, writes, kills, failures

tests/test_store_shared.py runs a few rounds of the same (fixed seeds, ~15 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = 32  # masks and images are SIZE x SIZE
NO_MASK = "none"  # the allowed value of an image that has no mask row yet

WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np
    from defect_studio.project import Project
    root, seed = sys.argv[1], int(sys.argv[2])
    masked = [int(x) for x in sys.argv[3].split(",")]
    labelled = [int(x) for x in sys.argv[4].split(",")]
    size = int(sys.argv[5])
    p = Project.open(root)
    rng = np.random.default_rng(seed)
    def say(line):  # one write per line: a kill cannot leave half a line
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
    say("ready")
    step = 0
    while True:
        step += 1
        if step % 4 == 0:  # the Evaluate page evaluating in-process
            with Project.open(root, readonly=True) as view:
                view.counts()
        if step % 2:
            i = masked[step // 2 % len(masked)]
            m = np.zeros((size, size), np.uint8)
            n = int(rng.integers(1, 200))
            m.flat[rng.choice(size * size, n, replace=False)] = 1
            say(f"A mask {i} {n}")
            p.save_mask(i, m)
            say(f"S mask {i} {n}")
        else:
            i = labelled[step // 2 % len(labelled)]
            lab = ("ok", "defective", "unlabeled")[int(rng.integers(0, 3))]
            say(f"A label {i} {lab}")
            p.set_label(i, lab)
            say(f"S label {i} {lab}")
        time.sleep(0.003)
    """
)

# the training process: read-only opens, reads every record and mask
TRAINER = textwrap.dedent(
    """
    import os, sys, time
    from defect_studio.project import Project
    root, stop = sys.argv[1], sys.argv[2]
    n = 0
    while not os.path.exists(stop):
        with Project.open(root, readonly=True) as p:
            for rec in p.images():
                if rec.has_mask:
                    assert p.load_mask(rec.id) is not None
        n += 1
        time.sleep(0.02)
    print(n)
    """
)

# a database browser: plain sqlite3, read a row, close
BROWSER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    db_file, stop = sys.argv[1], sys.argv[2]
    n = 0
    while not os.path.exists(stop):
        db = sqlite3.connect(db_file, timeout=30)
        db.execute("SELECT id, label, has_mask FROM images ORDER BY id LIMIT 1").fetchone()
        db.close()
        n += 1
        time.sleep(0.02)
    print(n)
    """
)

# what a fresh process sees after the round
VERIFY = textwrap.dedent(
    """
    import json, sqlite3, sys
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    check = db.execute("PRAGMA integrity_check").fetchone()[0]
    rows = db.execute("SELECT id, label, has_mask, mask_pixels FROM images").fetchall()
    db.close()
    print(json.dumps({"integrity": check, "rows": rows}))
    """
)


@dataclass
class Figures:
    rounds: int = 0
    writes_acked: int = 0
    kills: int = 0
    cli_calls: int = 0
    cli_labels_acked: int = 0
    browser_reads: int = 0
    trainer_reads: int = 0
    # kills that landed after a mask file was renamed into place, before its row was
    # committed: the file holds the attempted (never acked) mask, the row the acked one
    mask_file_ahead: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"rounds {self.rounds}, writes acked {self.writes_acked}, kills {self.kills}, "
                f"CLI calls {self.cli_calls} (labels acked {self.cli_labels_acked}), "
                f"browser reads {self.browser_reads}, training reads {self.trainer_reads}, "
                f"mask file ahead of its row {self.mask_file_ahead}, "
                f"failures {len(self.failures)}")


@dataclass
class Soak:
    """A project and the acked state that every round checks against."""

    root: Path
    masked: list[int]
    labelled: list[int]
    cli_ids: list[int]
    # (kind, id) -> values allowed now: the last acked one plus any attempted after it
    allowed: dict = field(default_factory=dict)
    acked: dict = field(default_factory=dict)  # (kind, id) -> the last acked value
    ahead_seen: set = field(default_factory=set)
    figures: Figures = field(default_factory=Figures)


def make_project(root: Path, n_masked: int = 4, n_labelled: int = 4, n_cli: int = 2,
                 seed: int = 0) -> Soak:
    import numpy as np

    from defect_studio.io.images import write_png_atomic
    from defect_studio.project import Project

    rng = np.random.default_rng(seed)
    src = root.parent / (root.name + "-src")
    with Project.create(root) as p:
        for k in range(n_masked + n_labelled + n_cli):
            path = src / f"img{k}.png"
            write_png_atomic(path, rng.integers(0, 256, size=(SIZE, SIZE), dtype=np.uint8))
            p.add_image(path)
        ids = [r.id for r in p.images()]
    soak = Soak(root, ids[:n_masked], ids[n_masked:n_masked + n_labelled],
                ids[n_masked + n_labelled:])
    # what a fresh process may see before any write is acked: the state as created (an
    # attempted write that was refused or killed leaves it; "none" = no mask row)
    for i in soak.labelled + soak.cli_ids:  # masked images: labelled by their masks
        soak.allowed[("label", i)] = {"unlabeled"}
    for i in soak.masked:
        soak.allowed[("mask", i)] = {NO_MASK}
    return soak


def _python(code_or_args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *code_or_args], cwd=REPO, env=env, **kw)


def _cli(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "defect_studio", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _note(allowed: dict, status: str, key: tuple, value: str) -> None:
    if status == "S":
        allowed[key] = {value}
    else:
        allowed.setdefault(key, set()).add(value)


def _cli_label(soak: Soak, rnd: random.Random, must_succeed: bool) -> None:
    i = rnd.choice(soak.cli_ids)
    lab = rnd.choice(("ok", "defective", "unlabeled"))
    key = ("label", i)
    _note(soak.allowed, "A", key, lab)
    r = _cli(["label", "--project", str(soak.root), "--label", lab, str(i)])
    soak.figures.cli_calls += 1
    if r.returncode == 0:
        _note(soak.allowed, "S", key, lab)
        soak.figures.cli_labels_acked += 1
    elif must_succeed or r.returncode != 2 or "in use" not in r.stderr:
        soak.figures.failures.append(f"CLI label exit {r.returncode}: {r.stderr.strip()}")


def _cli_info(soak: Soak) -> None:
    r = _cli(["info", "--json", "--project", str(soak.root)])
    soak.figures.cli_calls += 1
    try:
        images = json.loads(r.stdout)["images"] if r.returncode == 0 else None
    except ValueError:
        images = None
    expected = len(soak.masked) + len(soak.labelled) + len(soak.cli_ids)
    if images != expected:
        soak.figures.failures.append(f"CLI info exit {r.returncode}, images {images}: "
                                     f"{r.stderr.strip()[-300:]}")


def run_round(soak: Soak, seed: int, *, min_acks: int = 6, max_delay_s: float = 0.6) -> None:
    """One round: all processes on the project, kill -9 of the writer, then the checks.
    Problems go to soak.figures.failures (nothing raises for a failed check)."""
    rnd = random.Random(seed)
    fig = soak.figures
    db_file = soak.root / "project.sqlite"
    stop = soak.root.parent / f".stop-{soak.root.name}-{seed}"
    stop.unlink(missing_ok=True)
    writer = _python(["-c", WRITER, str(soak.root), str(seed),
                      ",".join(map(str, soak.masked)), ",".join(map(str, soak.labelled)),
                      str(SIZE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(writer.stdout), daemon=True)
    reader.start()
    helpers = [
        ("trainer", _python(["-c", TRAINER, str(soak.root), str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)),
        ("browser", _python(["-c", BROWSER, str(db_file), str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)),
    ]
    cli_stop = threading.Event()

    def cli_loop() -> None:
        while not cli_stop.is_set():
            _cli_info(soak)
            if not cli_stop.is_set():
                _cli_label(soak, rnd, must_succeed=False)

    cli_thread = threading.Thread(target=cli_loop, daemon=True)
    cli_thread.start()
    try:
        deadline = time.monotonic() + 60
        while sum(1 for x in lines if x.startswith("S ")) < min_acks:
            if writer.poll() is not None:  # reported below
                break
            if time.monotonic() > deadline:
                fig.failures.append(f"round {seed}: writer made no progress")
                break
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.0, max_delay_s))  # a random moment in the middle of the work
        if writer.poll() is None:
            os.kill(writer.pid, signal.SIGKILL)
            fig.kills += 1
        writer.wait(timeout=30)
        if writer.returncode != -signal.SIGKILL:
            fig.failures.append(f"round {seed}: writer exit {writer.returncode}: "
                                f"{writer.stderr.read().strip()[-400:]}")
        reader.join(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        cli_stop.set()
        stop.touch()
        cli_thread.join(timeout=120)
        for name, proc in helpers:
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                fig.failures.append(f"round {seed}: {name} did not stop")
            if proc.returncode != 0:
                fig.failures.append(f"round {seed}: {name} exit {proc.returncode}: "
                                    f"{err.strip()[-500:]}")
            elif out.strip().isdigit():
                n = int(out.strip())
                if name == "trainer":
                    fig.trainer_reads += n
                else:
                    fig.browser_reads += n
        stop.unlink(missing_ok=True)
    # a line cut off by the kill has no newline: that call was not reported as done
    for x in lines:
        if x.startswith(("A ", "S ")) and x.endswith("\n"):
            status, kind, i, value = x.split()
            _note(soak.allowed, status, (kind, int(i)), value)
            if status == "S":
                soak.acked[(kind, int(i))] = (value,)
                fig.writes_acked += 1
    # the writer is dead: the CLI gets the lock now, and its label must land
    _cli_label(soak, rnd, must_succeed=True)
    check(soak, f"round {seed}")
    fig.rounds += 1


def acked_last(soak: Soak, image_id: int) -> set[str]:
    """The mask value last acked for an image (empty when none was)."""
    return set(soak.acked.get(("mask", image_id), ()))


def check(soak: Soak, where: str) -> None:
    """From a fresh process: integrity, every acked write, masks on disk = rows."""
    import cv2
    import numpy as np

    fig = soak.figures
    out = subprocess.run([sys.executable, "-c", VERIFY, str(soak.root / "project.sqlite")],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        fig.failures.append(f"{where}: verify failed: {out.stderr.strip()[-500:]}")
        return
    seen = json.loads(out.stdout)
    if seen["integrity"] != "ok":
        fig.failures.append(f"{where}: integrity_check: {seen['integrity']}")
    rows = {int(r[0]): (r[1], bool(r[2]), int(r[3])) for r in seen["rows"]}
    for (kind, i), values in sorted(soak.allowed.items()):
        label, has_mask, pixels = rows[i]
        if kind == "label" and label not in values:
            fig.failures.append(f"{where}: image {i} label {label!r}, acked {sorted(values)}")
        if kind == "mask" and (str(pixels) if has_mask else NO_MASK) not in values:
            fig.failures.append(f"{where}: image {i} mask ({has_mask}, {pixels} px), "
                                f"acked {sorted(values)}")
    for i, (label, has_mask, pixels) in rows.items():
        path = soak.root / "masks" / f"{i}.png"
        if not has_mask:
            continue
        m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if m is None:
            fig.failures.append(f"{where}: image {i} has a mask row but {path.name} is "
                                "missing or unreadable")
        elif m.shape[:2] != (SIZE, SIZE):
            fig.failures.append(f"{where}: {path.name} has shape {m.shape}")
        elif int(np.count_nonzero(m)) != pixels:
            on_disk = str(int(np.count_nonzero(m)))
            allowed = soak.allowed.get(("mask", i), set())
            if on_disk in allowed and on_disk not in acked_last(soak, i) and \
                    str(pixels) in acked_last(soak, i):
                # killed between the mask's rename and its row's commit (known limit,
                # docs/reliability.md): the file holds the attempted, unacked mask
                if (i, on_disk, pixels) not in soak.ahead_seen:  # counted once
                    soak.ahead_seen.add((i, on_disk, pixels))
                    fig.mask_file_ahead += 1
            else:
                fig.failures.append(f"{where}: {path.name} has {on_disk} defect pixels, "
                                    f"its row says {pixels}")
        if has_mask and pixels and label != "defective":
            fig.failures.append(f"{where}: image {i} has a defect mask but label {label!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=0, help="stop after this many rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        soak = make_project(Path(tmp) / "proj")
        started = time.monotonic()
        seed = args.seed
        while time.monotonic() - started < args.minutes * 60 and \
                not (args.rounds and soak.figures.rounds >= args.rounds):
            run_round(soak, seed)
            seed += 1
            if soak.figures.rounds % 10 == 0:
                print(f"[{time.monotonic() - started:5.0f} s] {soak.figures.line()}",
                      flush=True)
        elapsed = time.monotonic() - started
    fig = soak.figures
    print(f"store soak: {elapsed:.0f} s, {fig.line()}")
    for f in fig.failures[:20]:
        print(f"  FAILURE {f}")
    return 1 if fig.failures else 0


if __name__ == "__main__":
    sys.exit(main())
