#!/usr/bin/env bash
# Per-user install of the unpacked release archive (no Python needed): the bundle goes to
# ~/.local/share/DefectStudio/app, the `defect-studio` command to ~/.local/bin and a menu
# entry to ~/.local/share/applications. Run again to upgrade (projects are kept, they live
# in their own folders); `install.sh --uninstall` removes the program and the menu entry.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
dest=$data/DefectStudio
bin=$HOME/.local/bin
apps=$data/applications
if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$dest" "$apps/defect-studio.desktop"
  [ -L "$bin/defect-studio" ] && rm -f "$bin/defect-studio"
  echo "Defect Studio removed (projects and settings are kept)."; exit 0
fi
[ -x "$here/DefectStudio/defect-studio" ] || { echo "install.sh: run it from the unpacked archive (DefectStudio/ missing)" >&2; exit 1; }
mkdir -p "$dest" "$bin" "$apps"
rm -rf "$dest/app.new" && cp -a "$here/DefectStudio" "$dest/app.new"
rm -rf "$dest/app" && mv "$dest/app.new" "$dest/app"
cp "$here/app.svg" "$dest/app.svg"
ln -sfn "$dest/app/defect-studio" "$bin/defect-studio"
sed -e "s|@EXEC@|$dest/app/DefectStudio|" -e "s|@ICON@|$dest/app.svg|" \
  "$here/defect-studio.desktop" > "$apps/defect-studio.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true
echo "Installed $("$dest/app/defect-studio" --version). Start it from the menu or with: defect-studio"
case ":$PATH:" in *":$bin:"*) ;; *) echo "(add $bin to your PATH to use the command)";; esac
