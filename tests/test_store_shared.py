"""One process, one connection per project: a plain open()/close() of project.sqlite
in a process holding an SQLite connection drops its POSIX locks (issue 16), and another
process closing its connection then deletes the WAL the writer still writes to."""

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.store_soak import make_project, run_round
from defect_studio.errors import ProjectError
from defect_studio.io.images import write_png_atomic
from defect_studio.project import Project, handles, safety

REPO = Path(__file__).resolve().parents[1]

# a database browser / training process / CLI: plain sqlite3, read a row, close
PLAIN_READER = textwrap.dedent(
    """
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1])
    print(db.execute("SELECT id, label FROM images ORDER BY id LIMIT 1").fetchone())
    db.close()
    """
)

# what a fresh process sees
FRESH_LABELS = textwrap.dedent(
    """
    import json, sqlite3, sys
    db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    print(json.dumps(dict(db.execute("SELECT id, label FROM images"))))
    db.close()
    """
)


def _py(code: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _make_project(root: Path, n: int = 3) -> list[int]:
    rng = np.random.default_rng(0)
    with Project.create(root) as p:
        for k in range(n):
            path = root.parent / "src" / f"img{k}.png"
            write_png_atomic(path, rng.integers(0, 256, size=(16, 16), dtype=np.uint8))
            p.add_image(path)
        return [r.id for r in p.images()]


def test_readonly_open_beside_writer_keeps_wal_when_another_process_reads(tmp_path):
    root = tmp_path / "proj"
    ids = _make_project(root)
    db_file = root / "project.sqlite"
    wal = Path(str(db_file) + "-wal")
    writer = Project.open(root)  # 1. the app
    try:
        writer.set_label(ids[0], "ok")
        view = Project.open(root, readonly=True)  # 2. Evaluate, in-process
        assert view.image(ids[0]).label == "ok"
        _py(PLAIN_READER, str(db_file))  # 3. another process reads and closes
        writer.set_label(ids[1], "defective")  # 4. labels through the first handle
        writer.set_label(ids[2], "ok")
        seen = {int(k): v for k, v in json.loads(_py(FRESH_LABELS, str(db_file))).items()}
        # every label that returned is visible to a fresh process...
        assert seen == {ids[0]: "ok", ids[1]: "defective", ids[2]: "ok"}
        # ...because the WAL the writer appends to is still the file on disk
        assert wal.exists(), "the WAL of an open project was deleted by another process"
        view.close()
    finally:
        writer.close()


def test_readonly_open_shares_the_writers_connection_and_refuses_writes(tmp_path):
    root = tmp_path / "proj"
    ids = _make_project(root)
    with Project.open(root) as writer:
        view = Project.open(root, readonly=True)
        assert view._shared is writer._shared and writer._shared.users == 2
        writer.set_label(ids[0], "defective")
        assert view.image(ids[0]).label == "defective"  # the same connection: at once
        with pytest.raises(ProjectError, match="read-only"):
            view.set_label(ids[0], "ok")
        view.close()
        assert view.closed and not writer.closed
        writer.set_label(ids[1], "ok")  # closing the view left the connection open
        assert writer.image(ids[1]).label == "ok"
    assert handles.lookup(root / "project.sqlite") is None  # the last user closed it


def test_writer_closing_before_its_view_leaves_a_read_only_connection(tmp_path):
    root = tmp_path / "proj"
    ids = _make_project(root)
    writer = Project.open(root)
    view = Project.open(root, readonly=True)
    writer.set_label(ids[0], "ok")
    writer.close()
    # the write lock went with the writer: another process may label now
    r = subprocess.run([sys.executable, "-m", "defect_studio", "label", "--project", str(root),
                        "--label", "defective", str(ids[1])], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert view.image(ids[0]).label == "ok" and view.image(ids[1]).label == "defective"
    with pytest.raises(ProjectError, match="read-only"):
        view.set_label(ids[0], "defective")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # query_only now
        view._conn().execute("UPDATE images SET label = 'ok'")
    # a new writer in this process takes the connection over; the view keeps reading
    with Project.open(root) as again:
        assert again._shared is view._shared and view._shared.users == 2
        again.set_label(ids[2], "defective")
        assert view.image(ids[2]).label == "defective"
    view.close()
    assert handles.lookup(root / "project.sqlite") is None  # the last user closed it


def test_writer_opened_after_a_view_takes_it_over(tmp_path):
    root = tmp_path / "proj"
    ids = _make_project(root)
    db_file = root / "project.sqlite"
    view = Project.open(root, readonly=True)  # e.g. an evaluation started first
    with Project.open(root) as writer:
        assert writer._shared is view._shared and view._shared.users == 2
        _py(PLAIN_READER, str(db_file))
        writer.set_label(ids[0], "ok")
        assert view.image(ids[0]).label == "ok"
        assert Path(str(db_file) + "-wal").exists()
        seen = json.loads(_py(FRESH_LABELS, str(db_file)))
        assert seen[str(ids[0])] == "ok"
    assert view.image(ids[0]).label == "ok"
    view.close()
    assert handles.lookup(root / "project.sqlite") is None  # the last user closed it


def test_header_and_files_of_an_open_database_are_never_read_outside_sqlite(tmp_path,
                                                                          monkeypatch):
    root = tmp_path / "proj"
    _make_project(root)
    db_file = root / "project.sqlite"
    with Project.open(root) as p:
        opened = []
        real_open = open
        monkeypatch.setattr("builtins.open", lambda f, *a, **k: (
            opened.append(str(f)), real_open(f, *a, **k))[1])
        assert safety.check_header(db_file) is False
        with Project.open(root, readonly=True) as view:
            view.counts()
        monkeypatch.undo()
        assert str(db_file) not in opened
        for name in ("project.sqlite", "project.sqlite-wal", "project.sqlite-shm"):
            assert handles.holds(root / name)
            with pytest.raises(ProjectError, match="project database"):
                p.add_image(root / name)
        with pytest.raises(ProjectError, match="open in this program"):
            safety.restore_backup(root)
    assert not handles.holds(db_file)


def test_cli_says_when_an_open_moved_orphans(tmp_path):
    root = tmp_path / "proj"
    ids = _make_project(root)
    (root / "images" / "left_over.png").write_bytes(b"copy of a killed import")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "defect_studio", *args,
                               "--project", str(root)],
                              cwd=REPO, capture_output=True, text=True, timeout=60)

    r = cli("info", "--json")  # read-only: moves nothing, says nothing
    assert r.returncode == 0 and r.stderr == ""
    r = cli("label", "--label", "ok", str(ids[0]))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: moved 1 file")
    assert "images/left_over.png" in lines[0] and "orphans" in lines[0]
    assert list((root / "orphans").glob("*/images/left_over.png"))
    r = cli("label", "--label", "ok", str(ids[0]))  # nothing left to move
    assert r.returncode == 0 and r.stderr == ""


def test_stress_writer_killed_beside_training_cli_and_browser(tmp_path):
    """Real processes on one project (benchmarks/store_soak.py, longer): the app's writer
    with an in-process read-only view, a training reader, CLI info/label, a plain sqlite3
    browser; kill -9 of the writer each round, then integrity, acked writes, masks."""
    soak = make_project(tmp_path / "proj")
    started = time.monotonic()
    for seed in range(4):
        run_round(soak, seed)
    fig = soak.figures
    assert fig.failures == []
    assert fig.rounds == 4 and fig.kills == 4
    assert fig.writes_acked >= 4 * 6 and fig.cli_labels_acked >= 4
    assert fig.browser_reads > 0 and fig.trainer_reads > 0
    assert time.monotonic() - started < 60
