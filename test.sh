#!/usr/bin/env bash
# Install the test dependencies (once) and run every test. Extra arguments go to pytest.
#   ./test.sh                 # the whole suite
#   ./test.sh -k rpc -x       # a subset
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv dev
exec "$VENV/bin/python" -m pytest "$@"
