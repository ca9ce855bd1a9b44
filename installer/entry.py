"""Entry point of the bundled executables (PyInstaller): the `defect-studio` CLI, which
starts the desktop app when run without a command.

The GUI starts training as ``sys.executable -m defect_studio train ...``; in a bundle
sys.executable is this program, so a leading ``-m defect_studio`` (or ``-m defect_studio.cli``)
is dropped here.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    argv = sys.argv[1:]
    if argv[:1] == ["-m"] and argv[1:2] in (["defect_studio"], ["defect_studio.cli"]):
        argv = argv[2:]
    from defect_studio.cli import main

    sys.exit(main(argv))
