# shellcheck shell=bash
# Sourced by start.sh and test.sh: create .venv if missing and install the project into it,
# skipping pip entirely when pyproject.toml has not changed since the last install.
VENV="${BOURSE_VENV:-.venv}"

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: Bourse needs Python >= 3.11 (tried python3.13, python3.12, python3.11, python3)" >&2
  return 1
}

ensure_venv() {
  local extra="${1:-}" target="." stamp want
  [[ -n "$extra" ]] && target=".[$extra]"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV" >&2
    "$(find_python)" -m venv "$VENV"
  fi
  stamp="$VENV/.bourse-installed${extra:+-$extra}"
  want="$(cksum < pyproject.toml)"
  # An install with the dev extra includes the plain one.
  if [[ -z "$extra" && -f "$VENV/.bourse-installed-dev" && "$(cat "$VENV/.bourse-installed-dev")" == "$want" ]]; then
    return 0
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "installing $target into $VENV" >&2
    local log="$VENV/install.log"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip &&
           "$VENV/bin/python" -m pip install --disable-pip-version-check -e "$target"; } >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "error: installing $target failed; the full log is $log" >&2
      return 1
    fi
    echo "$want" > "$stamp"
  fi
}
