#!/usr/bin/env bash
# Build, run and manage Bourse in Docker (docker/compose.yaml; the whole guide: docs/deploy.md).
#
#   ./docker.sh [--dry-run] VERB [VERB...]
#
#   --build         build the image bourse:latest (paper-only unless TWS_URL and TWS_MAJOR_VRSN are set)
#   --run           start the container `bourse` in the background (creates empty docker/secrets/* if missing)
#   --go            --clean, --build, --run
#   --clean         stop and remove the container and its network (the data volume bourse-data stays)
#   --sync          copy the local code (cli.py configs pycron services strategies trader) into the
#                   running container; then restart what changed: ./docker.sh --shell, python cli.py pycron restart <job>
#   --logs [JOB]    follow the container's output (pycron's events), or one job's log (/data/logs/JOB.log)
#   --shell         a bash shell in the running container (as trader, in /opt/bourse)
#   --vnc           how to reach TWS/IB Gateway over VNC (ib mode)
#   --dry-run       print every command instead of running it (docker is not needed)
#   -h, --help      this help
#
# Settings come from the environment or docker/.env, e.g.:
#   BOURSE_BROKER=ib BOURSE_IBC_USER=me ./docker.sh --run       (password: docker/secrets/ib_password)
#   TWS_URL=https://... TWS_MAJOR_VRSN=1030 IB_APP=gateway ./docker.sh --build
# Ports are published on 127.0.0.1 only: VNC 5900, pycron web 8081, trader 42001-42003.
set -euo pipefail
cd "$(dirname "$0")"

COMPOSE=(docker compose -f docker/compose.yaml)
CONTAINER=bourse
SYNC_PATHS=(cli.py configs pycron services strategies trader)
dry_run=0

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit "${2:-1}"; }

# Run a command, or with --dry-run print it (shell-quoted, one line).
run() {
  if ((dry_run)); then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}

check_docker() {
  ((dry_run)) && return 0
  command -v docker >/dev/null 2>&1 ||
    die "docker is not installed (no 'docker' on PATH): install Docker Engine with the compose plugin (docs/deploy.md)"
  local out
  if ! out="$(docker info --format '{{.ServerVersion}}' 2>&1)"; then
    die "the Docker daemon is not running or not reachable ($(grep -m 1 . <<<"$out" || echo "docker info failed")): start it (sudo systemctl start docker) or add yourself to the docker group"
  fi
  docker compose version >/dev/null 2>&1 ||
    die "'docker compose' is missing: install the Docker Compose v2 plugin (docker-compose-plugin)"
}

check_running() {
  ((dry_run)) && return 0
  [[ "$(docker inspect --format '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" == true ]] ||
    die "the container '$CONTAINER' is not running: start it with ./docker.sh --run"
}

ensure_secrets() {
  local name
  for name in ib_password vnc_password; do
    if [[ ! -e "docker/secrets/$name" ]]; then
      if ((dry_run)); then
        echo "# create docker/secrets/$name (empty, mode 600)"
      else
        (umask 077 && mkdir -p docker/secrets && : >"docker/secrets/$name")
        echo "created an empty docker/secrets/$name (fill it in for BOURSE_BROKER=ib)" >&2
      fi
    fi
  done
}

do_build() { run "${COMPOSE[@]}" build; }
do_run() {
  ensure_secrets
  run "${COMPOSE[@]}" up -d
  ((dry_run)) || cat >&2 <<MSG
bourse is starting (BOURSE_BROKER=${BOURSE_BROKER:-paper}); follow it with ./docker.sh --logs
  pycron   http://127.0.0.1:8081/          (./docker.sh --logs trader, --shell)
  trader   tcp://127.0.0.1:42001 (RPC), 42002 (ticks), 42003 (events)
  VNC      ./docker.sh --vnc               (ib mode)
MSG
}
do_clean() { run "${COMPOSE[@]}" down --remove-orphans; }
do_sync() {
  check_running
  if ((dry_run)); then
    printf "tar -cf - --owner=0 --group=0 --exclude=__pycache__ '--exclude=*.pyc' %s | docker cp - %s:/opt/bourse\n" \
      "${SYNC_PATHS[*]}" "$CONTAINER"
  else
    tar -cf - --owner=0 --group=0 --exclude=__pycache__ --exclude='*.pyc' "${SYNC_PATHS[@]}" |
      docker cp - "$CONTAINER:/opt/bourse"
    echo "synced ${SYNC_PATHS[*]} into $CONTAINER:/opt/bourse; restart a job to load it:" >&2
    echo "  docker exec $CONTAINER python cli.py pycron restart trader" >&2
  fi
}
do_logs() {
  local job="$1"
  if [[ -z "$job" ]]; then
    run "${COMPOSE[@]}" logs --follow --tail 200
  else
    [[ "$job" =~ ^[a-z][a-z0-9_-]*$ ]] || die "--logs $job: a job name is lowercase letters, digits, '-' and '_'" 2
    check_running
    run docker exec "$CONTAINER" tail -n 200 -F "/data/logs/$job.log"
  fi
}
do_shell() { check_running; run docker exec -it "$CONTAINER" bash; }
do_vnc() {
  cat <<MSG
TWS / IB Gateway is on VNC at 127.0.0.1:5900 of this server (BOURSE_BROKER=ib only).
  On the server:      a VNC viewer to 127.0.0.1:5900
  From your machine:  ssh -N -L 5900:127.0.0.1:5900 <you>@<server>, then a VNC viewer to 127.0.0.1:5900
                      (macOS: open vnc://127.0.0.1:5900)
  Password:           docker/secrets/vnc_password (VNC uses its first 8 characters)
Use it for the first login, the IBKR Mobile 2FA prompt and any dialog IBC cannot answer.
MSG
}

verbs=()
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    --build | --run | --go | --clean | --sync | --shell | --vnc) verbs+=("$1") ;;
    --logs)
      if [[ $# -ge 2 && "$2" != -* ]]; then verbs+=("--logs=$2"); shift; else verbs+=("--logs="); fi ;;
    *) die "unknown argument '$1' (./docker.sh --help)" 2 ;;
  esac
  shift
done
((${#verbs[@]})) || { usage >&2; die "no verb given (./docker.sh --help)" 2; }

for verb in "${verbs[@]}"; do
  [[ "$verb" == --vnc ]] || { check_docker; break; }
done

for verb in "${verbs[@]}"; do
  case "$verb" in
    --build) do_build ;;
    --run) do_run ;;
    --go) do_clean; do_build; do_run ;;
    --clean) do_clean ;;
    --sync) do_sync ;;
    --logs=*) do_logs "${verb#--logs=}" ;;
    --shell) do_shell ;;
    --vnc) do_vnc ;;
  esac
done
