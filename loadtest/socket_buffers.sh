#!/usr/bin/env bash
# Kernel socket buffers of relayed sockets (issue 10 item 8): wsrelay with
# `socket_*_buffer_bytes = 0` (the kernel's autotuning, as before) against
# bounded sizes (SIZES, default "0 65536 131072 262144"), side by side in one run:
#   - kernel memory one stalled session pins (a client that sends and never
#     reads; ss -tm: rmem_alloc + wmem_queued of wsrelay's two sockets);
#   - throughput at 64 B and 16 KiB (100 connections, window 16) and msgs
#     per proxy CPU-second.
#   loadtest/socket_buffers.sh     # environment: SIZES, DURATION (5), WARMUP (2), REPS (3), OUT (target/socket-buffers)
set -euo pipefail
unset DATABASE_URL
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/socket-buffers}
DURATION=${DURATION:-5} WARMUP=${WARMUP:-2} REPS=${REPS:-3}
read -r -a SIZES <<<"${SIZES:-0 65536 131072 262144}"
ECHO_PORT=19421
mkdir -p "$OUT"
rm -f "$OUT/results.ndjson"
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
start_echo $ECHO_PORT "$OUT/echo.log"
declare -A PID PORT
port=19421
for variant in "${SIZES[@]}"; do
  port=$((port + 1)) bytes=$variant
  PORT[$variant]=$port
  cat >"$OUT/wsrelay-$variant.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:0"
database = "sqlite://:memory:"
shards = 1
cpus = "0"
summary_interval_s = 0
[limits]
socket_send_buffer_bytes = $bytes
socket_recv_buffer_bytes = $bytes
[[endpoints]]
id = "echo"
target_url = "ws://127.0.0.1:$ECHO_PORT/"
limits = { max_connections = 20000, max_message_size = 1048576, timeout_ms = 600000 }
TOML
  WSRELAY_LOG=${WSRELAY_LOG:-info} "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay-$variant.toml" >/dev/null 2>"$OUT/wsrelay-$variant.log" &
  PID[$variant]=$!
  pids+=($!)
  wait_port "$port"
done
for variant in "${SIZES[@]}"; do
  line=$(python3 "$ROOT/loadtest/stalled_client.py" "127.0.0.1:${PORT[$variant]}" /ws/echo "${PID[$variant]}")
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(variant=sys.argv[2], kind="stall"); print(json.dumps(d))' \
    "$line" "$variant" | tee -a "$OUT/results.ndjson" >&2
done
for rep in $(seq 1 "$REPS"); do
  for size in 64 16384; do
    for variant in "${SIZES[@]}"; do
      line=$("$LT" throughput --url "ws://127.0.0.1:${PORT[$variant]}/ws/echo" --label "$variant" -c 100 -w 16 -s $size \
        -d "$DURATION" --warmup "$WARMUP" --proxy-pid "${PID[$variant]}" 2>/dev/null | tail -1)
      python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(variant=sys.argv[2], size=int(sys.argv[3]), rep=int(sys.argv[4]), kind="tp"); print(json.dumps(d))' \
        "$line" "$variant" "$size" "$rep" | tee -a "$OUT/results.ndjson" >&2
    done
  done
done
python3 - "$OUT/results.ndjson" "${SIZES[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("| socket_*_buffer_bytes | kernel memory of one stalled session | 64 B msgs/s | 64 B msgs per proxy CPU-s | 16 KiB msgs/s | 16 KiB msgs per proxy CPU-s |")
print("|---|---|---|---|---|---|")
for v in sys.argv[2:]:
    st = [r for r in rows if r["kind"] == "stall" and r["variant"] == v][0]
    cells = [f"{st['kernel_bytes'] / 1024:,.0f} KiB ({st['wsrelay_sockets']} sockets)"]
    for size in (64, 16384):
        rs = [r for r in rows if r["kind"] == "tp" and r["variant"] == v and r["size"] == size]
        m = lambda k: statistics.median(r[k] for r in rs if r.get(k) is not None)
        cells += [f"{m('rate_per_s'):,.0f}", f"{m('per_proxy_cpu_s'):,.0f}"]
    name = "0 (kernel autotuning)" if v == "0" else v
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
