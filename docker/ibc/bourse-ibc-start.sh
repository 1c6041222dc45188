#!/usr/bin/env bash
# Run TWS or IB Gateway under IBC in the foreground: the `tws` job of configs/pycron_docker.yaml
# (installed as /opt/ibc/bourse-ibc-start.sh; `-inline` is accepted, foreground is the only mode).
#
# It does what IBC's twsstart.sh / gatewaystart.sh do (APP=TWS or GATEWAY picks between them), but
# takes every setting from the environment docker/entrypoint.sh exported (TWS_MAJOR_VRSN, IBC_INI,
# TRADING_MODE, TWOFA_TIMEOUT_ACTION, IBC_PATH, TWS_PATH, TWS_SETTINGS_PATH, JAVA_PATH), where those
# scripts assign fixed values, and it leaves IBC's output on stdout (their LOG_PATH sends it to a
# file): pycron keeps it in <data-dir>/logs/tws.log and waits for "Login has completed" there.
# IBC's ibcstart.sh then loops by itself over TWS's daily auto-restart and, with
# TWOFA_TIMEOUT_ACTION=restart, over second-factor timeouts; SIGTERM (pycron's stop) reaches Java.
set -euo pipefail

for arg in "$@"; do
  [[ "$arg" == -inline ]] || { echo "error: unknown argument '$arg' (usage: $0 [-inline])" >&2; exit 2; }
done

missing=()
for name in APP TWS_MAJOR_VRSN IBC_PATH IBC_INI TWS_PATH TWS_SETTINGS_PATH TRADING_MODE TWOFA_TIMEOUT_ACTION; do
  [[ -n "${!name:-}" ]] || missing+=("$name")
done
if ((${#missing[@]})); then
  echo "error: ${missing[*]} not set: this script runs under pycron as started by docker/entrypoint.sh (BOURSE_BROKER=ib)" >&2
  exit 2
fi

case "${APP^^}" in
  GATEWAY) app_args=(-g) ;;   # gatewaystart.sh
  TWS) app_args=() ;;         # twsstart.sh
  *) echo "error: APP=$APP: expected TWS or GATEWAY" >&2; exit 2 ;;
esac
java_args=()
if [[ -n "${JAVA_PATH:-}" ]]; then java_args=("--java-path=$JAVA_PATH"); fi

# Credentials come from config.ini (mode 0600), never from the command line or the environment.
unset TWSUSERID TWSPASSWORD FIXUSERID FIXPASSWORD
echo "bourse-ibc-start: IBC for ${APP} ${TWS_MAJOR_VRSN} (${TRADING_MODE}), settings ${TWS_SETTINGS_PATH}, ini ${IBC_INI}"
exec "${BOURSE_IBC_SCRIPT:-$IBC_PATH/scripts/ibcstart.sh}" "$TWS_MAJOR_VRSN" "${app_args[@]}" \
  "--tws-path=$TWS_PATH" "--tws-settings-path=$TWS_SETTINGS_PATH" "--ibc-path=$IBC_PATH" \
  "--ibc-ini=$IBC_INI" "--mode=$TRADING_MODE" "--on2fatimeout=$TWOFA_TIMEOUT_ACTION" "${java_args[@]}"
