#!/usr/bin/env bash
# Builds the distributable: a wheel of Defect Studio plus the per-user install script,
# packed into dist/defect-studio-<version>-linux.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
rm -rf build dist/wheel
"$PY" -m pip wheel --no-deps -w dist/wheel . >/dev/null
version=$("$PY" -c "import tomllib;print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])")
stage=dist/defect-studio-$version
rm -rf "$stage" && mkdir -p "$stage"
cp dist/wheel/*.whl installer/install.sh installer/defect-studio.desktop resources/icons/app.svg "$stage"/ 2>/dev/null || \
  cp dist/wheel/*.whl installer/install.sh installer/defect-studio.desktop "$stage"/
tar -C dist -czf "dist/defect-studio-$version-linux.tar.gz" "defect-studio-$version"
echo "built dist/defect-studio-$version-linux.tar.gz"
