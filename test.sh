#!/usr/bin/env bash
# Install the test dependencies (once) and run every test. Extra arguments go to pytest.
#   ./test.sh                 # the whole suite, on 2 workers (pytest-xdist; a module stays on one)
#   ./test.sh -k rpc -x       # a subset
#   BOURSE_TEST_WORKERS=0 ./test.sh   # serially (easier to read a failure); or any worker count
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv dev
workers="${BOURSE_TEST_WORKERS:-2}"
if [[ "$workers" == 0 ]]; then
  exec "$VENV/bin/python" -m pytest "$@"
fi
exec "$VENV/bin/python" -m pytest -n "$workers" --dist loadscope "$@"
