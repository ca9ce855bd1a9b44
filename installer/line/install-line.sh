#!/usr/bin/env bash
# Installs the line bundle as a service on Linux (run as root, from the unpacked archive):
#   ./install-line.sh [STATION]        (default station name: line1)
# Puts the bundle in $PREFIX (/opt/defect-studio-line), the unit defect-studio-watch@.service
# in $UNIT_DIR (/etc/systemd/system), a station file $ETC_DIR/STATION.env (/etc/defect-studio)
# when there is none, the user defect-studio; then says how to start it. Set SKIP_SYSTEMCTL=1
# to only copy the files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
station=${1:-line1}
[[ "$station" =~ ^[A-Za-z0-9_-]+$ ]] || { echo "install-line.sh: station names are letters, digits, - and _" >&2; exit 2; }
PREFIX=${PREFIX:-/opt/defect-studio-line}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
ETC_DIR=${ETC_DIR:-/etc/defect-studio}
[ -x "$here/DefectStudioLine/defect-studio" ] || { echo "install-line.sh: run it from the unpacked archive (DefectStudioLine/ beside it)" >&2; exit 1; }
mkdir -p "$PREFIX" "$UNIT_DIR" "$ETC_DIR"
rm -rf "$PREFIX.new" && cp -a "$here/DefectStudioLine" "$PREFIX.new"
cp "$here/README-line.md" "$PREFIX.new/" 2>/dev/null || true
rm -rf "$PREFIX.old" && { [ ! -e "$PREFIX" ] || mv "$PREFIX" "$PREFIX.old"; } && mv "$PREFIX.new" "$PREFIX"
rm -rf "$PREFIX.old"
sed "s#/opt/defect-studio-line#$PREFIX#g; s#/etc/defect-studio/#$ETC_DIR/#g" \
  "$here/defect-studio-watch@.service" >"$UNIT_DIR/defect-studio-watch@.service"
[ -e "$ETC_DIR/$station.env" ] || cp "$here/station.env.example" "$ETC_DIR/$station.env"
"$PREFIX/defect-studio" --version >/dev/null
echo "installed $("$PREFIX/defect-studio" --version) in $PREFIX; station file $ETC_DIR/$station.env"
if [ -z "${SKIP_SYSTEMCTL:-}" ]; then
  id defect-studio >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin defect-studio
  mkdir -p /var/log/defect-studio && chown defect-studio: /var/log/defect-studio
  systemctl daemon-reload
  echo "edit $ETC_DIR/$station.env (the folders must be writable by the user defect-studio), then:"
  echo "  systemctl enable --now defect-studio-watch@$station; journalctl -u defect-studio-watch@$station -f"
fi
