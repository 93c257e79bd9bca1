#!/usr/bin/env bash
# Autobahn TestSuite against wsrelay: `wstest -m fuzzingclient` connects to
# wsrelay, whose endpoint's target is `wstest -m testeeserver`.
#   tests/autobahn/run.sh [CASES...]     default: 1.* 2.* 3.* 4.* 5.* 6.* 7.* 10.*
# Installs Autobahn (Python 2.7 from pyenv) into target/autobahn-venv if missing.
# Exits non-zero if any case FAILED. Reports: target/autobahn/report/index.html
set -euo pipefail
# The relay started here keeps its own in-memory store; a DATABASE_URL in the
# environment (CI exports one for the test suite) would override it.
unset DATABASE_URL
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/target/autobahn
VENV=$ROOT/target/autobahn-venv
mkdir -p "$OUT"
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=("1.*" "2.*" "3.*" "4.*" "5.*" "6.*" "7.*" "10.*")

if [ ! -x "$VENV/bin/wstest" ]; then
  py27="$(pyenv root 2>/dev/null)/versions/2.7.18/bin/python2.7"
  [ -x "$py27" ] || { echo "autobahn: Python 2.7.18 not found under pyenv ($py27)" >&2; exit 1; }
  python3 -m pip install -q 'virtualenv<20.22' >&2
  python3 -m virtualenv -q -p "$py27" "$VENV" >&2
  "$VENV/bin/pip" install -q autobahntestsuite==25.10.1 >&2
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TESTEE_PORT=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

(cd "$OUT" && exec "$VENV/bin/wstest" -m testeeserver -w "ws://127.0.0.1:$TESTEE_PORT" >"$OUT/testee.log" 2>&1) &
pids+=($!)

cargo build --release -q --bin wsrelay
cat >"$OUT/wsrelay.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
database = "sqlite://:memory:"  # a fresh store each run: the file's endpoints are the ones routed
shards = 1
summary_interval_s = 0

[[endpoints]]
id = "autobahn"
target_url = "ws://127.0.0.1:$TESTEE_PORT"
limits = { max_connections = 1000, max_message_size = 67108864, timeout_ms = 120000 }
TOML
coproc RELAY { exec "$ROOT/target/release/wsrelay" serve --config "$OUT/wsrelay.toml" 2>"$OUT/wsrelay.log"; }
pids+=($RELAY_PID)
# shellcheck source=loadtest/ready.sh
. "$ROOT/loadtest/ready.sh"
read_ready "${RELAY[0]}" "$OUT/wsrelay.log" autobahn

# Wait for the testee to listen (bounded).
for _ in $(seq 1 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$TESTEE_PORT),1)" 2>/dev/null && break
  sleep 0.1
done

case_json=$(printf '"%s",' "${cases[@]}"); case_json="[${case_json%,}]"
cat >"$OUT/fuzzingclient.json" <<JSON
{
  "outdir": "$OUT/report",
  "servers": [{"agent": "wsrelay", "url": "ws://$DATA/ws/autobahn"}],
  "cases": $case_json,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
rm -rf "$OUT/report"
(cd "$OUT" && "$VENV/bin/wstest" -m fuzzingclient -s "$OUT/fuzzingclient.json" >"$OUT/fuzzingclient.log" 2>&1) || {
  echo "autobahn: fuzzingclient failed" >&2; tail -20 "$OUT/fuzzingclient.log" >&2; exit 1; }

python3 - "$OUT/report/index.json" <<'PY'
import json, sys, collections
idx = json.load(open(sys.argv[1]))["wsrelay"]
by = collections.Counter(v["behavior"] for v in idx.values())
close = collections.Counter(v["behaviorClose"] for v in idx.values())
failed = sorted((k for k, v in idx.items() if v["behavior"] == "FAILED" or v["behaviorClose"] == "FAILED"),
                key=lambda k: [int(x) for x in k.split(".")])
print("autobahn: %d cases; behavior %s; close %s" % (len(idx), dict(by), dict(close)))
if failed:
    print("autobahn: FAILED cases: " + " ".join(failed))
    sys.exit(1)
print("autobahn: 0 FAILED")
PY
