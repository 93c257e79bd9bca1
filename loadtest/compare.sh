#!/usr/bin/env bash
# Side-by-side comparison on one machine: a direct connection to the echo
# target, the floor (`wsrelay-loadtest floor`: a minimal TCP byte relay, one
# thread, epoll — the cost of relaying here), nginx (1 worker), HAProxy
# (1 thread) and wsrelay (1 shard), plus
# "wsrelay-spin" (the same with spin_before_park_us = WSRELAY_SPIN_US, latency
# scenarios only). Every proxy is pinned to CPU 0; the load generator and the
# echo target share CPU 1. Targets alternate within each repetition; each
# scenario runs REPS times. Memory per idle session is read from a freshly
# started proxy (wsrelay: 2 shards on CPUs 0-1 and a SQLite file, as users run
# it).
#
#   loadtest/compare.sh                  # full run (~15 min)
#   DURATION=3 REPS=3 IDLE_N=2000 loadtest/compare.sh   # quicker
#   TLS=1 SCENARIOS="tp64 connect" loadtest/compare.sh  # clients over TLS
#
# TLS=1: nginx, HAProxy and wsrelay terminate TLS (one P-256 certificate for
# localhost made here with openssl; each proxy's defaults otherwise) and the
# clients speak wss:// (rustls, trusting that certificate); the legs to the
# echo target stay plain. The direct and floor targets are left out.
#
# Environment: DURATION (s, default 10), WARMUP (s, 2), REPS (3), IDLE_N (5000),
# WSRELAY_SPIN_US (200; 0 leaves wsrelay-spin out),
# OUT (target/compare), SCENARIOS (default: all; e.g. "lat10k tp64"), TARGETS
# (default: direct floor nginx haproxy wsrelay wsrelay-spin).
# Output: $OUT/results.ndjson (one JSON line per run), $OUT/summary.md (medians,
# wsrelay's ratios, and each issue target met or not), $OUT/latency-10k.svg
# and latency-40k.svg.
# Only loopback is used; every run is bounded in time and stops by itself.
set -euo pipefail
# The relay started here keeps its own in-memory store; a DATABASE_URL in the
# environment (CI exports one for the test suite) would override it.
unset DATABASE_URL
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/compare}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
IDLE_N=${IDLE_N:-5000}
WSRELAY_SPIN_US=${WSRELAY_SPIN_US:-200}
SCENARIOS=${SCENARIOS:-"lat10k lat40k tp64 tp16k connect idle"}
PROXY_CPU=0
LOAD_CPU=1
ECHO_PORT=19401 NGINX_PORT=19402 HAPROXY_PORT=19403 WSRELAY_PORT=19404 SPIN_PORT=19405 FLOOR_PORT=19406

TLS=${TLS:-0}
mkdir -p "$OUT/hgrm"
rm -f "$OUT/results.ndjson" "$OUT"/hgrm/*.hgrm "$OUT/wsrelay.log"

need=()
command -v nginx >/dev/null || need+=(nginx)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "compare: installing ${need[*]} from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"

# TLS=1: one certificate for every proxy.
if [ "$TLS" = 1 ]; then
  mkdir -p "$OUT/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE \
    -addext keyUsage=digitalSignature -addext extendedKeyUsage=serverAuth 2>/dev/null
  cat "$OUT/tls/cert.pem" "$OUT/tls/key.pem" >"$OUT/tls/haproxy.pem"
  NGINX_TLS="ssl_certificate $OUT/tls/cert.pem; ssl_certificate_key $OUT/tls/key.pem;"
  NGINX_SSL=" ssl"
  HAPROXY_TLS=" ssl crt $OUT/tls/haproxy.pem alpn http/1.1"
  WSRELAY_TLS="tls = { cert_file = \"$OUT/tls/cert.pem\", key_file = \"$OUT/tls/key.pem\" }"
  SCHEME=wss
else
  NGINX_TLS="" NGINX_SSL="" HAPROXY_TLS="" WSRELAY_TLS="" SCHEME=ws
fi

# Echo target (CPU 1).
taskset -c $LOAD_CPU "$LT" echo --listen 127.0.0.1:$ECHO_PORT >"$OUT/echo.log" 2>&1 &
pids+=($!)
wait_port $ECHO_PORT

# The floor: a minimal byte relay pinned to CPU 0 like the proxies.
start_floor() {
  "$LT" --cpu $PROXY_CPU floor --listen 127.0.0.1:$FLOOR_PORT --target 127.0.0.1:$ECHO_PORT >"$OUT/floor.log" 2>&1 &
  FLOOR_PID=$!
  pids+=($FLOOR_PID)
  wait_port $FLOOR_PORT
}
start_floor

# nginx: one worker pinned to CPU 0.
cat >"$OUT/nginx.conf" <<EOF
worker_processes 1;
worker_cpu_affinity 1;
worker_rlimit_nofile 20000;
daemon off;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:$NGINX_PORT$NGINX_SSL;
    $NGINX_TLS
    location / {
      proxy_pass http://127.0.0.1:$ECHO_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
    }
  }
}
EOF
start_nginx() {
  taskset -c $PROXY_CPU nginx -c "$OUT/nginx.conf" -e "$OUT/nginx-error.log" &
  NGINX_MASTER=$!
  pids+=($NGINX_MASTER)
  wait_port $NGINX_PORT
  NGINX_PID=$(pgrep -P "$NGINX_MASTER" | head -1)
}
start_nginx

# HAProxy: one thread pinned to CPU 0.
cat >"$OUT/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout tunnel 600s
frontend fe
  bind 127.0.0.1:$HAPROXY_PORT$HAPROXY_TLS
  default_backend be
backend be
  server echo 127.0.0.1:$ECHO_PORT
EOF
start_haproxy() {
  taskset -c $PROXY_CPU haproxy -db -f "$OUT/haproxy.cfg" >"$OUT/haproxy.log" 2>&1 &
  HAPROXY_PID=$!
  pids+=($HAPROXY_PID)
  wait_port $HAPROXY_PORT
}
start_haproxy

# wsrelay: one shard on CPU 0.
cat >"$OUT/wsrelay.toml" <<EOF
[server]
listen = "127.0.0.1:$WSRELAY_PORT"
admin_listen = "127.0.0.1:0"
database = "sqlite://:memory:"  # a fresh store each run: the file's endpoints are the ones routed
shards = 1
cpus = "$PROXY_CPU"
summary_interval_s = 0
$WSRELAY_TLS
# Each wsrelay here its own control socket (a second one on the default
# path would take the first for a predecessor and refuse to start).
control_socket = "$OUT/wsrelay.sock"
[limits]
max_connections = 20000
[heartbeat]
ping_interval_ms = 600000
[[endpoints]]
id = "echo"
target_url = "ws://127.0.0.1:$ECHO_PORT/"
limits = { max_connections = 20000, max_message_size = 1048576, timeout_ms = 600000 }
EOF
start_wsrelay() {
  taskset -c $PROXY_CPU "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay.toml" >"$OUT/wsrelay.out" 2>>"$OUT/wsrelay.log" &
  WSRELAY_PID=$!
  pids+=($WSRELAY_PID)
  wait_port $WSRELAY_PORT
}
start_wsrelay

# wsrelay-spin: the same, but a shard that runs out of work keeps polling for
# spin_before_park_us before it sleeps (latency scenarios only).
sed -e "s/^listen = .*/listen = \"127.0.0.1:$SPIN_PORT\"/" \
  -e "s#^control_socket = .*#control_socket = \"$OUT/wsrelay-spin.sock\"#" \
  -e "s/^summary_interval_s = 0/summary_interval_s = 0\nspin_before_park_us = $WSRELAY_SPIN_US/" \
  "$OUT/wsrelay.toml" >"$OUT/wsrelay-spin.toml"
start_wsrelay_spin() {
  taskset -c $PROXY_CPU "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay-spin.toml" >/dev/null 2>>"$OUT/wsrelay.log" &
  SPIN_PID=$!
  pids+=($SPIN_PID)
  wait_port $SPIN_PORT
}
[ "$WSRELAY_SPIN_US" = 0 ] || start_wsrelay_spin

# Idle memory is measured on wsrelay as users run it (issue 11): 2 shards and
# the default store, a SQLite file (fresh each time).
sed -e "s/^shards = 1/shards = 2/" -e "s/^cpus = .*/cpus = \"0-1\"/" \
  -e "s#^database = .*#database = \"sqlite://$OUT/idle.db\"#" \
  "$OUT/wsrelay.toml" >"$OUT/wsrelay-idle.toml"
start_wsrelay_idle() {
  rm -f "$OUT"/idle.db*
  "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay-idle.toml" >/dev/null 2>>"$OUT/wsrelay.log" &
  WSRELAY_PID=$!
  pids+=($WSRELAY_PID)
  wait_port $WSRELAY_PORT
}

# Memory per idle session is measured on a fresh process: a proxy that already
# served (and freed) thousands of sessions reuses that memory, and its RSS would
# hardly grow.
restart() { # target [start function, default start_<target>]
  local pid
  case $1 in
    nginx) pid=$NGINX_MASTER ;;
    haproxy) pid=$HAPROXY_PID ;;
    wsrelay) pid=$WSRELAY_PID ;;
    floor) pid=$FLOOR_PID ;;
    *) return 0 ;;
  esac
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    listening "$(port_of "$1")" || break
    sleep 0.05
  done
  "${2:-start_$1}"
}
port_of() {
  case $1 in nginx) echo $NGINX_PORT ;; haproxy) echo $HAPROXY_PORT ;; wsrelay) echo $WSRELAY_PORT ;; floor) echo $FLOOR_PORT ;; esac
}

url_of() {
  case $1 in
    direct) echo "ws://127.0.0.1:$ECHO_PORT/" ;;
    floor) echo "ws://127.0.0.1:$FLOOR_PORT/" ;;
    nginx) echo "$SCHEME://127.0.0.1:$NGINX_PORT/" ;;
    haproxy) echo "$SCHEME://127.0.0.1:$HAPROXY_PORT/" ;;
    wsrelay) echo "$SCHEME://127.0.0.1:$WSRELAY_PORT/ws/echo" ;;
    wsrelay-spin) echo "$SCHEME://127.0.0.1:$SPIN_PORT/ws/echo" ;;
  esac
}
pid_of() {
  case $1 in
    direct) echo "" ;;
    floor) echo "$FLOOR_PID" ;;
    nginx) echo "$NGINX_PID" ;;
    haproxy) echo "$HAPROXY_PID" ;;
    wsrelay) echo "$WSRELAY_PID" ;;
    wsrelay-spin) echo "$SPIN_PID" ;;
  esac
}

run() { # scenario target rep
  local s=$1 t=$2 rep=$3 url pid args
  # wsrelay-spin: latency scenarios only; WSRELAY_SPIN_US=0 leaves it out.
  [ "$t" != wsrelay-spin ] || { [[ $s == lat* ]] && [ "$WSRELAY_SPIN_US" != 0 ]; } || return 0
  url=$(url_of "$t")
  pid=$(pid_of "$t")
  local common=(--url "$url" --label "$t" -d "$DURATION" --warmup "$WARMUP")
  [ "$TLS" != 1 ] || common+=(--ca "$OUT/tls/cert.pem")
  [ -n "$pid" ] && common+=(--proxy-pid "$pid")
  case $s in
    lat10k) args=(latency "${common[@]}" -c 100 -s 64 -r 10000 --hgrm "$OUT/hgrm/$s-$t-$rep.hgrm") ;;
    lat40k) args=(latency "${common[@]}" -c 100 -s 64 -r 40000 --hgrm "$OUT/hgrm/$s-$t-$rep.hgrm") ;;
    tp64) args=(throughput "${common[@]}" -c 100 -w 16 -s 64) ;;
    tp16k) args=(throughput "${common[@]}" -c 100 -w 16 -s 16384) ;;
    connect) args=(connect "${common[@]}" -c 50) ;;
    idle)
      [ -n "$pid" ] || return 0
      if [ "$t" = wsrelay ]; then restart wsrelay start_wsrelay_idle; else restart "$t"; fi
      pid=$(pid_of "$t")
      args=(idle --url "$url" --label "$t" -c "$IDLE_N" --ramp 3 --hold 1 --pid "$pid" -d 1 --warmup 0)
      [ "$TLS" != 1 ] || args+=(--ca "$OUT/tls/cert.pem") ;;
  esac
  local line
  line=$(taskset -c $LOAD_CPU "$LT" "${args[@]}" 2>"$OUT/last-run.log" | tail -1)
  # Back to the 1-shard wsrelay the other scenarios measure.
  [ "$s/$t" != idle/wsrelay ] || restart wsrelay
  python3 - "$s" "$t" "$rep" "$line" >>"$OUT/results.ndjson" <<'PY'
import json, sys
s, t, rep, line = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
d = json.loads(line)
d.update(scenario=s, target=t, rep=rep)
print(json.dumps(d))
PY
  printf 'compare: %-8s %-8s rep %d: %s\n' "$s" "$t" "$rep" "$(tail -1 "$OUT/results.ndjson" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("p50=%sus p99=%sus rate=%s/s cpu=%s per_cpu_s=%s bytes/session=%s errors=%s" % (d.get("p50_us"), d.get("p99_us"), d.get("rate_per_s"), d.get("proxy_cpu_s"), d.get("per_proxy_cpu_s"), d.get("bytes_per_session"), d.get("errors")))')" >&2
}

if [ "$TLS" = 1 ]; then default_targets="nginx haproxy wsrelay"; else default_targets="direct floor nginx haproxy wsrelay wsrelay-spin"; fi
read -r -a targets <<<"${TARGETS:-$default_targets}"
for rep in $(seq 1 "$REPS"); do
  for s in $SCENARIOS; do
    # Rotate the order each repetition so no target always runs first.
    n=${#targets[@]}
    for i in $(seq 0 $((n - 1))); do
      run "$s" "${targets[$(((i + rep) % n))]}" "$rep"
    done
  done
done

python3 "$ROOT/loadtest/summarize.py" "$OUT" | tee "$OUT/summary.md"
for s in lat10k lat40k; do
  files=()
  for t in "${targets[@]}"; do
    f=$(python3 "$ROOT/loadtest/summarize.py" "$OUT" --median-hgrm "$s" "$t" || true)
    [ -n "$f" ] && files+=("$t=$f")
  done
  if [ ${#files[@]} -gt 0 ]; then
    "$LT" plot -o "$OUT/latency-${s#lat}.svg" --title "Latency by percentile, ${s#lat} msgs/s, 100 connections, 64 B (median run)" "${files[@]}"
  fi
done
echo "compare: results in $OUT (summary.md, results.ndjson, latency-*.svg)"
