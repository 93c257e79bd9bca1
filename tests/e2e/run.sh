#!/usr/bin/env bash
# Browser tests of the ops UI: Debian's chromium driven by playwright-core
# (npm; it downloads no browser). Starts its own wsrelay (in-memory store,
# loopback only) and writes screenshots to target/e2e/.
# Without chromium it prints "skipped: …"; with CI=true that is a failure.
set -euo pipefail
# The relay started here keeps its own in-memory store; a DATABASE_URL in the
# environment (CI exports one for the test suite) would override it.
unset DATABASE_URL
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/target/e2e
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  if [ "${CI:-}" = true ]; then echo "e2e: CI=true but $CHROMIUM is missing" >&2; exit 1; fi
  echo "skipped: browser tests ($CHROMIUM not installed; apt-get install chromium)"
  exit 0
fi
rm -rf "$OUT" && mkdir -p "$OUT"
( cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null )
cargo build -q --bin wsrelay

# A relay's [server] section: ephemeral loopback ports, in-memory store.
server_section() {
  printf '[server]\nlisten = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"\ndatabase = "sqlite://:memory:"\nshards = 1\nsummary_interval_s = 0\n'
}
server_section >"$OUT/wsrelay.toml"
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
export E2E_ADMIN_EMAIL=admin@e2e.example E2E_ADMIN_PASSWORD=e2e-admin-password
coproc RELAY { WSRELAY_ADMIN_EMAIL=$E2E_ADMIN_EMAIL WSRELAY_ADMIN_PASSWORD=$E2E_ADMIN_PASSWORD \
  exec "$ROOT/target/debug/wsrelay" serve --config "$OUT/wsrelay.toml" 2>"$OUT/wsrelay.log"; }
pid=$RELAY_PID
# shellcheck source=loadtest/ready.sh
. "$ROOT/loadtest/ready.sh"
read_ready "${RELAY[0]}" "$OUT/wsrelay.log" e2e
export E2E_DATA=$DATA E2E_ADMIN=$ADMIN
export E2E_OUT=$OUT E2E_CHROMIUM=$CHROMIUM
timeout --kill-after=5 180 node tests/e2e/ui.test.mjs

# Chromium over TLS: a second wsrelay with `server.tls` (its example `echo`
# endpoint), a certificate for localhost made here.
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=
TLS=$OUT/tls
mkdir -p "$TLS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -keyout "$TLS/key.pem" -out "$TLS/cert.pem" -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
E2E_TLS_SPKI=$(openssl x509 -in "$TLS/cert.pem" -pubkey -noout | openssl pkey -pubin -outform der \
  | openssl dgst -sha256 -binary | base64)
{ server_section; echo "tls = { cert_file = \"$TLS/cert.pem\", key_file = \"$TLS/key.pem\" }"; } >"$TLS/wsrelay.toml"
coproc RELAY_TLS { exec "$ROOT/target/debug/wsrelay" serve --config "$TLS/wsrelay.toml" 2>"$TLS/wsrelay.log"; }
pid=$RELAY_TLS_PID
read_ready "${RELAY_TLS[0]}" "$TLS/wsrelay.log" e2e-tls
export E2E_TLS_DATA=$DATA E2E_TLS_SPKI
timeout --kill-after=5 120 node tests/e2e/tls.test.mjs
