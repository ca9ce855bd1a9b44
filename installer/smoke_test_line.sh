#!/usr/bin/env bash
# Smoke test of the line bundle (not part of `make test`):
#   installer/smoke_test_line.sh [BUNDLE] [PACKAGE]
# BUNDLE: the DefectStudioLine folder (default dist/DefectStudioLine) or a release .tar.gz.
# PACKAGE: an export package; without one, one is exported in the development venv (.venv)
# from a tiny demo run. Runs the bundled defect-studio: --version (timed, cold and warm),
# model-info, predict --model on images with a broken one among them, and watch on parts
# that land after it starts (stopped by SIGTERM: exit code 0). Prints size and start-up.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
. "$root/installer/watch_wait.sh"
target=${1:-dist/DefectStudioLine}
package=${2:-}
work=$(mktemp -d)
watcher=""
cleanup() { [ -n "$watcher" ] && kill "$watcher" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
if [[ "$target" == *.tar.gz ]]; then
  tar -C "$work" -xzf "$target"
  target=$(echo "$work"/defect-studio-line-*/DefectStudioLine)
fi
exe=$target/defect-studio
[ -x "$exe" ] || { echo "smoke_test_line: $exe not found; build with installer/build_line.sh" >&2; exit 1; }
fail() { echo "smoke_test_line: FAILED: $*" >&2; exit 1; }
ms() { python3 -c 'import sys,time; print(int((time.time()-float(sys.argv[1]))*1000))' "$1"; }

sync; t=$(date +%s.%N); version=$("$exe" --version) || fail "--version"; cold=$(ms "$t")
best=999999
for _ in 1 2 3 4 5; do
  t=$(date +%s.%N); "$exe" --version >/dev/null; w=$(ms "$t"); [ "$w" -lt "$best" ] && best=$w
done
echo "version: $version"

# images: a tiny demo project (made with the development venv, as the package)
dev=$root/.venv/bin/defect-studio
"$dev" demo --project "$work/demo" --count 16 --size 48x48 --seed 5 >/dev/null 2>&1 || fail "demo (needs .venv)"
if [ -z "$package" ]; then
  OMP_NUM_THREADS=1 "$dev" train --project "$work/demo" --preset quick --epochs 1 --size 48x48 \
    --run-id smoke --threads 1 >"$work/train.log" 2>&1 || fail "train"
  OMP_NUM_THREADS=1 "$dev" export-model --project "$work/demo" --run smoke --out "$work/pkg" \
    >/dev/null 2>&1 || fail "export-model"
  package=$work/pkg
fi
"$exe" model-info --model "$package" || fail "model-info"
t=$(date +%s.%N); "$exe" model-info --model "$package" >/dev/null; info=$(ms "$t")

printf 'not an image' >"$work/demo/images/broken.png"
t=$(date +%s.%N)
"$exe" predict --model "$package" --out "$work/pred" "$work/demo/images" >"$work/pred.out" \
  2>"$work/pred.err" || { cat "$work/pred.err" >&2; fail "predict"; }
pred=$(ms "$t")
! grep -q Traceback "$work/pred.err" || fail "predict printed a traceback"
rows=$(($(wc -l <"$work/pred/predictions.csv") - 1))
[ "$rows" = 17 ] || fail "predict wrote $rows rows for 16 images + 1 broken file"
head -1 "$work/pred.out"

mkdir -p "$work/inbox"
"$exe" watch "$work/inbox" --model "$package" --out "$work/watch" --settle 0.2 \
  >/dev/null 2>"$work/watch.err" &
watcher=$!
sleep 1
cp "$work"/demo/images/part_000*.png "$work/inbox/"
n=$(ls "$work/inbox" | wc -l)
wait_then_stop "$work/watch/results.jsonl" "$n" "$watcher"
rc=$watch_rc
watcher=""
[ "$rc" = 0 ] && ! grep -q Traceback "$work/watch.err" || { cat "$work/watch.err" >&2; fail "watch (exit $rc)"; }
scored=$(wc -l <"$work/watch/results.jsonl")
[ "$scored" = "$n" ] || fail "watch scored $scored of $n parts"
echo "watch: scored $scored of $n parts, stopped by SIGTERM"

echo "bundle size: $(du -sh "$target" | cut -f1) ($(find "$target" -type f | wc -l) files)"
echo "start-up: --version cold ${cold} ms, warm ${best} ms (best of 5); model-info ${info} ms;" \
     "predict of 17 files ${pred} ms"
echo "smoke_test_line: OK"
