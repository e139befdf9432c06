#!/usr/bin/env bash
# Smoke test for the binaries built by tools/build-binaries.sh:
# start etcd and kube-apiserver on 127.0.0.1 with a throw-away PKI and data
# dir, check `kubectl get --raw /readyz` says ok, then stop both and delete
# everything it created.
#
# Usage: tools/smoke-apiserver.sh [BIN_DIR]     (default: <repo>/.devcluster/bin)
#
# Env: SMOKE_TIMEOUT  seconds to wait for readiness (default 180; the first
#                     start on a loaded 2-core machine can take a while)
#      KEEP_TMP=1     keep the temp dir (certs, kubeconfig, logs) for debugging
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/.." && pwd)"
BIN_DIR="${1:-${REPO_ROOT}/.devcluster/bin}"
TIMEOUT="${SMOKE_TIMEOUT:-180}"

log() { printf '[smoke] %s\n' "$*" >&2; }
for b in etcd kube-apiserver kubectl; do
  [[ -x "${BIN_DIR}/${b}" ]] || { log "missing ${BIN_DIR}/${b}; run tools/build-binaries.sh first"; exit 1; }
done

TMP="$(mktemp -d "${TMPDIR:-/tmp}/smoke-apiserver.XXXXXX")"
ETCD_PID=""
APISERVER_PID=""

stop() { # stop PID NAME -- SIGTERM, then SIGKILL after 15s
  local pid="$1" name="$2" i
  [[ -n "${pid}" ]] && kill -0 "${pid}" 2>/dev/null || return 0
  kill -TERM "${pid}" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    kill -0 "${pid}" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "${pid}" 2>/dev/null; then
    log "${name} (pid ${pid}) did not stop, killing"
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  wait "${pid}" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)); then # show the logs before shutdown noise is appended to them
    for f in etcd.log kube-apiserver.log; do
      [[ -f "${TMP}/${f}" ]] && { log "---- last lines of ${f}"; tail -n 25 "${TMP}/${f}" >&2; }
    done
  fi
  stop "${APISERVER_PID}" kube-apiserver
  stop "${ETCD_PID}" etcd
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then
    log "kept ${TMP}"
  else
    rm -rf "${TMP}"
  fi
  exit "${rc}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
USED_PORTS=" "
free_port() { # free_port VAR -- a random unused port in 20000-39999, not handed out before
  local p
  while :; do
    p=$((20000 + RANDOM % 20000))
    [[ "${USED_PORTS}" == *" ${p} "* ]] && continue
    port_in_use "${p}" && continue
    USED_PORTS+="${p} "
    printf -v "$1" '%s' "${p}"
    return
  done
}
free_port ETCD_CLIENT_PORT
free_port ETCD_PEER_PORT
free_port API_PORT

log "generating certs in ${TMP}/pki"
"${TOOLS_DIR}/gen-certs.sh" "${TMP}/pki"
PKI="${TMP}/pki"

log "starting etcd on 127.0.0.1:${ETCD_CLIENT_PORT}"
"${BIN_DIR}/etcd" \
  --name=node0 \
  --data-dir="${TMP}/etcd-data" \
  --listen-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --advertise-client-urls="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster="node0=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster-state=new \
  --unsafe-no-fsync=true \
  --auto-compaction-retention=1 \
  --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
  --log-level=warn \
  >"${TMP}/etcd.log" 2>&1 &
ETCD_PID=$!

deadline=$((SECONDS + TIMEOUT))
until port_in_use "${ETCD_CLIENT_PORT}"; do
  kill -0 "${ETCD_PID}" 2>/dev/null || { log "etcd exited early"; exit 1; }
  ((SECONDS < deadline)) || { log "etcd not listening after ${TIMEOUT}s"; exit 1; }
  sleep 0.5
done
log "etcd is listening (pid ${ETCD_PID})"

log "starting kube-apiserver on https://127.0.0.1:${API_PORT}"
# Flags modelled on controller-runtime envtest and kwokctl's binary runtime.
"${BIN_DIR}/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:${ETCD_CLIENT_PORT}" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="${API_PORT}" \
  --cert-dir="${TMP}/apiserver-certs" \
  --tls-cert-file="${PKI}/apiserver.crt" \
  --tls-private-key-file="${PKI}/apiserver.key" \
  --client-ca-file="${PKI}/ca.crt" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="${PKI}/sa.pub" \
  --service-account-signing-key-file="${PKI}/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --authorization-mode=Node,RBAC \
  --allow-privileged=true \
  >"${TMP}/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

KCFG="${TMP}/kubeconfig"
k() { "${BIN_DIR}/kubectl" --kubeconfig="${KCFG}" "$@"; }
k config set-cluster smoke --server="https://127.0.0.1:${API_PORT}" \
  --certificate-authority="${PKI}/ca.crt" --embed-certs=true >/dev/null
k config set-credentials admin --client-certificate="${PKI}/admin.crt" \
  --client-key="${PKI}/admin.key" --embed-certs=true >/dev/null
k config set-context smoke --cluster=smoke --user=admin >/dev/null
k config use-context smoke >/dev/null

start=${SECONDS}
deadline=$((SECONDS + TIMEOUT))
ready=""
while ((SECONDS < deadline)); do
  kill -0 "${APISERVER_PID}" 2>/dev/null || { log "kube-apiserver exited early"; exit 1; }
  if ready="$(k get --raw /readyz --request-timeout=5s 2>/dev/null)" && [[ "${ready}" == ok ]]; then
    break
  fi
  ready=""
  sleep 1
done
if [[ "${ready}" != ok ]]; then
  log "kube-apiserver not ready after ${TIMEOUT}s; /readyz?verbose says:"
  k get --raw '/readyz?verbose' --request-timeout=5s >&2 || true
  exit 1
fi
log "GET /readyz -> ${ready} (after $((SECONDS - start))s)"

k version
k get --raw /livez >/dev/null
k get namespaces
k create namespace smoke-test >/dev/null
k get namespace smoke-test -o name
k delete namespace smoke-test --wait=false >/dev/null

echo "SMOKE TEST PASSED: etcd + kube-apiserver + kubectl (/readyz = ${ready})"
