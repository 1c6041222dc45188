#!/usr/bin/env bash
# Install Bourse (once) and start the whole system on the paper exchange. Ctrl+C stops it.
#   ./start.sh [--data-dir DIR]
# Until pycron lands this starts the services itself, in dependency order: the paper exchange
# (TWS API on 127.0.0.1:7497), then the trader service (RPC :42001, ticks :42002, events :42003).
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

pids=()
stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

# Start one service and wait for its ready line (not a fixed delay); its output goes on to ours.
start_service() {
  local name="$1" ready="$2" fifo line
  shift 2
  fifo="$(mktemp -u)"; mkfifo "$fifo"
  "$VENV/bin/python" -u "$@" "${data_args[@]}" >"$fifo" 2>&1 &
  pids+=("$!")
  exec {fd}<"$fifo"; rm -f "$fifo"
  while IFS= read -r -t 60 -u "$fd" line; do
    printf '%s\n' "$line"
    if [[ "$line" == *"$ready"* ]]; then
      cat <&"$fd" &   # keep relaying its output
      return 0
    fi
  done
  echo "error: $name did not become ready (see its output above)" >&2
  return 1
}

start_service "paper exchange" "exchange ready on" services/exchange_service.py
start_service "trader service" "trader service ready" services/trader_service.py
echo "Bourse is up. Try: ./cli.py ping   (Ctrl+C stops everything)"
wait -n "${pids[@]}"
