# Sourced by the scripts in loadtest/ (after they set ROOT):
# builds the release binaries, kills every process listed in `pids` on exit,
# and waits for loopback ports.
cargo build --release -q -p wsrelay -p wsrelay-loadtest
LT=$ROOT/target/release/wsrelay-loadtest

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits (at most 10 s) until 127.0.0.1:$1 accepts connections.
wait_port() {
  for _ in $(seq 1 100); do
    listening "$1" && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): nothing listens on port $1" >&2
  exit 1
}

# Starts the loadtest echo target on 127.0.0.1:$1 (log in $2; pinned to
# CPU $3 when given) and waits for it.
start_echo() {
  local pin=()
  [ -n "${3:-}" ] && pin=(taskset -c "$3")
  "${pin[@]}" "$LT" echo --listen 127.0.0.1:"$1" >"$2" 2>&1 &
  pids+=($!)
  wait_port "$1"
}

# For the scripts that measure with perf against compare.sh's configs
# (syscalls.sh, profile.sh): both must be there.
need_perf_and_compare() {
  command -v perf >/dev/null || { echo "$(basename "$0"): perf not found (apt-get install linux-perf)" >&2; exit 1; }
  [ -f "$ROOT/target/compare/wsrelay.toml" ] || { echo "$(basename "$0"): run loadtest/compare.sh first" >&2; exit 1; }
}

# Starts wsrelay with compare.sh's config, pinned to CPU 0, on
# 127.0.0.1:$1 in front of the echo target on port $2 (config and log in
# directory $3); sets WSRELAY_PID. The caller waits for the port.
start_compare_wsrelay() {
  sed -e "s/127.0.0.1:19404/127.0.0.1:$1/; s/127.0.0.1:19401/127.0.0.1:$2/" \
    "$ROOT/target/compare/wsrelay.toml" >"$3/wsrelay.toml"
  taskset -c 0 "$ROOT/target/release/wsrelay" serve --config "$3/wsrelay.toml" >/dev/null 2>"$3/wsrelay.log" &
  WSRELAY_PID=$!
  pids+=($WSRELAY_PID)
}
