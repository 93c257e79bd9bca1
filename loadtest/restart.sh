#!/usr/bin/env bash
# Binary upgrades under load (issue 12, SPEC 4.6): wsrelay (2 shards, SQLite
# file) in front of the echo target, while it is upgraded UPGRADES times,
# INTERVAL seconds apart, with `wsrelay serve --takeover`:
# - `wsrelay-loadtest connect --echo` opens sessions as fast as WORKERS
#   workers can (each: TCP connect, upgrade through wsrelay, one echo,
#   close handshake);
# - `wsrelay-loadtest hold` keeps HOLD long-lived sessions, each sending one
#   message a second and checking every echo (same bytes, in order).
# Pass: every upgrade succeeds (successor ready, predecessor exits 0), the
# connect load sees 0 failed sessions (refused, reset or timed-out
# connects, refused upgrades, wrong echoes), every long-lived session
# survives all upgrades with every echo right, and the store lists the same
# HOLD session ids ACTIVE before the first upgrade and after the last (no
# session ended and started again). Stops by itself.
#
# NEGATIVE=1 is the negative control: each "upgrade" stops the running
# process (SIGTERM, drain, exit) and starts a new one — the way a restart
# without handover goes. It must report failures; a harness that sees none
# there is broken. Exit 0 when the expected outcome is seen, 1 otherwise.
#
#   loadtest/restart.sh                                  # 10 upgrades, 10 s apart, 2,000 long-lived
#   UPGRADES=3 INTERVAL=3 HOLD=200 loadtest/restart.sh   # the short run of .ci/run
#   NEGATIVE=1 UPGRADES=3 INTERVAL=3 HOLD=200 loadtest/restart.sh
set -euo pipefail
unset DATABASE_URL
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/restart}
UPGRADES=${UPGRADES:-10}
INTERVAL=${INTERVAL:-10}
WORKERS=${WORKERS:-20}
HOLD=${HOLD:-2000}
NEGATIVE=${NEGATIVE:-}
ECHO_PORT=19481 PORT=19484
mkdir -p "$OUT"
rm -f "$OUT"/wsrelay.db* "$OUT"/wsrelay.sock "$OUT"/wsrelay-*.log
# shellcheck source=loadtest/lib.sh
. "$ROOT/loadtest/lib.sh"
start_echo $ECHO_PORT "$OUT/echo.log"

cat >"$OUT/wsrelay.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
admin_listen = "127.0.0.1:0"
shards = 2
database = "sqlite://$OUT/wsrelay.db"
control_socket = "$OUT/wsrelay.sock"
drain_timeout_ms = 2000
summary_interval_s = 0

[[endpoints]]
id = "echo"
target_url = "ws://127.0.0.1:$ECHO_PORT/"
limits = { max_connections = 100000 }

[[endpoints]]
id = "hold"
target_url = "ws://127.0.0.1:$ECHO_PORT/"
limits = { max_connections = 100000 }
EOF

# The ids of the ACTIVE sessions of endpoint "hold" in the store, sorted,
# one per line.
hold_ids() {
  python3 - "$OUT/wsrelay.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
for (i,) in db.execute("SELECT id FROM live_session WHERE endpoint_id = 'hold' AND state = 'ACTIVE' ORDER BY id"):
    print(i)
PY
}

# Starts wsrelay (extra arguments: "$@"), logging to wsrelay-$n.log; waits
# for its ready line; sets RELAY_PID. Returns 1 if it did not get ready.
n=0
start_relay() {
  n=$((n + 1))
  local ready="$OUT/ready-$n"
  rm -f "$ready"
  "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay.toml" "$@" \
    >"$ready" 2>"$OUT/wsrelay-$n.log" &
  RELAY_PID=$!
  pids+=($RELAY_PID)
  for _ in $(seq 1 100); do
    grep -q '^wsrelay ready' "$ready" 2>/dev/null && return 0
    kill -0 $RELAY_PID 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Waits (at most 30 s) for our child $1 to exit; sets STATUS to its exit
# status ("timeout" if it did not exit).
wait_exit() {
  STATUS=0
  for _ in $(seq 1 300); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then
    STATUS=timeout
    return
  fi
  wait "$1" || STATUS=$?
}

start_relay || { echo "restart.sh: wsrelay did not start (log: $OUT/wsrelay-1.log)" >&2; exit 1; }
duration=$((UPGRADES * INTERVAL + INTERVAL))
# The long-lived sessions open over 2 s and outlast the connect load and
# the last look at the store.
hold_duration=$((duration + 10))
timeout $((hold_duration + 60)) "$LT" hold --url "ws://127.0.0.1:$PORT/ws/hold" \
  -c "$HOLD" --ramp 2 --warmup 0 -d "$hold_duration" --every 1 --label hold \
  >"$OUT/hold.json" 2>"$OUT/hold.log" &
hold=$!
# Every long-lived session open and in the store before the first upgrade.
ids_before=""
for _ in $(seq 1 100); do
  ids_before=$(hold_ids)
  [ "$(printf '%s' "$ids_before" | grep -c .)" -ge "$HOLD" ] && break
  sleep 0.2
done
printf '%s\n' "$ids_before" >"$OUT/ids-before"
echo "restart.sh: $(grep -c . "$OUT/ids-before") long-lived sessions ACTIVE in the store"
timeout $((duration + 60)) "$LT" connect --echo --url "ws://127.0.0.1:$PORT/ws/echo" \
  -c "$WORKERS" -d "$duration" --warmup 0 --label restart \
  >"$OUT/load.json" 2>"$OUT/load.log" &
load=$!

failed_upgrades=0
for i in $(seq 1 "$UPGRADES"); do
  sleep "$INTERVAL"
  old=$RELAY_PID
  if [ -n "$NEGATIVE" ]; then
    kill -TERM "$old"
    wait_exit "$old"
    start_relay || STATUS="no new process"
  else
    if start_relay --takeover; then
      wait_exit "$old"
    else
      STATUS="successor not ready"
    fi
  fi
  [ "$STATUS" = 0 ] || failed_upgrades=$((failed_upgrades + 1))
  echo "restart.sh: upgrade $i/$UPGRADES: old process exit: $STATUS"
done

load_status=0
wait $load || load_status=$?
# The store has the rows of the last process's sessions within a second.
sleep 2
hold_ids >"$OUT/ids-after"
hold_status=0
wait $hold || hold_status=$?
summary=$(tail -1 "$OUT/load.json" 2>/dev/null || true)
hold_summary=$(tail -1 "$OUT/hold.json" 2>/dev/null || true)
python3 - "$summary" "$load_status" "$failed_upgrades" "${NEGATIVE:-0}" "$UPGRADES" \
  "$hold_summary" "$hold_status" "$HOLD" "$OUT/ids-before" "$OUT/ids-after" <<'PY'
import json, sys
(raw, load_status, failed_upgrades, negative, upgrades,
 hold_raw, hold_status, hold_n, ids_before, ids_after) = sys.argv[1:]
def parse(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return None
j, h = parse(raw), parse(hold_raw)
if j is None or load_status != "0":
    print(f"restart.sh: the load did not finish (exit {load_status}): sessions hung")
    errors, sessions, rate, first = None, None, None, None
else:
    errors, sessions, rate = j["errors"], j["samples"] + j["errors"], j["rate_per_s"]
    first = j.get("first_error")
    print(f"restart.sh: {upgrades} {'stop+start restarts' if negative == '1' else 'upgrades'}: "
          f"{sessions} sessions at {rate:.0f}/s (each: upgrade, echo, close), {errors} failed"
          + (f" (first: {first})" if first else "")
          + f"; {failed_upgrades} failed upgrades")
if h is None or hold_status != "0":
    print(f"restart.sh: the long-lived sessions did not finish (exit {hold_status})")
    hold_bad = True
else:
    first = h.get("first_error")
    print(f"restart.sh: long-lived: {h['survived']} of {h['sessions']} survived every upgrade, "
          f"{h['messages_checked']} echoes checked in order, {h['errors']} failed"
          + (f" (first: {first})" if first else "")
          + f"; echo p99 {h['p99_us'] / 1000:.1f} ms, max {h['max_us'] / 1000:.1f} ms")
    hold_bad = h["errors"] > 0 or h["survived"] != int(hold_n)
before = open(ids_before).read().split()
after = open(ids_after).read().split()
same = len(before) == int(hold_n) and before == after
print(f"restart.sh: session ids: {len(before)} ACTIVE before the first upgrade, {len(after)} after the last, "
      + ("the same" if same else f"{len(set(before) - set(after))} gone, {len(set(after) - set(before))} new"))
bad = errors is None or errors > 0 or failed_upgrades != "0" or hold_bad or not same
if negative == "1":
    print("restart.sh: negative control " + ("saw failures, as it must" if bad else "saw NO failures: the harness is broken"))
    sys.exit(0 if bad else 1)
print("restart.sh: " + ("FAIL" if bad else "pass: nothing refused, reset or lost"))
sys.exit(1 if bad else 0)
PY
