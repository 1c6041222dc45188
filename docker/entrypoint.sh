#!/usr/bin/env bash
# The Bourse container's entrypoint (run under tini as the non-root `trader` user): picks the mode,
# prepares TWS/IB Gateway when there is one, then replaces itself with pycron, which runs everything.
#
#   BOURSE_BROKER=paper (default)  python -m pycron --config configs/pycron.yaml
#                                  the built-in paper exchange: no IB account, no TWS, no VNC
#   BOURSE_BROKER=ib               python -m pycron --config configs/pycron_docker.yaml
#                                  Xvfb -> x11vnc -> TWS or IB Gateway under IBC -> trader -> strategies
#
# In ib mode it first writes the VNC password file (BOURSE_VNC_PASSWORD_FILE, a Docker secret, else
# VNC_PASSWORD), renders IBC's config.ini (docker/render_ibc.py: BOURSE_IBC_USER,
# BOURSE_IBC_PASSWORD_FILE, BOURSE_RISK_TRADING_MODE, BOURSE_IBC_*) and exports what
# /opt/ibc/bourse-ibc-start.sh needs. Secrets and IBC-only variables are removed from the
# environment pycron and its jobs inherit. Any problem: one `error:` line, exit status 2.
#
# Arguments starting with '-' go to pycron (`--check`); anything else is run instead of pycron
# (`docker run --rm -it bourse:latest bash`).
#
# Overridable for tests and unusual layouts: BOURSE_HOME (/opt/bourse), BOURSE_PYTHON (python),
# BOURSE_IBC_INSTALL_INFO (/opt/ib/bourse-install.env), BOURSE_X11VNC (x11vnc), IBC_PATH (/opt/ibc),
# TWS_PATH (/opt/ib), TWS_SETTINGS_PATH ($BOURSE_DATA_DIR/tws), IBC_INI ($HOME/ibc/config.ini).
set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 2
}

BOURSE_HOME="${BOURSE_HOME:-/opt/bourse}"
PYTHON="${BOURSE_PYTHON:-python}"
IB_INSTALL_INFO="${BOURSE_IBC_INSTALL_INFO:-/opt/ib/bourse-install.env}"

# The trader's config takes every BOURSE_IB_<KEY> variable as a key of its `ib:` section and refuses
# unknown ones: IBC's own settings are BOURSE_IBC_*, and a password never comes from a variable.
reject_misnamed() {
  local name
  for name in BOURSE_IB_USER BOURSE_IB_PASSWORD BOURSE_IB_PASSWORD_FILE BOURSE_IB_APP BOURSE_IBC_PASSWORD; do
    if [[ -n "${!name+x}" ]]; then
      case "$name" in
        BOURSE_IB_PASSWORD | BOURSE_IBC_PASSWORD)
          die "$name: the IB password is never taken from a variable: put it in a file (a Docker secret) named by BOURSE_IBC_PASSWORD_FILE" ;;
        *)
          die "$name is not a setting (the trader would refuse it as an unknown key of its ib: section): use BOURSE_IBC_${name#BOURSE_IB_}" ;;
      esac
    fi
  done
}

# APP and TWS_MAJOR_VRSN of the TWS/Gateway installed at build time (docker/Dockerfile, TWS_URL).
read_install_info() {
  [[ -f "$IB_INSTALL_INFO" ]] ||
    die "BOURSE_BROKER=ib, but this image has no TWS/IB Gateway (it was built without TWS_URL): rebuild with TWS_URL and TWS_MAJOR_VRSN (docs/deploy.md), or run BOURSE_BROKER=paper"
  local key value
  installed_app="" installed_version=""
  while IFS='=' read -r key value; do
    case "$key" in
      APP) installed_app="$value" ;;
      TWS_MAJOR_VRSN) installed_version="$value" ;;
    esac
  done <"$IB_INSTALL_INFO"
  [[ -n "$installed_app" && -n "$installed_version" ]] || die "$IB_INSTALL_INFO: expected APP= and TWS_MAJOR_VRSN= lines"
}

write_vnc_password() {
  local password=""
  if [[ -n "${BOURSE_VNC_PASSWORD_FILE:-}" ]]; then
    [[ -r "$BOURSE_VNC_PASSWORD_FILE" ]] || die "BOURSE_VNC_PASSWORD_FILE=$BOURSE_VNC_PASSWORD_FILE: cannot read it"
    IFS= read -r password <"$BOURSE_VNC_PASSWORD_FILE" || true
    [[ -n "$password" ]] || die "BOURSE_VNC_PASSWORD_FILE=$BOURSE_VNC_PASSWORD_FILE: the file is empty"
  elif [[ -n "${VNC_PASSWORD:-}" ]]; then
    password="$VNC_PASSWORD"
  else
    die "no VNC password: set BOURSE_VNC_PASSWORD_FILE (a Docker secret, docker/secrets/vnc_password) or VNC_PASSWORD"
  fi
  (( ${#password} <= 8 )) || echo "note: VNC uses only the first 8 characters of the VNC password" >&2
  mkdir -p "$HOME/.vnc"
  chmod 700 "$HOME/.vnc"
  # Nothing else runs in the container yet, so the password on this command line is seen by no one.
  "${BOURSE_X11VNC:-x11vnc}" -storepasswd "$password" "$HOME/.vnc/passwd" >/dev/null 2>&1 ||
    die "x11vnc -storepasswd could not write $HOME/.vnc/passwd"
  chmod 600 "$HOME/.vnc/passwd"
}

prepare_ib() {
  read_install_info
  local app="${BOURSE_IBC_APP:-$installed_app}"
  case "$app" in
    tws | gateway) ;;
    *) die "BOURSE_IBC_APP=$app: expected tws or gateway" ;;
  esac
  [[ "$app" == "$installed_app" ]] ||
    die "BOURSE_IBC_APP=$app, but this image has the $installed_app installed (build arg IB_APP): rebuild or leave BOURSE_IBC_APP unset"

  write_vnc_password

  export IBC_PATH="${IBC_PATH:-/opt/ibc}"
  export TWS_PATH="${TWS_PATH:-/opt/ib}"
  export TWS_SETTINGS_PATH="${TWS_SETTINGS_PATH:-$BOURSE_DATA_DIR/tws}"
  export IBC_INI="${IBC_INI:-$HOME/ibc/config.ini}"
  export TWS_MAJOR_VRSN="$installed_version"
  export JAVA_PATH="${JAVA_PATH:-}"   # empty: the JRE bundled with TWS/Gateway
  export BOURSE_IBC_SCRIPT="${BOURSE_IBC_SCRIPT:-$IBC_PATH/scripts/ibcstart.sh}"
  if [[ "$app" == gateway ]]; then export APP=GATEWAY; else export APP=TWS; fi
  mkdir -p "$TWS_SETTINGS_PATH"

  # config.ini (mode 0600) and the start script's TRADING_MODE / TWOFA_TIMEOUT_ACTION
  local rendered line
  rendered="$(umask 077 && "$PYTHON" "$BOURSE_HOME/docker/render_ibc.py" --out "$IBC_INI" --print-env)" ||
    exit 2
  while IFS= read -r line; do
    case "$line" in
      TRADING_MODE=* | TWOFA_TIMEOUT_ACTION=*) export "${line?}" ;;
    esac
  done <<<"$rendered"

  # The trader reaches TWS/Gateway on the port IBC sets; the trading mode is the risk gate's too.
  export BOURSE_IB_PORT=4002
  export BOURSE_RISK_TRADING_MODE="$TRADING_MODE"
  unset BOURSE_IBC_USER BOURSE_IBC_PASSWORD_FILE BOURSE_IBC_APP
}

# CurveZMQ keys in the data volume, made once: the trader's (server) and those of its clients in
# the container (cli.py and the healthcheck, the strategy shards), which it admits. Needed when the
# trader's endpoints listen beyond the container's loopback (compose publishes them): the trader
# refuses that without curve. Another machine's client: `cli.py keys authorize <its .key>`.
ensure_curve_keys() {
  local name keys="$BOURSE_DATA_DIR/keys"
  for name in trader cli strategies; do
    [[ -f "$keys/$name.key_secret" ]] && continue
    if [[ "$name" == trader ]]; then
      "$PYTHON" cli.py keys generate "$name" >&2 || exit 2
    else
      "$PYTHON" cli.py keys generate "$name" --authorize >&2 || exit 2
    fi
  done
}

reject_misnamed
export BOURSE_DATA_DIR="${BOURSE_DATA_DIR:-/data}"
broker="${BOURSE_BROKER:-paper}"
case "$broker" in
  paper) config=configs/pycron.yaml ;;
  ib) config=configs/pycron_docker.yaml ;;
  *) die "BOURSE_BROKER=$broker: expected paper (the built-in paper exchange) or ib (TWS/IB Gateway under IBC)" ;;
esac

if [[ $# -gt 0 && "$1" != -* ]]; then
  exec "$@"
fi

cd "$BOURSE_HOME"
mkdir -p "$BOURSE_DATA_DIR/logs"
if [[ "${BOURSE_ZMQ_CURVE_ENABLED:-false}" == true ]]; then
  ensure_curve_keys
fi
if [[ "$broker" == ib ]]; then
  prepare_ib
fi
unset VNC_PASSWORD BOURSE_VNC_PASSWORD_FILE
echo "bourse: BOURSE_BROKER=$broker: python -m pycron --config $config (data: $BOURSE_DATA_DIR)" >&2
exec "$PYTHON" -m pycron --config "$config" "$@"
