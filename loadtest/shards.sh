#!/usr/bin/env bash
# wsrelay with 1 shard (CPU 0) against 2 shards (CPUs 0-1) on this machine,
# throughput at 64 B and 16 KiB (100 connections, window 16). The load
# generator and the echo target are not pinned: on 2 cores every process
# shares them, which is the point of the measurement.
#   loadtest/shards.sh        # environment: DURATION (5), WARMUP (2), REPS (3), OUT (target/shards)
set -euo pipefail
# The relay started here keeps its own in-memory store; a DATABASE_URL in the
# environment (CI exports one for the test suite) would override it.
unset DATABASE_URL
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/shards}
DURATION=${DURATION:-5} WARMUP=${WARMUP:-2} REPS=${REPS:-3}
ECHO_PORT=19411 PORT1=19412 PORT2=19413
mkdir -p "$OUT"
rm -f "$OUT/results.ndjson"
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
start_echo $ECHO_PORT "$OUT/echo.log"
declare -A PID
for n in 1 2; do
  port=$((n == 1 ? PORT1 : PORT2))
  if [ $n = 1 ]; then cpus=0; else cpus=0-1; fi
  cat >"$OUT/wsrelay-$n.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:0"
database = "sqlite://:memory:"  # a fresh store each run: the file's endpoints are the ones routed
shards = $n
cpus = "$cpus"
summary_interval_s = 0
[[endpoints]]
id = "echo"
target_url = "ws://127.0.0.1:$ECHO_PORT/"
limits = { max_connections = 20000, max_message_size = 1048576, timeout_ms = 600000 }
TOML
  "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay-$n.toml" >/dev/null 2>"$OUT/wsrelay-$n.log" &
  PID[$n]=$!
  pids+=($!)
  wait_port $port
done
for rep in $(seq 1 "$REPS"); do
  for size in 64 16384; do
    for n in 1 2; do
      port=$((n == 1 ? PORT1 : PORT2))
      line=$("$LT" throughput --url "ws://127.0.0.1:$port/ws/echo" --label "$n-shard" -c 100 -w 16 -s $size \
        -d "$DURATION" --warmup "$WARMUP" --proxy-pid "${PID[$n]}" 2>/dev/null | tail -1)
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(shards=int(sys.argv[2]), size=int(sys.argv[3]), rep=int(sys.argv[4])); print(json.dumps(d))' \
        "$line" "$n" "$size" "$rep" | tee -a "$OUT/results.ndjson" >&2
    done
  done
done
python3 - "$OUT/results.ndjson" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| size | shards | msgs/s (median) | proxy CPU s | msgs per proxy CPU-second | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|---|")
for size in (64, 16384):
    for n in (1, 2):
        rs = [r for r in rows if r["size"] == size and r["shards"] == n]
        m = lambda k: statistics.median(r[k] for r in rs if r.get(k) is not None)
        print(f"| {size} B | {n} | {m('rate_per_s'):,.0f} | {m('proxy_cpu_s'):.2f} | {m('per_proxy_cpu_s'):,.0f} | {m('p50_us'):,.0f} | {m('p99_us'):,.0f} |")
PY
