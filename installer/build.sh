#!/usr/bin/env bash
# One command from a fresh clone: installer/build.sh
# Builds the PyInstaller one-folder bundle dist/DefectStudio/ (GUI + CLI, icons,
# resources, the torch-free runtime) and the Linux archive
# dist/defect-studio-<version>-linux-<arch>.tar.gz (bundle + install.sh + menu entry).
#
# Python: $PYTHON if set (a Python with the project's dependencies and PyInstaller),
# else a build environment of its own in build/venv (created once), with a CPU-only
# torch from $TORCH_INDEX_URL (default: PyTorch's CPU wheels), so no CUDA libraries
# end up in the bundle. Needs python3 >= 3.10 with venv, and network or a pip mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}

if [ -n "${PYTHON:-}" ]; then
  py=$PYTHON
else
  venv=build/venv
  py=$venv/bin/python
  if [ ! -x "$py" ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
      || { echo "build.sh: Python 3.10 or newer is needed (python3)" >&2; exit 1; }
    python3 -m venv "$venv"
    "$py" -m pip install -q --upgrade pip
    echo "build.sh: installing a CPU-only torch from $TORCH_INDEX_URL"
    if ! "$py" -m pip install -q torch torchvision --index-url "$TORCH_INDEX_URL"; then
      echo "build.sh: $TORCH_INDEX_URL unreachable; installing torch from the default index" \
           "(may be a CUDA build: the spec then leaves out what it can)" >&2
      "$py" -m pip install -q torch torchvision
    fi
  fi
  "$py" -m pip install -q ".[deploy,installer]"
fi
"$py" -c 'import PyInstaller' 2>/dev/null || "$py" -m pip install -q "pyinstaller>=6.10"

version=$("$py" -c "import defect_studio; print(defect_studio.__version__)")
arch=$(uname -m)
start=$(date +%s)
"$py" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller installer/defect_studio.spec
echo "build.sh: bundle built in $(( $(date +%s) - start )) s"

stage=dist/defect-studio-$version-linux-$arch
rm -rf "$stage" && mkdir -p "$stage"
cp -a dist/DefectStudio "$stage/DefectStudio"
cp installer/install.sh installer/defect-studio.desktop resources/icons/app.svg "$stage/"
chmod +x "$stage/install.sh"
tar -C dist -czf "$stage.tar.gz" "$(basename "$stage")"
rm -rf "$stage"
echo "build.sh: bundle  $root/dist/DefectStudio ($(du -sh dist/DefectStudio | cut -f1))"
echo "build.sh: archive $root/$stage.tar.gz ($(du -sh "$stage.tar.gz" | cut -f1))"
echo "build.sh: smoke test with installer/smoke_test.sh"
