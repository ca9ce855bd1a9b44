"""Entry point of the bundled executables (PyInstaller): the `defect-studio` CLI, which
starts the desktop app when run without a command.

The GUI starts training as ``sys.executable -m core.cli train ...``; in a bundle
sys.executable is this program, so a leading ``-m core.cli`` is dropped here.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    argv = sys.argv[1:]
    if argv[:2] == ["-m", "core.cli"]:
        argv = argv[2:]
    from core.cli import main

    sys.exit(main(argv))
