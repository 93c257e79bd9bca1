#!/usr/bin/env bash
# Syscalls and CPU per relayed message (issue 11): the floor, nginx and
# wsrelay side by side under the same closed-loop load (64 B, 100
# connections, window 16), each counted with
#   perf stat -e 'syscalls:sys_enter_*',task-clock -p PID
# over DURATION seconds. Run after loadtest/compare.sh, whose configs
# (target/compare/*.conf|toml) it reuses; needs perf (Debian linux-perf).
#   loadtest/syscalls.sh        # environment: DURATION (5), OUT (target/syscalls)
set -euo pipefail
unset DATABASE_URL
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/syscalls}
CMP=$ROOT/target/compare
DURATION=${DURATION:-5}
ECHO_PORT=19451 FLOOR_PORT=19452 NGINX_PORT=19453 WSRELAY_PORT=19454
mkdir -p "$OUT"
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
need_perf_and_compare
[ -f "$CMP/nginx.conf" ] || { echo "syscalls.sh: run loadtest/compare.sh first" >&2; exit 1; }
start_echo $ECHO_PORT "$OUT/echo.log" 1
"$LT" --cpu 0 floor --listen 127.0.0.1:$FLOOR_PORT --target 127.0.0.1:$ECHO_PORT >"$OUT/floor.log" 2>&1 &
FLOOR_PID=$!
pids+=($FLOOR_PID)
sed -e "s/127.0.0.1:19402/127.0.0.1:$NGINX_PORT/; s/127.0.0.1:19401/127.0.0.1:$ECHO_PORT/" \
  -e "s#$CMP#$OUT#g" "$CMP/nginx.conf" >"$OUT/nginx.conf"
nginx -c "$OUT/nginx.conf" -p "$OUT" &
pids+=($!)
start_compare_wsrelay $WSRELAY_PORT $ECHO_PORT "$OUT"
for p in $FLOOR_PORT $NGINX_PORT $WSRELAY_PORT; do wait_port $p; done
NGINX_WORKER=$(pgrep -P "$(cat "$OUT/nginx.pid")" | head -1)
for t in floor nginx wsrelay; do
  case $t in
    floor) url=ws://127.0.0.1:$FLOOR_PORT/ pid=$FLOOR_PID ;;
    nginx) url=ws://127.0.0.1:$NGINX_PORT/ pid=$NGINX_WORKER ;;
    wsrelay) url=ws://127.0.0.1:$WSRELAY_PORT/ws/echo pid=$WSRELAY_PID ;;
  esac
  taskset -c 1 "$LT" throughput --url "$url" --label "$t" -c 100 -w 16 -s 64 -d $((DURATION + 2)) --warmup 1 2>/dev/null | tail -1 >"$OUT/$t.json" &
  load=$!
  sleep 1.5
  perf stat -x, -e 'syscalls:sys_enter_*,task-clock' -p "$pid" -- sleep "$DURATION" 2>"$OUT/$t.perf" >/dev/null
  wait $load
  python3 - "$t" "$OUT/$t.json" "$OUT/$t.perf" "$DURATION" <<'PY'
import json, sys
t, j, p, dur = sys.argv[1], json.load(open(sys.argv[2])), open(sys.argv[3]).read().splitlines(), float(sys.argv[4])
msgs = j["rate_per_s"] * dur  # messages relayed while perf counted (echoed: each crosses twice)
counts, clock = {}, 0.0
for l in p:
    f = l.split(",")
    if len(f) < 3 or not f[0].replace(".", "").isdigit():
        continue
    if f[2] == "task-clock":
        clock = float(f[0])
    elif f[2].startswith("syscalls:sys_enter_"):
        n = int(float(f[0]))
        if n:
            counts[f[2][len("syscalls:sys_enter_"):]] = n
top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
print(json.dumps({"target": t, "msgs_per_s": round(j["rate_per_s"]), "cpu_ms_per_s": round(clock / dur),
                  "ns_cpu_per_msg": round(clock * 1e6 / msgs), "syscalls_per_msg": round(sum(counts.values()) / msgs, 3),
                  "top": {k: round(v / msgs, 3) for k, v in top}}))
PY
done | tee "$OUT/summary.ndjson"
