#!/usr/bin/env bash
# Smoke test of the built bundle (not part of `make test`): installer/smoke_test.sh [BUNDLE]
# BUNDLE: the DefectStudio folder (default dist/DefectStudio) or a release .tar.gz.
# Runs the bundled program: --version (timed, cold and warm), a tiny demo project,
# `info`, and the desktop window offscreen for a few seconds (it must still be running
# when stopped, without a traceback). Prints the bundle size and start-up times.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-dist/DefectStudio}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ "$target" == *.tar.gz ]]; then
  tar -C "$work" -xzf "$target"
  target=$(echo "$work"/defect-studio-*/DefectStudio)
fi
exe=$target/defect-studio
[ -x "$exe" ] || { echo "smoke_test: $exe not found; build with installer/build.sh" >&2; exit 1; }
fail() { echo "smoke_test: FAILED: $*" >&2; exit 1; }
ms() { python3 -c 'import sys,time; print(int((time.time()-float(sys.argv[1]))*1000))' "$1"; }

t=$(date +%s.%N); version=$("$exe" --version) || fail "--version"; cold=$(ms "$t")
t=$(date +%s.%N); "$exe" --version >/dev/null; warm=$(ms "$t")
echo "version: $version"
"$exe" demo --project "$work/demo" --count 12 --size 64x64 >/dev/null || fail "demo"
t=$(date +%s.%N); "$exe" info --project "$work/demo" >/dev/null || fail "info"; info=$(ms "$t")

# the window, offscreen, for a few seconds: timeout's exit code 124 = still running
set +e
QT_QPA_PLATFORM=offscreen HOME="$work/home" timeout 8 "$target/DefectStudio" gui \
  --project "$work/demo" >"$work/gui.out" 2>"$work/gui.err"
rc=$?
set -e
if [ "$rc" != 124 ] || grep -q Traceback "$work/gui.err"; then
  cat "$work/gui.err" >&2; fail "the window did not stay up (exit code $rc)"
fi
echo "window: still running after 8 s offscreen (stopped by the test)"
echo "bundle size: $(du -sh "$target" | cut -f1) ($(find "$target" -type f | wc -l) files)"
echo "start-up: --version cold ${cold} ms, warm ${warm} ms; info ${info} ms"
echo "smoke_test: OK"
