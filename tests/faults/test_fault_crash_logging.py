"""Fault matrix, crash logging: an unexpected error writes a log file with the traceback
in the user's data folder and shows one clear line (CLI and GUI)."""

from __future__ import annotations

import sys

import pytest

import defect_studio.cli


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.delenv("DEFECT_STUDIO_LOG_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "defect-studio" / "logs"


def test_cli_bug_is_one_line_and_a_log_file(data_home, monkeypatch, capsys, tmp_path):
    def boom(name, args, line=False):
        raise RuntimeError("a bug deep inside")

    monkeypatch.setattr(defect_studio.cli, "run_handler", boom)
    code = defect_studio.cli.main(["info", "--project", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    logs = list(data_home.glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "Traceback" in text and "RuntimeError: a bug deep inside" in text
    assert "defect-studio info" in text


def test_cli_disk_error_is_one_line_without_a_log(data_home, monkeypatch, capsys, tmp_path):
    import errno

    def full(name, args, line=False):
        raise OSError(errno.ENOSPC, "No space left on device", "/x/y")

    monkeypatch.setattr(defect_studio.cli, "run_handler", full)
    assert defect_studio.cli.main(["info", "--project", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "'/x/y'" in err and "Traceback" not in err


def test_gui_exception_is_logged_and_shown(data_home, monkeypatch, qtbot, dialogs, capsys):
    import threading

    from PySide6.QtCore import QTimer

    from defect_studio.app.shell.main import install_excepthook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_excepthook()

    def slot():
        raise ValueError("clicked into a bug")

    QTimer.singleShot(0, slot)
    qtbot.waitUntil(lambda: bool(dialogs), timeout=3000)
    title, text = dialogs[0]
    logs = list(data_home.glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in text and "ValueError" in text
    assert "clicked into a bug" in logs[0].read_text()
    assert "unexpected error" in capsys.readouterr().err


def test_worker_thread_exception_is_logged_without_a_dialog(data_home, monkeypatch, qtbot,
                                                            dialogs):
    import threading

    from defect_studio.app.shell.main import install_excepthook

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_excepthook()

    def work():
        raise KeyError("in a worker")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    logs = list(data_home.glob("crash-*.log"))
    assert len(logs) == 1 and "KeyError" in logs[0].read_text()
    assert dialogs == []  # never a dialog from outside the GUI thread
