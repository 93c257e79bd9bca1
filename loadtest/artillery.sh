#!/usr/bin/env bash
# Runs loadtest/artillery.yml against wsrelay with Artillery 2.0.21, installed
# on first use into target/artillery (npm --ignore-scripts: no dependency may
# download a browser). Telemetry is stubbed and non-loopback connections are
# refused by loadtest/artillery-no-telemetry.js, preloaded into every Artillery
# process. For a remote wsrelay set WSRELAY_ARTILLERY_ALLOW_REMOTE=1: the host
# of WSRELAY_URL (only that one) is then allowed; telemetry stays stubbed.
#
#   loadtest/artillery.sh ramp|stress|spike|smoke [artillery run options…]
#   loadtest/artillery.sh install        # only install
#
# Environment (defaults per scenario): WSRELAY_URL (ws://127.0.0.1:8080/ws/echo),
# USERS (1000 | 2000 | 5000 | 20), BASE (spike: 100), MESSAGES (20),
# INTERVAL_MS (500), SIZE (64), RAMP_S, DURATION_S, WARM_S, SPIKE_S, HOLD_S,
# COOL_S (seconds), thresholds MAX_CONNECT_P95_MS (1000), MAX_RTT_P99_MS (500),
# MAX_ERROR_RATE (0.01). Exits non-zero when a threshold fails.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ART=$ROOT/target/artillery
VERSION=2.0.21
if [ ! -x "$ART/node_modules/.bin/artillery" ]; then
  echo "artillery.sh: installing artillery@$VERSION into $ART" >&2
  mkdir -p "$ART"
  npm install --prefix "$ART" --ignore-scripts --no-audit --no-fund \
    --no-update-notifier --loglevel=error "artillery@$VERSION" >&2
fi
scenario=${1:?usage: loadtest/artillery.sh ramp|stress|spike|smoke|install [options]}
shift
[ "$scenario" != install ] || exit 0
case $scenario in
  ramp)   : "${USERS:=1000}" "${RAMP_S:=120}" "${DURATION_S:=180}" ;;
  stress) : "${USERS:=2000}" "${RAMP_S:=60}" "${DURATION_S:=600}" ;;
  spike)  : "${USERS:=5000}" "${BASE:=100}" "${WARM_S:=30}" "${SPIKE_S:=10}" "${HOLD_S:=60}" "${COOL_S:=30}" ;;
  smoke)  : "${USERS:=20}" "${DURATION_S:=10}" ;;
  *) echo "artillery.sh: unknown scenario '$scenario' (ramp, stress, spike, smoke)" >&2; exit 2 ;;
esac
export WSRELAY_URL=${WSRELAY_URL:-ws://127.0.0.1:8080/ws/echo}
export MESSAGES=${MESSAGES:-20} INTERVAL_MS=${INTERVAL_MS:-500} SIZE=${SIZE:-64}
export MAX_CONNECT_P95_MS=${MAX_CONNECT_P95_MS:-1000} MAX_RTT_P99_MS=${MAX_RTT_P99_MS:-500}
export MAX_ERROR_RATE=${MAX_ERROR_RATE:-0.01}
# A session lasts about MESSAGES × INTERVAL_MS; start USERS of them per that time.
session_ms=$(( MESSAGES * INTERVAL_MS > 0 ? MESSAGES * INTERVAL_MS : 1 ))
rate_for() { local r=$(( ($1 * 1000 + session_ms - 1) / session_ms )); echo $(( r > 0 ? r : 1 )); }
export RATE=$(rate_for "$USERS") BASE_RATE=$(rate_for "${BASE:-1}")
export RAMP_S=${RAMP_S:-1} DURATION_S=${DURATION_S:-1} WARM_S=${WARM_S:-1} SPIKE_S=${SPIKE_S:-1}
export HOLD_S=${HOLD_S:-1} COOL_S=${COOL_S:-1}
export ARTILLERY_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1
export NODE_OPTIONS="--require=$ROOT/loadtest/artillery-no-telemetry.js ${NODE_OPTIONS:-}"
echo "artillery.sh: $scenario against $WSRELAY_URL: $USERS users ≈ $RATE new sessions/s × ${session_ms} ms" >&2
exec "$ART/node_modules/.bin/artillery" run --environment "$scenario" "$@" loadtest/artillery.yml
