#!/usr/bin/env bash
# Install Bourse (once) and start the whole system on the paper exchange.
#   ./start.sh [--data-dir DIR] [--config configs/trader.yaml]
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv
exec "$VENV/bin/python" services/trader_service.py "$@"
