#!/usr/bin/env bash
# Where a shard's CPU goes: wsrelay (1 shard, CPU 0) under one load pattern
# (load + echo on CPU 1), recorded with `perf record -F 4999 -g` for
# DURATION seconds, then the top symbols by thread, library and symbol.
# Reuses compare.sh's config (run loadtest/compare.sh first); needs perf.
#   loadtest/profile.sh                  # 64 B, 100 connections x 16 in flight
#   LOAD=connect loadtest/profile.sh     # upgrade + connect + close, 50 workers
#   SIZE=16384 loadtest/profile.sh
# Environment: LOAD (throughput | connect), SIZE (64), DURATION (5),
# OUT (target/profile). Output: $OUT/perf.data and $OUT/report.txt.
set -euo pipefail
unset DATABASE_URL
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/profile}
LOAD=${LOAD:-throughput}
SIZE=${SIZE:-64}
DURATION=${DURATION:-5}
ECHO_PORT=19461 WSRELAY_PORT=19464
mkdir -p "$OUT"
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
need_perf_and_compare
start_echo $ECHO_PORT "$OUT/echo.log" 1
start_compare_wsrelay $WSRELAY_PORT $ECHO_PORT "$OUT"
wait_port $WSRELAY_PORT
url=ws://127.0.0.1:$WSRELAY_PORT/ws/echo
case $LOAD in
  throughput) args=(throughput --url "$url" -c 100 -w 16 -s "$SIZE") ;;
  connect) args=(connect --url "$url" -c 50) ;;
  *) echo "profile.sh: LOAD is throughput or connect" >&2; exit 2 ;;
esac
taskset -c 1 "$LT" "${args[@]}" --label profile -d $((DURATION + 3)) --warmup 1 2>/dev/null | tail -1 >"$OUT/load.json" &
load=$!
sleep 2
perf record -F 4999 -g -p "$WSRELAY_PID" -o "$OUT/perf.data" -- sleep "$DURATION" >/dev/null 2>&1
wait $load
{
  echo "# load: $(cat "$OUT/load.json")"
  echo "# by thread"
  perf report -i "$OUT/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep '%' | head -8
  echo "# by library"
  perf report -i "$OUT/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -8
  echo "# by symbol"
  perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null | grep '%' | head -40
} | tee "$OUT/report.txt"
