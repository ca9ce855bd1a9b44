#!/usr/bin/env bash
# One command from a fresh clone: installer/build_line.sh
# Builds the line bundle dist/DefectStudioLine/ (the torch-free line runtime as one folder:
# `defect-studio` predict --model, watch, model-info --model PACKAGE, --version) and the archive
# dist/defect-studio-line-<version>-linux-<arch>.tar.gz (bundle + systemd unit, station file,
# install-line.sh, Windows service script, README-line.md).
#
# It builds in a venv of its own, build/line-bundle-venv, made by `make line-runtime` (no
# torch, no Qt: they cannot end up in the bundle) plus PyInstaller. LINE_EXTRAS=openvino
# adds OpenVINO (for packages exported with --format openvino). Needs python3 >= 3.10 with
# venv, and network or a pip mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=build/line-bundle-venv
py=$venv/bin/python
make -s line-runtime LINE_VENV="$venv" LINE_STAGE=build/line-bundle-stage \
  LINE_EXTRAS="${LINE_EXTRAS:-}"
"$py" -c 'import PyInstaller' 2>/dev/null || "$py" -m pip install -q "pyinstaller>=6.10"

version=$("$py" -c "import defect_studio; print(defect_studio.__version__)")
arch=$(uname -m)
start=$(date +%s)
"$py" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller-line installer/defect_studio_line.spec
echo "build_line.sh: bundle built in $(( $(date +%s) - start )) s"
if find dist/DefectStudioLine -ipath '*torch*' -o -ipath '*pyside6*' | grep -q .; then
  echo "build_line.sh: the bundle holds torch or Qt files" >&2; exit 1
fi

stage=dist/defect-studio-line-$version-linux-$arch
rm -rf "$stage" && mkdir -p "$stage"
cp -a dist/DefectStudioLine "$stage/DefectStudioLine"
cp installer/line/* "$stage/"
chmod +x "$stage/install-line.sh"
tar -C dist -czf "$stage.tar.gz" "$(basename "$stage")"
rm -rf "$stage"
echo "build_line.sh: bundle  $root/dist/DefectStudioLine ($(du -sh dist/DefectStudioLine | cut -f1))"
echo "build_line.sh: archive $root/$stage.tar.gz ($(du -sh "$stage.tar.gz" | cut -f1))"
echo "build_line.sh: smoke test with installer/smoke_test_line.sh"
