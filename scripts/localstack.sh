#!/usr/bin/env bash
# LocalStack for local runs and tests: install, start, stop, status.
#
# Usage: scripts/localstack.sh {install|start|stop|status}
#
# With a working Docker engine (`docker info` succeeds) it runs the pinned LocalStack image.
# Without one (these machines) it runs LocalStack on the host from its own Python 3.13 venv in
# .localstack/venv. Releases newer than the pin need an account token, hence the exact pins.
# Everything it writes stays in .localstack/ (venv, and per port: state, pidfile, log): without
# OVERRIDE_IN_DOCKER=0 and FILESYSTEM_ROOT the host runtime writes to /var/lib and /etc.
#
# Idempotent: `start` reuses a LocalStack this script started (pidfile or container id), and
# also one already answering on the port (then `stop` leaves it alone, it is not ours).
# `stop` ends only what this script started: the recorded process group or container.
#
# Environment overrides:
#   LOCALSTACK_PORT      gateway port on 127.0.0.1 (default 4566)
#   LOCALSTACK_PYTHON    Python 3.13 interpreter for the host venv
#   LOCALSTACK_DOCKER    auto (default) | 0 (never use Docker) | 1 (require Docker)
#   LOCALSTACK_IMAGE     container image (default localstack/localstack:$LOCALSTACK_VERSION)
#   LOCALSTACK_WAIT      seconds to wait for health (default 60)
set -euo pipefail

LOCALSTACK_VERSION=2026.3.0
PINS=(
  "localstack-core[runtime]==${LOCALSTACK_VERSION}"
  "cbor2<6"
  "pyopenssl==25.1.0"
  "cryptography>=45.0.1,<46"
  "service_identity<25"
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${ROOT}/.localstack"
VENV="${STATE}/venv"
PORT="${LOCALSTACK_PORT:-4566}"
# Per port, so a second instance (another LOCALSTACK_PORT) never takes over the first one's files.
PIDFILE="${STATE}/localstack-${PORT}.pid"
CIDFILE="${STATE}/container-${PORT}.id"
LOG="${STATE}/localstack-${PORT}.log"
DATA="${STATE}/fs-${PORT}"
ENDPOINT="http://127.0.0.1:${PORT}"
WAIT="${LOCALSTACK_WAIT:-60}"
IMAGE="${LOCALSTACK_IMAGE:-localstack/localstack:${LOCALSTACK_VERSION}}"

log() { echo "localstack: $*" >&2; }
die() {
  log "$*"
  exit 1
}

healthy() {
  curl -fsS --max-time 2 "${ENDPOINT}/_localstack/health" >/dev/null 2>&1
}

use_docker() {
  case "${LOCALSTACK_DOCKER:-auto}" in
  0) return 1 ;;
  1)
    docker info >/dev/null 2>&1 || die "LOCALSTACK_DOCKER=1 but 'docker info' fails"
    return 0
    ;;
  *) command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 ;;
  esac
}

find_python() {
  local candidate
  for candidate in "${LOCALSTACK_PYTHON:-}" "${HOME}/.pyenv/versions/3.13.0/bin/python3.13" \
    "${HOME}"/.pyenv/versions/3.13*/bin/python3.13 "$(command -v python3.13 || true)"; do
    if [[ -n "${candidate}" && -x "${candidate}" ]] &&
      "${candidate}" -c 'import sys, venv; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
      echo "${candidate}"
      return 0
    fi
  done
  die "no Python 3.13 found (tried LOCALSTACK_PYTHON, ~/.pyenv/versions/3.13*, python3.13 on" \
    "PATH). LocalStack ${LOCALSTACK_VERSION} needs 3.13 on the host; install one (e.g." \
    "'pyenv install 3.13') and set LOCALSTACK_PYTHON, or run with a Docker engine."
}

install() {
  local stamp="${VENV}/.pins" wanted
  wanted="$(printf '%s\n' "${PINS[@]}")"
  if [[ -x "${VENV}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
    return 0
  fi
  local python started
  python="$(find_python)"
  started=${SECONDS}
  log "creating ${VENV} with ${python}"
  rm -rf "${VENV}"
  mkdir -p "${STATE}"
  "${python}" -m venv "${VENV}"
  # pip's output goes to a file: this machine's index config makes it print pages of warnings.
  "${VENV}/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" \
    >"${STATE}/install.log" 2>&1 || {
    tail -n 20 "${STATE}/install.log" >&2
    die "pip install failed (full output: ${STATE}/install.log)"
  }
  printf '%s\n' "${wanted}" >"${stamp}"
  log "installed in $((SECONDS - started)) s"
}

our_pid() {
  # The recorded PID, if that process is still LocalStack (guards against PID reuse).
  [[ -f "${PIDFILE}" ]] || return 1
  local pid
  pid="$(cat "${PIDFILE}")"
  [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null &&
    grep -q 'localstack.runtime.main' "/proc/${pid}/cmdline" 2>/dev/null && echo "${pid}"
}

our_container() {
  [[ -f "${CIDFILE}" ]] || return 1
  local cid
  cid="$(cat "${CIDFILE}")"
  [[ "$(docker inspect -f '{{.State.Running}}' "${cid}" 2>/dev/null)" == true ]] && echo "${cid}"
}

start_host() {
  install
  mkdir -p "${DATA}"
  # Launched through Popen so that the recorded PID is LocalStack itself, in a session of its
  # own (`stop` ends it and its helpers by that one group id; it outlives make or pytest), and it
  # inherits no descriptor of this script (the lock of `serialized`).
  # GATEWAY_SERVER=hypercorn: the default (twisted) server ignores the host of GATEWAY_LISTEN and
  # listens on 0.0.0.0; hypercorn binds 127.0.0.1 only.
  env OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="${DATA}" GATEWAY_SERVER=hypercorn \
    GATEWAY_LISTEN="127.0.0.1:${PORT}" LOCALSTACK_HOST="127.0.0.1:${PORT}" \
    SQS_ENDPOINT_STRATEGY=path DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
    "${VENV}/bin/python" -c '
import subprocess, sys
with open(sys.argv[1], "wb") as log:
    process = subprocess.Popen(
        [sys.executable, "-m", "localstack.runtime.main"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
print(process.pid)
' "${LOG}" >"${PIDFILE}"
}

start_docker() {
  mkdir -p "${STATE}"
  docker run -d --rm --name "batglitch-localstack-${PORT}" -p "127.0.0.1:${PORT}:4566" \
    -e LOCALSTACK_HOST="127.0.0.1:${PORT}" -e SQS_ENDPOINT_STRATEGY=path \
    -e DISABLE_EVENTS=1 -e SKIP_SSL_CERT_DOWNLOAD=1 -e LOCALSTACK_AUTH_TOKEN "${IMAGE}" >"${CIDFILE}"
}

wait_healthy() {
  local started=${SECONDS}
  until healthy; do
    if ((SECONDS - started >= WAIT)); then
      log "not healthy after ${WAIT} s; last log lines:"
      tail -n 20 "${LOG}" >&2 2>/dev/null || true
      return 1
    fi
    if [[ -f "${PIDFILE}" ]] && ! our_pid >/dev/null; then
      log "LocalStack exited during startup; last log lines:"
      tail -n 20 "${LOG}" >&2 || true
      rm -f "${PIDFILE}"
      return 1
    fi
    sleep 0.5
  done
  log "healthy at ${ENDPOINT} after $((SECONDS - started)) s"
}

start() {
  if our_pid >/dev/null || { use_docker && our_container >/dev/null; }; then
    wait_healthy
    return
  fi
  rm -f "${PIDFILE}" "${CIDFILE}"
  if healthy; then
    log "something not started by this script already answers at ${ENDPOINT}; reusing it"
    return 0
  fi
  if use_docker; then
    log "starting ${IMAGE} on ${ENDPOINT}"
    start_docker
  else
    log "starting on the host at ${ENDPOINT} (log: ${LOG})"
    start_host
  fi
  wait_healthy
}

stop() {
  local pid cid waited=0
  if pid="$(our_pid)"; then
    log "stopping PID ${pid}"
    kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
    while kill -0 "${pid}" 2>/dev/null && ((waited < 30)); do
      sleep 0.5
      waited=$((waited + 1))
    done
    if kill -0 "${pid}" 2>/dev/null; then
      log "PID ${pid} ignored SIGTERM for 15 s; sending SIGKILL"
      kill -KILL -- "-${pid}" 2>/dev/null || true
    fi
  elif [[ -f "${CIDFILE}" ]] && cid="$(our_container)"; then
    log "stopping container ${cid:0:12}"
    docker stop -t 15 "${cid}" >/dev/null
  else
    log "nothing started by this script is running"
  fi
  rm -f "${PIDFILE}" "${CIDFILE}"
}

status() {
  local pid cid
  if pid="$(our_pid)"; then
    echo "host PID ${pid} at ${ENDPOINT}"
  elif [[ -f "${CIDFILE}" ]] && cid="$(our_container)"; then
    echo "container ${cid:0:12} at ${ENDPOINT}"
  elif healthy; then
    echo "not ours, but something answers at ${ENDPOINT}"
  else
    echo "not running"
    return 1
  fi
  healthy || {
    echo "not healthy yet"
    return 1
  }
}

serialized() {
  # One start/stop at a time per port: two test sessions starting together would otherwise
  # both launch, and the loser would overwrite the winner's pidfile.
  mkdir -p "${STATE}"
  exec 9>"${STATE}/lock-${PORT}"
  flock -w "$((WAIT + 600))" 9 || die "another start/stop holds ${STATE}/lock-${PORT}"
  "$@"
}

case "${1:-}" in
install) serialized install ;;
start) serialized start ;;
stop) serialized stop ;;
status) status ;;
*) die "usage: $0 {install|start|stop|status}" ;;
esac
