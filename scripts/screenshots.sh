#!/usr/bin/env bash
# Screenshots of the desktop app on a freshly generated demo project, under Xvfb.
# Usage: scripts/screenshots.sh [--out DIR] [--epochs N] [--skip-train]
# Saves docs/screenshots/{label,train,evaluate,review,review-side}.png (1280x800 window).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if ! command -v xvfb-run >/dev/null 2>&1; then
    echo "xvfb-run not found; installing Xvfb and the Qt xcb libraries (needs root)..." >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 \
        libxkbcommon-x11-0
fi
export QT_QPA_PLATFORM=xcb
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" scripts/screenshots.py "$@"
