# Sourced by installer/runtime/check.sh and installer/smoke_test_line.sh.
# wait_then_stop RESULTS N PID: wait (60 s at most) until the results file RESULTS has N
# lines or the watcher PID has ended, then stop it with SIGTERM; its exit status goes
# into watch_rc.
wait_then_stop() {
  local results=$1 n=$2 pid=$3
  for _ in $(seq 120); do
    [ -f "$results" ] && [ "$(wc -l <"$results")" -ge "$n" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill -TERM "$pid" 2>/dev/null || true
  watch_rc=0
  wait "$pid" || watch_rc=$?
}
