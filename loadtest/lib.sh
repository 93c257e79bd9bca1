# Sourced by loadtest/compare.sh and loadtest/shards.sh (after they set ROOT):
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

# Starts the loadtest echo target on 127.0.0.1:$1 (log in $2) and waits for it.
start_echo() {
  "$LT" echo --listen 127.0.0.1:"$1" >"$2" 2>&1 &
  pids+=($!)
  wait_port "$1"
}
