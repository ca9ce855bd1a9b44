"""Entry point of the line bundle (PyInstaller, installer/defect_studio_line.spec): the line
runtime's `defect-studio` (predict --model, watch, model-info --model PACKAGE, --version)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from defect_studio.cli import line_main

    sys.exit(line_main(sys.argv[1:]))
