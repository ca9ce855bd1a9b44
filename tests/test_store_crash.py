"""A writer killed with SIGKILL while saving labels and masks loses nothing it reported saved."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from defect_studio.io.atomic import TEMP_MARKER
from defect_studio.io.images import read_image, write_png_atomic
from defect_studio.project import Project

REPO = Path(__file__).resolve().parents[1]
N_MASKED = 6  # images that get masks (ids 1..6); the rest get labels toggled
N_LABELLED = 6

# Prints "A kind id value" before each call and "S kind id value" after it returned:
# S lines are what the app would have shown the user as saved.
WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from defect_studio.project import Project
    p = Project.open(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    masked, labelled = [int(x) for x in sys.argv[3].split(",")], \\
        [int(x) for x in sys.argv[4].split(",")]
    def say(line):  # one write per line, so a kill cannot leave half a line
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
    say("ready")
    step = 0
    while True:
        step += 1
        if step % 2:
            i = masked[step // 2 % len(masked)]
            m = np.zeros((32, 32), np.uint8)
            n = int(rng.integers(1, 200))
            m.flat[rng.choice(32 * 32, n, replace=False)] = 1
            say(f"A mask {i} {n}")
            p.save_mask(i, m)
            say(f"S mask {i} {n}")
        else:
            i = labelled[step // 2 % len(labelled)]
            lab = "ok" if rng.random() < 0.5 else "defective"
            say(f"A label {i} {lab}")
            p.set_label(i, lab)
            say(f"S label {i} {lab}")
    """
)


def _run_and_kill(root: Path, seed: int, masked, labelled) -> list[str]:
    rnd = random.Random(seed)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(seed),
         ",".join(map(str, masked)), ",".join(map(str, labelled))],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while sum(1 for x in lines if x.startswith("S ")) < 10:
            assert child.poll() is None, f"writer died on its own: {lines[-5:]}"
            assert time.monotonic() < deadline, "writer made no progress"
            time.sleep(0.01)
        time.sleep(rnd.uniform(0.0, 0.4))  # a random moment in the middle of the work
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        reader.join(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    # a line cut off by the kill has no newline: that call was not reported as done
    return [x.split() for x in lines if x.startswith(("A ", "S ")) and x.endswith("\n")]


def _allowed_final_values(events) -> dict[tuple[str, int], set[str]]:
    """For each (kind, id): the last value reported saved, plus any attempted after it
    (a call cut short may or may not have landed)."""
    allowed: dict[tuple[str, int], set[str]] = {}
    for status, kind, i, value in events:
        key = (kind, int(i))
        if status == "S":
            allowed[key] = {value}
        elif key in allowed:
            allowed[key].add(value)
    return allowed


@pytest.mark.slow
def test_sigkill_during_saves_loses_nothing_reported(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "proj"
    src = tmp_path / "src"
    with Project.create(root) as p:
        for k in range(N_MASKED + N_LABELLED):
            path = src / f"img{k}.png"
            write_png_atomic(path, rng.integers(0, 256, size=(32, 32), dtype=np.uint8))
            p.add_image(path)
        ids = [r.id for r in p.images()]
    masked, labelled = ids[:N_MASKED], ids[N_MASKED:]

    for round_ in range(3):  # three kills at different moments, on the same project
        events = _run_and_kill(root, seed=round_, masked=masked, labelled=labelled)
        allowed = _allowed_final_values(events)
        assert allowed, "nothing was reported saved before the kill"

        # the database file itself is sound after the kill
        db = sqlite3.connect(f"file:{root / 'project.sqlite'}?mode=ro", uri=True)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()

        with Project.open(root) as p:  # opens normally: no stale lock, no repair needed
            for (kind, i), values in allowed.items():
                rec = p.image(i)
                if kind == "label":
                    assert rec.label in values, (i, rec.label, values)
                else:
                    assert rec.has_mask and rec.label == "defective"
                    mask = p.load_mask(i)
                    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
                    assert str(int((mask > 0).sum())) in values, (i, values)
                    # the file on disk is a complete PNG, not a half-written one
                    assert read_image(p.mask_path(i)).shape == (32, 32)
            names = os.listdir(p.masks_dir)
            assert not [n for n in names if TEMP_MARKER in n], "temp files left behind"
            # every mask the database knows is there; a file may exist without its row
            # (killed between rename and commit), never the other way round
            assert set(names) >= {f"{r.id}.png" for r in p.images(has_mask=True)}
            assert {n for n in names} <= {f"{i}.png" for i in masked}
