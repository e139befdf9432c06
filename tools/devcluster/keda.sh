#!/usr/bin/env bash
# KEDA on the local dev cluster: its operator and its metrics adapter (external.metrics.k8s.io),
# built by tools/build-addons.sh into $STATE/bin.
#
# Usage: tools/devcluster/keda.sh installed|up|down
#
#   installed  exit 0 when the binaries and CRDs are built (tools/build-addons.sh)
#   up    apply KEDA's CRDs, the keda namespace and the APIService, start keda-operator and
#         keda-metrics-apiserver, wait until the API server serves external metrics through the
#         adapter. Does nothing when both already run and answer.
#   down  stop this add-on's two processes (the CRDs and objects stay, as the cluster's do).
#
# Loopback, but for one port: the API server reaches the adapter by its Service's Endpoints itself
# (--enable-aggregator-routing, set by up.sh: no kube-proxy here), Endpoints may not point at
# 127.0.0.0/8 and the aggregator refuses ExternalName Services, so the adapter listens on the
# machine's own address (DEVCLUSTER_KEDA_ADDRESS, default: the source address of the default
# route). It serves only requests the API server's front-proxy certificate vouches for. The
# operator and the adapter talk gRPC over TLS on loopback with a throw-away CA made here.
#
# Environment: DEVCLUSTER_STATE_DIR (default <repo>/.devcluster), DEVCLUSTER_TIMEOUT (seconds,
# default 120), DEVCLUSTER_KEDA_<NAME>_PORT to move a port (names in the PORTS block).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${DEVCLUSTER_STATE_DIR:-${REPO_ROOT}/.devcluster}"
BIN="${STATE}/bin"
LOGS="${STATE}/logs"
PIDS="${STATE}/pids"
KCFG="${STATE}/kubeconfig"
CRDS="${STATE}/addon-crds"
CERTS="${STATE}/keda/certs"
TIMEOUT="${DEVCLUSTER_TIMEOUT:-120}"
NAMESPACE=keda

# ---------------------------------------------------------------- PORTS (312xx, loopback)
ADAPTER_PORT="${DEVCLUSTER_KEDA_ADAPTER_PORT:-31286}"          # external.metrics.k8s.io (HTTPS)
GRPC_PORT="${DEVCLUSTER_KEDA_GRPC_PORT:-31287}"                # operator's metrics service (gRPC)
ADAPTER_METRICS_PORT="${DEVCLUSTER_KEDA_ADAPTER_METRICS_PORT:-31288}"
OPERATOR_METRICS_PORT="${DEVCLUSTER_KEDA_OPERATOR_METRICS_PORT:-31289}"
OPERATOR_HEALTH_PORT="${DEVCLUSTER_KEDA_OPERATOR_HEALTH_PORT:-31290}"

# The default route's source address; a UDP connect sends nothing, and python3 is there when iproute2
# (a minimal image) is not.
ADDRESS="${DEVCLUSTER_KEDA_ADDRESS:-$(python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("192.0.2.1", 9))
print(s.getsockname()[0])' 2>/dev/null || true)}"

log() { printf 'keda: %s\n' "$*" >&2; }
die() {
  log "$1"
  if [[ -n "${2:-}" && -f "${LOGS}/$2.log" ]]; then
    log "---- last 30 lines of ${LOGS}/$2.log"
    tail -n 30 "${LOGS}/$2.log" >&2
  fi
  exit 1
}
kubectl() { "${BIN}/kubectl" --kubeconfig="${KCFG}" --request-timeout=20s "$@"; }

pid_of() { [[ -f "${PIDS}/$1.pid" ]] && head -n 1 "${PIDS}/$1.pid"; }
running() {  # NAME: its pid file names a live process of its binary
  local pid
  pid="$(pid_of "$1")" || return 1
  [[ -n "${pid}" && -d "/proc/${pid}" ]] && [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" == "$(readlink -f "${BIN}/$1")"* ]]
}
healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:${OPERATOR_HEALTH_PORT}/healthz" >/dev/null 2>&1 &&
    kubectl get --raw /apis/external.metrics.k8s.io/v1beta1 >/dev/null 2>&1
}

start() {  # NAME ARGS...: as up.sh starts its components (own session, pid file "PID\nBINARY")
  local name="$1"
  shift
  mkdir -p "${LOGS}" "${PIDS}"
  setsid "${BIN}/${name}" "$@" >"${LOGS}/${name}.log" 2>&1 </dev/null 9>&- &
  printf '%s\n%s\n' "$!" "${BIN}/${name}" >"${PIDS}/${name}.pid"
}

stop() {  # NAME: stop it if its pid file names a live process of its binary
  local name="$1" pid
  if running "${name}"; then
    pid="$(pid_of "${name}")"
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 1 50); do [[ -d "/proc/${pid}" ]] || break; sleep 0.2; done
    [[ -d "/proc/${pid}" ]] && kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${PIDS}/${name}.pid"
}

certs() {  # a CA and one serving/client certificate for the operator's gRPC and the adapter
  [[ -s "${CERTS}/tls.key" && -s "${CERTS}/ca.crt" ]] && openssl x509 -checkend 3600 -noout -in "${CERTS}/tls.crt" \
    >/dev/null 2>&1 && return 0
  mkdir -p "${CERTS}"
  (
    cd "${CERTS}"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 -keyout ca.key -out ca.crt -subj "/CN=keda-devcluster-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout tls.key -out tls.csr -subj "/CN=keda-operator" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:keda-operator.${NAMESPACE}.svc,DNS:keda-operator.${NAMESPACE}.svc.cluster.local,DNS:keda-metrics-apiserver.${NAMESPACE}.svc" \
      "extendedKeyUsage=serverAuth,clientAuth" >ext.cnf
    openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 -extfile ext.cnf \
      -out tls.crt 2>/dev/null
    rm -f tls.csr ext.cnf
  ) || die "could not make certificates in ${CERTS} (openssl)"
}

objects() {
  local crd
  for crd in keda.sh_scaledobjects keda.sh_scaledjobs keda.sh_triggerauthentications keda.sh_clustertriggerauthentications \
    eventing.keda.sh_cloudeventsources eventing.keda.sh_clustercloudeventsources; do
    [[ -f "${CRDS}/${crd}.yaml" ]] || die "missing ${CRDS}/${crd}.yaml: run tools/build-addons.sh"
    kubectl apply --server-side --force-conflicts -f "${CRDS}/${crd}.yaml" >/dev/null
  done
  kubectl apply --server-side -f - 2> >(grep -v "Endpoints is deprecated" >&2) >/dev/null <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: ${NAMESPACE}
---
# No selector: its Endpoints name the adapter's address (the API server routes to them itself).
apiVersion: v1
kind: Service
metadata:
  name: keda-metrics-apiserver
  namespace: ${NAMESPACE}
spec:
  ports:
  - name: https
    port: 443
    targetPort: ${ADAPTER_PORT}
---
apiVersion: v1
kind: Endpoints
metadata:
  name: keda-metrics-apiserver
  namespace: ${NAMESPACE}
subsets:
- addresses:
  - ip: ${ADDRESS}
  ports:
  - name: https
    port: ${ADAPTER_PORT}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.external.metrics.k8s.io
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service:
    name: keda-metrics-apiserver
    namespace: ${NAMESPACE}
    port: 443
EOF
}

up() {
  [[ -x "${BIN}/keda-operator" && -x "${BIN}/keda-metrics-apiserver" ]] ||
    die "no KEDA binaries in ${BIN}: run tools/build-addons.sh"
  [[ -f "${KCFG}" ]] || die "no ${KCFG}: start the dev cluster first (make cluster)"
  [[ -n "${ADDRESS}" && "${ADDRESS}" != 127.* ]] ||
    die "no non-loopback IPv4 address for the metrics adapter (set DEVCLUSTER_KEDA_ADDRESS)"
  if running keda-operator && running keda-metrics-apiserver && healthy; then
    log "already running"
    return 0
  fi
  local started=${SECONDS}
  stop keda-operator
  stop keda-metrics-apiserver
  certs
  objects
  WATCH_NAMESPACE="" KEDA_CLUSTER_OBJECT_NAMESPACE="${NAMESPACE}" POD_NAMESPACE="${NAMESPACE}" \
    start keda-operator --kubeconfig="${KCFG}" --cert-dir="${CERTS}" \
    --metrics-bind-address="127.0.0.1:${OPERATOR_METRICS_PORT}" \
    --health-probe-bind-address="127.0.0.1:${OPERATOR_HEALTH_PORT}" \
    --metrics-service-bind-address="127.0.0.1:${GRPC_PORT}" \
    --enable-apiservice-patching=false --zap-log-level=info --zap-encoder=console
  WATCH_NAMESPACE="" KEDA_CLUSTER_OBJECT_NAMESPACE="${NAMESPACE}" POD_NAMESPACE="${NAMESPACE}" \
    start keda-metrics-apiserver --kubeconfig="${KCFG}" --lister-kubeconfig="${KCFG}" \
    --authentication-kubeconfig="${KCFG}" --authorization-kubeconfig="${KCFG}" \
    --bind-address="${ADDRESS}" --secure-port="${ADAPTER_PORT}" \
    --tls-cert-file="${CERTS}/tls.crt" --tls-private-key-file="${CERTS}/tls.key" --cert-dir="${CERTS}" \
    --metrics-service-address="127.0.0.1:${GRPC_PORT}" --metrics-service-grpc-authority=localhost \
    --port="${ADAPTER_METRICS_PORT}" --profiling=false
  local deadline=$((SECONDS + TIMEOUT))
  until healthy; do
    running keda-operator || die "keda-operator exited during start-up" keda-operator
    running keda-metrics-apiserver || die "keda-metrics-apiserver exited during start-up" keda-metrics-apiserver
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for KEDA (operator /healthz on \
${OPERATOR_HEALTH_PORT}, external.metrics.k8s.io through the API server)" keda-metrics-apiserver
    sleep 0.5
  done
  log "up in $((SECONDS - started))s (adapter https://${ADDRESS}:${ADAPTER_PORT}, operator gRPC 127.0.0.1:${GRPC_PORT})"
}

down() {
  stop keda-metrics-apiserver
  stop keda-operator
  log "stopped"
}

case "${1:-}" in
  installed) [[ -x "${BIN}/keda-operator" && -x "${BIN}/keda-metrics-apiserver" && -e "${CRDS}/keda.sh_scaledobjects.yaml" ]] ;;
  up) up ;;
  down) down ;;
  *) die "usage: $0 installed|up|down" ;;
esac
