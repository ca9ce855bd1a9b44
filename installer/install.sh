#!/usr/bin/env bash
# Per-user install from an unpacked release folder: a private virtual environment under
# ~/.local/share/DefectStudio/venv, the `defect-studio` command in ~/.local/bin and a
# desktop menu entry. Run again to upgrade; `install.sh --uninstall` removes it all.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
venv=$data/DefectStudio/venv
bin=$HOME/.local/bin
apps=$data/applications
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$venv" "$bin/defect-studio" "$apps/defect-studio.desktop"
  echo "Defect Studio removed (projects and settings are kept)."; exit 0
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "Python 3.10+ is needed" >&2; exit 1; }
python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
"$venv/bin/pip" install -q "$here"/defect_studio-*.whl
mkdir -p "$bin" "$apps"
ln -sf "$venv/bin/defect-studio" "$bin/defect-studio"
icon="$data/DefectStudio/app.svg"; [ -f "$here/app.svg" ] && cp "$here/app.svg" "$icon"
sed -e "s|@EXEC@|$venv/bin/defect-studio|" -e "s|@ICON@|$icon|" "$here/defect-studio.desktop" > "$apps/defect-studio.desktop"
echo "Installed. Start it from the menu or with: defect-studio"
