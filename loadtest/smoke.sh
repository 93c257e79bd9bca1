#!/usr/bin/env bash
# CI smoke of the operator load-test scenarios: starts wsrelay (release build,
# ephemeral loopback ports, the built-in echo endpoint), runs a short k6 ramp
# and a short Artillery run against it (each bounded well under 60 s) and fails
# if a threshold fails. Then it proves the thresholds can fail: the same runs
# against an unknown endpoint (every upgrade answered 404) must exit non-zero.
#   loadtest/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/smoke
mkdir -p "$OUT"

cargo build --release -q --bin wsrelay
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
coproc RELAY { DATABASE_URL=sqlite://:memory: WSRELAY_LISTEN=127.0.0.1:0 WSRELAY_ADMIN_LISTEN=127.0.0.1:0 exec "$ROOT/target/release/wsrelay" serve 2>"$OUT/wsrelay.log"; }
pid=$RELAY_PID
# shellcheck source=loadtest/ready.sh
. "$ROOT/loadtest/ready.sh"
read_ready "${RELAY[0]}" "$OUT/wsrelay.log" smoke
GOOD=ws://$DATA/ws/echo
BAD=ws://$DATA/ws/no-such-endpoint

# Install first, so the 60 s bound covers only the runs.
k6/run.sh install
loadtest/artillery.sh install
bounded() { timeout --kill-after=5 60 "$@"; }

echo "smoke: k6 ramp (50 users) against $GOOD"
WSRELAY_URL=$GOOD USERS=50 RAMP=5s DURATION=10s RAMP_DOWN=3s MESSAGES=10 INTERVAL_MS=200 \
  MAX_CONNECT_P95_MS=500 MAX_RTT_P99_MS=200 bounded k6/run.sh ramp >"$OUT/k6.log" 2>&1 \
  || { cat "$OUT/k6.log"; echo "smoke: k6 thresholds failed" >&2; exit 1; }
grep -E "✓|✗" "$OUT/k6.log"

echo "smoke: k6 arrival rate (20 new sessions/s) against $GOOD"
WSRELAY_URL=$GOOD RATE=20 RAMP=3s DURATION=7s MESSAGES=5 INTERVAL_MS=200 \
  MAX_CONNECT_P95_MS=500 MAX_RTT_P99_MS=200 bounded k6/run.sh arrival >"$OUT/k6-arrival.log" 2>&1 \
  || { cat "$OUT/k6-arrival.log"; echo "smoke: k6 arrival thresholds failed" >&2; exit 1; }
grep -E "✓|✗" "$OUT/k6-arrival.log"
# Every echo was checked against what was sent, and all matched.
grep -qE "checks_succeeded[ .:]+100\.00%|✓ echo is what was sent" "$OUT/k6-arrival.log" \
  || { cat "$OUT/k6-arrival.log"; echo "smoke: k6 echo checks missing" >&2; exit 1; }

echo "smoke: Artillery (20 users, 10 s) against $GOOD"
WSRELAY_URL=$GOOD USERS=20 DURATION_S=10 MESSAGES=10 INTERVAL_MS=200 \
  MAX_CONNECT_P95_MS=500 MAX_RTT_P99_MS=200 WSRELAY_ARTILLERY_GUARD_REPORT=1 \
  bounded loadtest/artillery.sh smoke >"$OUT/artillery.log" 2>&1 \
  || { cat "$OUT/artillery.log"; echo "smoke: Artillery checks failed" >&2; exit 1; }
grep -E "^(ok|fail):|artillery-guard" "$OUT/artillery.log"
# The telemetry stub must have been engaged (Artillery captures a "test run"
# event on every run) and nothing may have tried to leave loopback.
grep -qE "artillery-guard: telemetry events dropped=[1-9][0-9]*, outbound connections blocked=0" "$OUT/artillery.log" \
  || { echo "smoke: Artillery telemetry guard not engaged or outbound connection attempted" >&2; exit 1; }

echo "smoke: thresholds must fail against $BAD"
if WSRELAY_URL=$BAD USERS=5 RAMP=2s DURATION=2s RAMP_DOWN=1s bounded k6/run.sh ramp >"$OUT/k6-bad.log" 2>&1; then
  cat "$OUT/k6-bad.log"; echo "smoke: k6 passed against a 404 endpoint" >&2; exit 1
fi
if WSRELAY_URL=$BAD USERS=5 DURATION_S=2 MESSAGES=2 INTERVAL_MS=100 bounded loadtest/artillery.sh smoke >"$OUT/artillery-bad.log" 2>&1; then
  cat "$OUT/artillery-bad.log"; echo "smoke: Artillery passed against a 404 endpoint" >&2; exit 1
fi
echo "smoke: ok (k6 and Artillery thresholds pass against wsrelay and fail against a 404 endpoint)"
