#!/usr/bin/env bash
# Install Bourse (once) and start the whole system on the paper exchange under pycron. Ctrl+C stops it.
#   ./start.sh [--data-dir DIR]
# pycron (configs/pycron.yaml) runs the paper exchange (TWS API on 127.0.0.1:7497), then the trader
# service (RPC :42001, ticks :42002, events :42003); its web API and page are on 127.0.0.1:8081.
# Ports and every other setting come from configs/*.yaml and BOURSE_<SECTION>_<KEY> variables.
set -euo pipefail
cd "$(dirname "$0")"

data_args=()
while (($#)); do
  case "$1" in
    --data-dir) [[ $# -ge 2 ]] || { echo "error: --data-dir needs a directory" >&2; exit 2; }
                data_args=(--data-dir "$2"); shift 2 ;;
    --data-dir=*) data_args=(--data-dir "${1#*=}"); shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (usage: ./start.sh [--data-dir DIR])" >&2; exit 2 ;;
  esac
done

source scripts/venv.sh
ensure_venv

# pycron starts the paper exchange, then the trader service once the exchange is ready, and keeps
# them running; Ctrl+C (or SIGTERM) stops everything in reverse order and leaves nothing behind.
exec "$VENV/bin/python" -m pycron --config configs/pycron.yaml "${data_args[@]}"
