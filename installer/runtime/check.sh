#!/usr/bin/env bash
# The line runtime for real (CI, after `make test`): installer/runtime/check.sh
# Builds the runtime (make line-runtime) in a NEW venv without torch, exports a package in
# the development venv (.venv) from a tiny demo run, and runs --version, model-info,
# predict and watch (stopped by SIGTERM once it has scored the parts) with the runtime's
# own defect-studio. The venv build and the training run side by side. About 1-2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
. "$root/installer/watch_wait.sh"
work=$(mktemp -d)
watcher=""
cleanup() { [ -n "$watcher" ] && kill "$watcher" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "installer/runtime/check.sh: FAILED: $*" >&2; exit 1; }
passed=0
ok() { passed=$((passed + 1)); echo "installer/runtime/check.sh: ok: $*"; }
start=$(date +%s)

# 1. the runtime venv (background) and a package made in the development venv
make -s line-runtime LINE_VENV="$work/venv-line" LINE_STAGE="$work/stage" >"$work/build.log" 2>&1 &
builder=$!
dev=$root/.venv/bin/defect-studio
export OMP_NUM_THREADS=1
"$dev" demo --project "$work/demo" --count 16 --size 48x48 --seed 3 >/dev/null 2>&1 \
  || fail "demo"
"$dev" train --project "$work/demo" --preset quick --epochs 1 --size 48x48 --run-id ci \
  --threads 1 >"$work/train.log" 2>&1 || { tail -5 "$work/train.log" >&2; fail "train"; }
"$dev" export-model --project "$work/demo" --run ci --out "$work/pkg" >"$work/export.log" 2>&1 \
  || { tail -5 "$work/export.log" >&2; fail "export-model"; }
wait "$builder" || { tail -20 "$work/build.log" >&2; fail "make line-runtime"; }
line=$work/venv-line/bin/defect-studio
ok "runtime venv built ($(du -sh "$work/venv-line" | cut -f1)) and package exported" \
   "($(( $(date +%s) - start )) s)"

# 2. no torch, no Qt in that venv: not even importable
"$work/venv-line/bin/python" -c "
import importlib.util as u, sys
bad = [m for m in ('torch', 'torchvision', 'PySide6', 'pyqtgraph', 'sklearn') if u.find_spec(m)]
sys.exit(f'importable: {bad}' if bad else 0)" || fail "the runtime venv has the training stack"
ok "torch, PySide6, scikit-learn are not installed in the runtime venv"

version=$("$line" --version) || fail "--version"
[ "$version" = "$("$root/.venv/bin/python" -c 'import defect_studio; print(defect_studio.__version__)')" ] \
  || fail "--version says $version"
"$line" model-info --model "$work/pkg" >"$work/info.txt" || fail "model-info"
grep -q "runs here with onnxruntime" "$work/info.txt" || fail "model-info: $(cat "$work/info.txt")"
ok "--version $version, model-info"

# 3. predict --model on the demo images (one broken file among them)
printf 'not an image' >"$work/demo/images/broken.png"
"$line" predict --model "$work/pkg" --out "$work/pred" "$work/demo/images" \
  >"$work/pred.out" 2>"$work/pred.err" || { cat "$work/pred.err" >&2; fail "predict"; }
! grep -q Traceback "$work/pred.err" || fail "predict printed a traceback"
rows=$(($(wc -l <"$work/pred/predictions.csv") - 1))
[ "$rows" = 17 ] || fail "predict wrote $rows rows for 16 images + 1 broken file"
ok "predict --model: $(tail -2 "$work/pred.out" | head -1)"

# 4. watch: parts land after it starts; SIGTERM once all are scored; exit code 0
mkdir -p "$work/inbox"
"$line" watch "$work/inbox" --model "$work/pkg" --out "$work/watch" --settle 0.2 \
  >"$work/watch.out" 2>"$work/watch.err" &
watcher=$!
sleep 1
for f in "$work"/demo/images/part_000*.png; do cp "$f" "$work/inbox/"; done
n=$(ls "$work"/inbox | wc -l)
wait_then_stop "$work/watch/results.jsonl" "$n" "$watcher"
rc=$watch_rc
watcher=""
[ "$rc" = 0 ] || { cat "$work/watch.err" >&2; fail "watch exited with $rc"; }
! grep -q Traceback "$work/watch.err" || { cat "$work/watch.err" >&2; fail "watch: traceback"; }
scored=$(wc -l <"$work/watch/results.jsonl" 2>/dev/null || echo 0)
[ "$scored" = "$n" ] || { cat "$work/watch.err" >&2; fail "watch scored $scored of $n parts"; }
grep -q "^stopped:" "$work/watch.err" || fail "watch did not stop cleanly"
ok "watch scored $scored of $n parts, stopped by SIGTERM"

echo "installer/runtime/check.sh: $(( $(date +%s) - start )) s"
echo "line-runtime: $passed passed, 0 failed"
