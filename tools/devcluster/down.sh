#!/usr/bin/env bash
# Stop the local dev cluster started by tools/devcluster/up.sh and delete its
# runtime state (certs, etcd and Prometheus data, kubeconfig, env, logs).
# The binaries in .devcluster/bin are kept.
#
# Usage: tools/devcluster/down.sh [--keep-logs]
#   --keep-logs   keep .devcluster/logs (up.sh uses this after a failed start,
#                 so the logs can still be read)
#
# Only processes recorded in .devcluster/pids/ are stopped, and only if the
# PID still runs the binary it was recorded for (PIDs get reused).
set -euo pipefail

DEVCLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${DEVCLUSTER_DIR}/../.." && pwd)"
STATE="${DEVCLUSTER_STATE_DIR:-${REPO_ROOT}/.devcluster}"
PIDS="${STATE}/pids"

keep_logs=0
for arg in "$@"; do
  case "${arg}" in
    --keep-logs) keep_logs=1 ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "down.sh: unknown argument ${arg}" >&2; exit 2 ;;
  esac
done

log() { printf '[devcluster] %s\n' "$*" >&2; }

# Serialize with up.sh and other down.sh runs (see up.sh). up.sh sets
# DEVCLUSTER_LOCK_HELD=1 when it calls us while holding the lock.
if [[ "${DEVCLUSTER_LOCK_HELD:-0}" != 1 && -d "${STATE}" ]]; then
  exec 9>"${STATE}/lock"
  flock -w 900 9 || { log "ERROR: gave up waiting for ${STATE}/lock"; exit 1; }
fi

# alive PID -- running and not a zombie (in a container, PID 1 may never reap
# the orphans up.sh leaves behind, and kill -0 succeeds on a zombie).
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" != Z ]]
}

# stop NAME -- SIGTERM the recorded PID, SIGKILL after 20 s.
# A pid file holds the PID and, on its second line, a string that process's
# command line must contain (up.sh writes the binary's path there).
stop() {
  local name="$1" file="${PIDS}/$1.pid" pid marker cmdline i
  [[ -f "${file}" ]] || return 0
  pid="$(sed -n 1p "${file}")"
  marker="$(sed -n 2p "${file}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && alive "${pid}"; then
    cmdline="$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null || true)"
    if [[ -n "${marker}" && "${cmdline}" != *"${marker}"* ]]; then
      log "${name}: pid ${pid} no longer runs ${marker}; leaving it alone"
    else
      kill -TERM "${pid}" 2>/dev/null || true
      for ((i = 0; i < 40; i++)); do
        alive "${pid}" || break
        sleep 0.5
      done
      if alive "${pid}"; then
        log "${name} (pid ${pid}) ignored SIGTERM for 20s, killing"
        kill -KILL "${pid}" 2>/dev/null || true
      fi
      log "stopped ${name} (pid ${pid})"
    fi
  fi
  rm -f "${file}"
}

# Reverse start order: add-ons and anything else recorded there first (they are
# clients of the API server), then the clients of the core, etcd last (so
# nothing logs etcd errors).
CORE=(prometheus demand-exporter kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
if [[ -d "${PIDS}" ]]; then
  for f in "${PIDS}"/*.pid; do
    [[ -e "${f}" ]] || continue
    name="$(basename "${f}" .pid)"
    [[ " ${CORE[*]} " == *" ${name} "* ]] || stop "${name}"
  done
fi
for name in "${CORE[@]}"; do
  stop "${name}"
done

# Runtime state. Listed explicitly so .devcluster/bin (and anything else a
# user keeps there) survives.
# The lock file stays: deleting a file others may be waiting on breaks flock.
rm -rf "${STATE}/pids" "${STATE}/pki" "${STATE}/etcd" "${STATE}/prometheus" \
  "${STATE}/kwok" "${STATE}/run" "${STATE}/users" "${STATE}/kubeconfig" "${STATE}/env"
if ((keep_logs)); then
  log "kept logs in ${STATE}/logs"
else
  rm -rf "${STATE}/logs"
fi
log "dev cluster is down"
