#!/usr/bin/env bash
# Start the local dev cluster: a real Kubernetes control plane with KWOK fake
# nodes, plus a real Prometheus holding two weeks of backfilled demand.
# Everything listens on 127.0.0.1 only; no Docker, no root needed at run time.
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
#       binaries from .devcluster/bin (tools/build-binaries.sh)
#   6 fake nodes in 3 regions (eu-west-1, eu-central-1, us-east-1), 2 zones each
#   prometheus (Debian package) + a loopback demand exporter
#       (tools/devcluster/backfill.py), history backfilled with promtool
#
# Usage: tools/devcluster/up.sh          then: source .devcluster/env
#        tools/devcluster/down.sh        stops it and deletes the state
#
# If the cluster is already up and healthy this says so and exits 0. Leftovers
# of a dead or half-started cluster are cleaned up first (down.sh).
#
# Environment (all optional):
#   HEALTHSCALE_AUTO_INSTALL=1   build missing binaries (tools/build-binaries.sh)
#                                and apt-get install prometheus if missing
#   DEVCLUSTER_TRACES            space-separated backfill.py --trace specs
#                                (default: the call-centre and ED-arrivals traces
#                                from ../shared/traces, see TRACES below)
#   DEVCLUSTER_BACKFILL_DAYS     days of history to backfill (default 15)
#   DEVCLUSTER_TIMEOUT           seconds to wait for each component (default 180)
#   DEVCLUSTER_KEEP_ON_FAILURE=1 leave processes running if start-up fails
#   DEVCLUSTER_<NAME>_PORT       override a port (names in the PORTS block below)
set -euo pipefail

T0=${SECONDS}
DEVCLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${DEVCLUSTER_DIR}/../.." && pwd)"
STATE="${DEVCLUSTER_STATE_DIR:-${REPO_ROOT}/.devcluster}"
BIN="${STATE}/bin"
LOGS="${STATE}/logs"
PIDS="${STATE}/pids"
PKI="${STATE}/pki"
RUN="${STATE}/run"         # generated configs
KCFG="${STATE}/kubeconfig" # admin kubeconfig
ENV_FILE="${STATE}/env"    # written last: its presence means "was fully up"
TIMEOUT="${DEVCLUSTER_TIMEOUT:-180}"

# ---------------------------------------------------------------- PORTS
# Fixed, non-default ports below Linux's ephemeral range (32768+), so outgoing
# connections never take them and they don't clash with default installs.
ETCD_PORT="${DEVCLUSTER_ETCD_PORT:-31379}"
ETCD_PEER_PORT="${DEVCLUSTER_ETCD_PEER_PORT:-31380}"
APISERVER_PORT="${DEVCLUSTER_APISERVER_PORT:-31443}"
KCM_PORT="${DEVCLUSTER_KCM_PORT:-31257}"
SCHEDULER_PORT="${DEVCLUSTER_SCHEDULER_PORT:-31259}"
KWOK_PORT="${DEVCLUSTER_KWOK_PORT:-31247}"
PROMETHEUS_PORT="${DEVCLUSTER_PROMETHEUS_PORT:-31090}"
EXPORTER_PORT="${DEVCLUSTER_EXPORTER_PORT:-31091}"

SERVICE_CIDR=10.96.0.0/16 # ClusterIPs (nothing routes them; no kube-proxy)
POD_CIDR=10.244.0.0/16    # kwok hands out pod IPs from here
PROMETHEUS_URL="http://127.0.0.1:${PROMETHEUS_PORT}"

# Demand traces to backfill; see backfill.py for the spec format. The traces
# live outside the repo (../shared/traces, also on CI). The scale factors turn
# "calls per 5 min" / "arrivals per hour" into request rates in the tens to
# low hundreds per second, so that capacity planning has something to scale.
TRACE_DIR="${DEVCLUSTER_TRACE_DIR:-${REPO_ROOT}/../shared/traces}"
TRACES="${DEVCLUSTER_TRACES:-journey=call-centre,path=${TRACE_DIR}/call_centre_bank_5min.csv,tz=America/New_York,scale=100 journey=ed-arrivals,path=${TRACE_DIR}/ed_arrivals_iowa_hourly.csv,tz=America/Chicago,scale=10000}"
BACKFILL_DAYS="${DEVCLUSTER_BACKFILL_DAYS:-15}"

log() { printf '[devcluster] %s\n' "$*" >&2; }

FAILED_COMPONENT=""
die() { # die MESSAGE [COMPONENT-whose-log-to-show]
  log "ERROR: $*"
  FAILED_COMPONENT="${2:-${FAILED_COMPONENT}}"
  exit 1
}

k() { "${BIN}/kubectl" --kubeconfig="${KCFG}" --request-timeout=10s "$@"; }
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { # running and not a zombie (orphans may never be reaped in a container)
  kill -0 "$1" 2>/dev/null && [[ "$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" != Z ]]
}
pid_of() { sed -n 1p "${PIDS}/$1.pid" 2>/dev/null; }

# -------------------------------------------------------------- locking
# Several sessions share one checkout (and one .devcluster): serialize
# up.sh/down.sh so two starts never race; the second one then finds the
# cluster up. Nested down.sh calls are told we already hold the lock. The lock
# fd is closed for the components we start (see start()), or they would hold
# the lock for as long as they run.
mkdir -p "${STATE}"
if [[ "${DEVCLUSTER_LOCK_HELD:-0}" != 1 ]]; then
  exec 9>"${STATE}/lock"
  if ! flock -n 9; then
    log "another up.sh/down.sh is running; waiting for it (up to 15 min)"
    flock -w 900 9 || die "gave up waiting for ${STATE}/lock"
  fi
  export DEVCLUSTER_LOCK_HELD=1
fi

# ------------------------------------------------------- already running?
apiserver_ready() { [[ -f "${KCFG}" ]] && [[ "$(k get --raw /readyz 2>/dev/null)" == ok ]]; }
prometheus_ready() { curl -fsS --max-time 5 "${PROMETHEUS_URL}/-/ready" >/dev/null 2>&1; }
all_alive() {
  local f
  for f in "${PIDS}"/*.pid; do
    [[ -e "${f}" ]] || return 1
    alive "$(sed -n 1p "${f}")" || return 1
  done
}
if [[ -f "${ENV_FILE}" ]]; then
  if all_alive && apiserver_ready && prometheus_ready; then
    log "already up (state in ${STATE}); nothing to do. Use: source ${ENV_FILE}"
    exit 0
  fi
  log "a previous dev cluster is not healthy any more; cleaning it up first"
fi
if [[ -f "${ENV_FILE}" || -d "${PIDS}" || -d "${STATE}/etcd" ]]; then
  "${DEVCLUSTER_DIR}/down.sh"
fi

# ---------------------------------------------------------- prerequisites
AUTO="${HEALTHSCALE_AUTO_INSTALL:-0}"
missing=()
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok; do
  [[ -x "${BIN}/${b}" ]] || missing+=("${b}")
done
if ((${#missing[@]})); then
  if [[ "${AUTO}" == 1 ]]; then
    log "missing ${missing[*]}; building them (HEALTHSCALE_AUTO_INSTALL=1; ~7-10 min cold on 2 cores)"
    nice -n 10 "${REPO_ROOT}/tools/build-binaries.sh" "${BIN}"
  else
    bin_arg=""
    [[ "${BIN}" == "${REPO_ROOT}/.devcluster/bin" ]] || bin_arg=" ${BIN}"
    die "missing in ${BIN}: ${missing[*]}.
  Build them (Go >= 1.26 and the Go module proxy; ~7-10 min cold on 2 cores):
      nice -n 10 tools/build-binaries.sh${bin_arg}
  or rerun with HEALTHSCALE_AUTO_INSTALL=1 to build them automatically."
  fi
fi
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  if [[ "${AUTO}" == 1 ]]; then
    log "prometheus missing; installing the Debian package (HEALTHSCALE_AUTO_INSTALL=1)"
    sudo_=""
    ((EUID == 0)) || sudo_="sudo"
    ${sudo_} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${sudo_} apt-get install -y -qq --no-install-recommends prometheus
  else
    die "prometheus/promtool not found. Install Debian's package (we run the binary
  ourselves on loopback; its systemd service is not used):
      apt-get install -y prometheus
  or rerun with HEALTHSCALE_AUTO_INSTALL=1."
  fi
fi
for tool in openssl curl python3; do
  command -v "${tool}" >/dev/null || die "${tool} not found (apt-get install -y ${tool})"
done
for spec in ${TRACES}; do
  path="$(tr ',' '\n' <<<"${spec}" | sed -n 's/^path=//p')"
  [[ -r "${path}" ]] || die "demand trace not found: ${path}
  The default traces come from the shared traces folder next to the repo
  (../shared/traces, see its README). Point DEVCLUSTER_TRACE_DIR at a copy, or
  set DEVCLUSTER_TRACES to your own journey=NAME,path=CSV[,tz=ZONE][,scale=X] specs."
done

for spec in "etcd ${ETCD_PORT}" "etcd-peer ${ETCD_PEER_PORT}" "apiserver ${APISERVER_PORT}" \
  "kcm ${KCM_PORT}" "scheduler ${SCHEDULER_PORT}" "kwok ${KWOK_PORT}" \
  "prometheus ${PROMETHEUS_PORT}" "exporter ${EXPORTER_PORT}"; do
  read -r name port <<<"${spec}"
  if port_in_use "${port}"; then
    var="DEVCLUSTER_$(tr 'a-z-' 'A-Z_' <<<"${name}")_PORT"
    die "port ${port} (${name}) on 127.0.0.1 is already in use. A dev cluster from an
  earlier run whose state was deleted? Stop that process, or pick another port with ${var}=..."
  fi
done

# ------------------------------------------------------- process handling
mkdir -p "${LOGS}" "${PIDS}" "${RUN}"
STARTED=()

# start NAME CMD... -- run CMD in its own session (so closing the terminal or a
# Ctrl-C in the caller's shell does not kill it), log to logs/NAME.log and
# record "PID\nCMD[0]" in pids/NAME.pid (down.sh checks the command matches).
start() {
  local name="$1"
  shift
  setsid "$@" >"${LOGS}/${name}.log" 2>&1 </dev/null 9>&- &
  printf '%s\n%s\n' "$!" "$1" >"${PIDS}/${name}.pid"
  STARTED+=("${name}")
}

# Fail fast: every wait loop calls this, so a component that crashes is
# reported at once with its log rather than after a timeout.
check_alive() {
  local name
  for name in "${STARTED[@]}"; do
    alive "$(pid_of "${name}")" || die "${name} exited during start-up" "${name}"
  done
}

# wait_for COMPONENT DESCRIPTION CMD... -- poll CMD until it succeeds.
wait_for() {
  local component="$1" what="$2" deadline=$((SECONDS + TIMEOUT))
  shift 2
  until "$@" >/dev/null 2>&1; do
    check_alive
    ((SECONDS < deadline)) || die "timed out after ${TIMEOUT}s waiting for ${what}" "${component}"
    sleep 0.5
  done
}

on_exit() {
  local rc=$?
  trap - EXIT
  ((rc == 0)) && return
  if [[ -n "${FAILED_COMPONENT}" && -f "${LOGS}/${FAILED_COMPONENT}.log" ]]; then
    log "---- last 30 lines of ${LOGS}/${FAILED_COMPONENT}.log"
    tail -n 30 "${LOGS}/${FAILED_COMPONENT}.log" >&2
    log "----"
  fi
  if ((${#STARTED[@]})); then
    if [[ "${DEVCLUSTER_KEEP_ON_FAILURE:-0}" == 1 ]]; then
      log "start-up failed; processes left running (DEVCLUSTER_KEEP_ON_FAILURE=1); logs in ${LOGS}"
    else
      log "start-up failed; stopping what was started (logs kept in ${LOGS})"
      "${DEVCLUSTER_DIR}/down.sh" --keep-logs || true
    fi
  fi
  exit "${rc}"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# -------------------------------------------------------------- certs etc.
# CA, apiserver serving cert, admin client cert (system:masters), SA key pair.
# Valid 30 days; a fresh PKI is made on every start.
log "generating PKI in ${PKI}"
"${REPO_ROOT}/tools/gen-certs.sh" "${PKI}" 30

k config set-cluster devcluster --server="https://127.0.0.1:${APISERVER_PORT}" \
  --certificate-authority="${PKI}/ca.crt" --embed-certs=true >/dev/null
k config set-credentials devcluster-admin --client-certificate="${PKI}/admin.crt" \
  --client-key="${PKI}/admin.key" --embed-certs=true >/dev/null
k config set-context devcluster --cluster=devcluster --user=devcluster-admin >/dev/null
k config use-context devcluster >/dev/null
chmod 600 "${KCFG}"

# -------------------------------------------------------------------- etcd
log "starting etcd on 127.0.0.1:${ETCD_PORT}"
# --unsafe-no-fsync: throw-away data; fsync is what makes etcd slow on shared disks.
start etcd "${BIN}/etcd" \
  --name=devcluster \
  --data-dir="${STATE}/etcd" \
  --listen-client-urls="http://127.0.0.1:${ETCD_PORT}" \
  --advertise-client-urls="http://127.0.0.1:${ETCD_PORT}" \
  --listen-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-advertise-peer-urls="http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster="devcluster=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster-state=new \
  --unsafe-no-fsync=true \
  --auto-compaction-mode=periodic \
  --auto-compaction-retention=5m \
  --quota-backend-bytes=$((4 * 1024 * 1024 * 1024)) \
  --log-level=warn
wait_for etcd "etcd /health" curl -fsS --max-time 2 "http://127.0.0.1:${ETCD_PORT}/health"

# ---------------------------------------------------------- kube-apiserver
# Flags follow controller-runtime's envtest and kwokctl's binary runtime.
# Node,RBAC authorization as in production. NodeRestriction goes on top of the
# default admission plugins (ServiceAccount, PodSecurity, ResourceQuota, ...).
# The requestheader flags publish a front-proxy CA in kube-system's
# extension-apiserver-authentication ConfigMap; without one the
# controller-manager and scheduler log an error every few seconds. Only a cert
# with CN=front-proxy-client may assert identities that way; the API server
# alone holds it (--proxy-client-*), to call aggregated API servers such as
# KEDA's metrics adapter. There is no kube-proxy, so it calls their endpoints
# directly (--enable-aggregator-routing).
log "starting kube-apiserver on https://127.0.0.1:${APISERVER_PORT}"
start kube-apiserver "${BIN}/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:${ETCD_PORT}" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="${APISERVER_PORT}" \
  --cert-dir="${PKI}/apiserver-generated" \
  --tls-cert-file="${PKI}/apiserver.crt" \
  --tls-private-key-file="${PKI}/apiserver.key" \
  --client-ca-file="${PKI}/ca.crt" \
  --requestheader-client-ca-file="${PKI}/ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="${PKI}/front-proxy-client.crt" \
  --proxy-client-key-file="${PKI}/front-proxy-client.key" \
  --enable-aggregator-routing=true \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="${PKI}/sa.pub" \
  --service-account-signing-key-file="${PKI}/sa.key" \
  --service-cluster-ip-range="${SERVICE_CIDR}" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  --profiling=false
wait_for kube-apiserver "kube-apiserver /readyz" apiserver_ready

# ------------------------------------------------- controller-manager
# The admin kubeconfig is enough for a loopback dev cluster; each controller
# still acts as its own service account (--use-service-account-credentials),
# which needs the SA token signing key. --root-ca-file publishes
# kube-root-ca.crt into every namespace; the cluster-signing pair lets CSRs be
# signed. No node IPAM: kwok assigns pod IPs itself.
log "starting kube-controller-manager (healthz on https://127.0.0.1:${KCM_PORT})"
start kube-controller-manager "${BIN}/kube-controller-manager" \
  --kubeconfig="${KCFG}" \
  --authentication-kubeconfig="${KCFG}" \
  --authorization-kubeconfig="${KCFG}" \
  --bind-address=127.0.0.1 \
  --secure-port="${KCM_PORT}" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="${PKI}/sa.key" \
  --root-ca-file="${PKI}/ca.crt" \
  --cluster-signing-cert-file="${PKI}/ca.crt" \
  --cluster-signing-key-file="${PKI}/ca.key" \
  --cluster-name=healthscale-dev \
  --service-cluster-ip-range="${SERVICE_CIDR}" \
  --allocate-node-cidrs=false \
  --kube-api-qps=100 \
  --kube-api-burst=200 \
  --profiling=false

# ----------------------------------------------------------- scheduler
cat >"${RUN}/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: ${KCFG}
  qps: 100
  burst: 200
leaderElection:
  leaderElect: false
EOF
log "starting kube-scheduler (healthz on https://127.0.0.1:${SCHEDULER_PORT})"
start kube-scheduler "${BIN}/kube-scheduler" \
  --config="${RUN}/scheduler.yaml" \
  --authentication-kubeconfig="${KCFG}" \
  --authorization-kubeconfig="${KCFG}" \
  --bind-address=127.0.0.1 \
  --secure-port="${SCHEDULER_PORT}" \
  --profiling=false

# ------------------------------------------------------------------ kwok
# kwok manages only nodes annotated kwok.x-k8s.io/node=fake (KWOK's documented
# convention) and runs our own stages from tools/devcluster/kwok/. It renews
# the managed nodes' Leases itself. HOME is pointed at an empty dir because
# kwok always merges ~/.kwok/kwok.yaml into its config if that file exists.
mkdir -p "${STATE}/kwok/home"
# Only Stage documents: with no KwokConfiguration document kwok applies its
# built-in defaults (an explicit but partial one is not defaulted).
for f in "${DEVCLUSTER_DIR}"/kwok/*.yaml; do
  echo "---"
  cat "${f}"
done >"${RUN}/kwok.yaml"
log "starting kwok (healthz on http://127.0.0.1:${KWOK_PORT})"
start kwok env HOME="${STATE}/kwok/home" "${BIN}/kwok" \
  --kubeconfig="${KCFG}" \
  --config="${RUN}/kwok.yaml" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-ip=127.0.0.1 \
  --cidr="${POD_CIDR}" \
  --node-lease-duration-seconds=40 \
  --server-address="127.0.0.1:${KWOK_PORT}"
# The pid file must name the kwok binary, not `env` (which execs it).
printf '%s\n%s\n' "$(pid_of kwok)" "${BIN}/kwok" >"${PIDS}/kwok.pid"

wait_for kube-controller-manager "kube-controller-manager /healthz" \
  curl -kfsS --max-time 2 "https://127.0.0.1:${KCM_PORT}/healthz"
wait_for kube-scheduler "kube-scheduler /healthz" \
  curl -kfsS --max-time 2 "https://127.0.0.1:${SCHEDULER_PORT}/healthz"
wait_for kwok "kwok /healthz" curl -fsS --max-time 2 "http://127.0.0.1:${KWOK_PORT}/healthz"

# ------------------------------------------------------------------ nodes
# Two nodes per region, one per zone. The region is in two labels: the well-known
# topology.kubernetes.io/region, which a kubelet may set on its own Node, and the admin-only
# node-restriction.kubernetes.io/region, which NodeRestriction forbids kubelets to set
# (healthscale's --region-label can read either; tests/integration/test_node_restriction.py). Large allocatable so that scale tests
# never run out of room. capacity/allocatable/nodeInfo are part of the create
# (as a kubelet registers them); kwok's node-initialize stage adds the rest.
K8S_VERSION="$("${BIN}/kube-apiserver" --version | awk '{print $2}')"
{
  for region in eu-west-1 eu-central-1 us-east-1; do
    for zone in a b; do
      name="kwok-${region}${zone}"
      cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: ${name}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: ${name}
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node.kubernetes.io/instance-type: kwok.fake
    topology.kubernetes.io/region: ${region}
    topology.kubernetes.io/zone: ${region}${zone}
    node-restriction.kubernetes.io/region: ${region}
status:
  capacity: {cpu: "64", memory: 256Gi, pods: "500", ephemeral-storage: 1Ti}
  allocatable: {cpu: "64", memory: 256Gi, pods: "500", ephemeral-storage: 1Ti}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: ${K8S_VERSION}
    containerRuntimeVersion: kwok://fake
    kernelVersion: kwok
    osImage: kwok fake node
    machineID: ""
    systemUUID: ""
    bootID: ""
EOF
    done
  done
} >"${RUN}/nodes.yaml"
log "creating 6 KWOK nodes in eu-west-1, eu-central-1, us-east-1"
k apply -f "${RUN}/nodes.yaml" >/dev/null

# Ready means: every node Ready and without the not-ready taint (the
# node-lifecycle controller removes it), and the service-account and root-CA
# controllers have populated the default namespace, so that a Deployment
# created right after up.sh gets scheduled at once.
nodes_ready() {
  local out
  out="$(k get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.spec.taints}{"\n"}{end}')"
  [[ "$(grep -c ' True $' <<<"${out}")" == 6 ]]
}
wait_for kwok "6 Ready, untainted KWOK nodes" nodes_ready
wait_for kube-controller-manager "default service account and kube-root-ca.crt" \
  k get serviceaccount/default configmap/kube-root-ca.crt -n default
log "control plane ready after $((SECONDS - T0))s"

# ------------------------------------------------------------ Prometheus
PROM="${STATE}/prometheus"
mkdir -p "${PROM}/data" "${PROM}/targets"
T_PROM=${SECONDS}
log "backfilling ${BACKFILL_DAYS} days of demand into ${PROM}/data"
read -r -a trace_args <<<"$(for s in ${TRACES}; do printf -- '--trace %s ' "${s}"; done)"
FAILED_COMPONENT=""
python3 "${DEVCLUSTER_DIR}/backfill.py" backfill "${trace_args[@]}" \
  --days "${BACKFILL_DAYS}" --out "${PROM}/data" --state "${PROM}/replay.json" \
  --tmpdir "${PROM}" --job demand-replay ||
  die "backfill failed (see the messages above)"
log "backfill done after $((SECONDS - T_PROM))s"

# The exporter serves the trace's value "now", continuing where the backfill ends.
start demand-exporter python3 "${DEVCLUSTER_DIR}/backfill.py" serve \
  --state "${PROM}/replay.json" --port "${EXPORTER_PORT}"
printf '%s\n%s\n' "$(pid_of demand-exporter)" "${DEVCLUSTER_DIR}/backfill.py" >"${PIDS}/demand-exporter.pid"
wait_for demand-exporter "demand exporter /metrics" \
  curl -fsS --max-time 2 "http://127.0.0.1:${EXPORTER_PORT}/metrics"

# Scraped series get the same job/instance labels as the backfilled ones, so
# history and live data form one series. The demand exporter is scraped every
# 5s so that up.sh's wait for its first scrape stays short. Extra targets (e.g. the operator's
# /metrics in integration tests) can be dropped into targets/*.json.
cat >"${PROM}/prometheus.yml" <<EOF
global:
  scrape_interval: 15s
  evaluation_interval: 15s
scrape_configs:
- job_name: demand-replay
  scrape_interval: 5s
  static_configs:
  - targets: ["127.0.0.1:${EXPORTER_PORT}"]
  relabel_configs:
  - target_label: instance
    replacement: demand-replay
- job_name: prometheus
  static_configs:
  - targets: ["127.0.0.1:${PROMETHEUS_PORT}"]
- job_name: devcluster-extra
  scrape_interval: 10s
  file_sd_configs:
  - files: ["${PROM}/targets/*.json"]
    refresh_interval: 5s
EOF
# Retention 30d: twice the backfilled history, so no backfilled block is
# ever dropped while the cluster runs.
log "starting prometheus on ${PROMETHEUS_URL}"
start prometheus "$(command -v prometheus)" \
  --config.file="${PROM}/prometheus.yml" \
  --storage.tsdb.path="${PROM}/data" \
  --storage.tsdb.retention.time=30d \
  --web.listen-address="127.0.0.1:${PROMETHEUS_PORT}" \
  --web.enable-lifecycle \
  --log.level=warn
wait_for prometheus "prometheus /-/ready" prometheus_ready
exporter_scraped() {
  curl -fsS --max-time 5 "${PROMETHEUS_URL}/api/v1/query" \
    --data-urlencode 'query=up{job="demand-replay"} == 1' | grep -q '"value"'
}
wait_for prometheus "the first scrape of the demand exporter" exporter_scraped
log "prometheus ready with live and backfilled demand after $((SECONDS - T_PROM))s"

# --------------------------------------------------------------- add-ons
# Karpenter (its KWOK provider) and KEDA, each started by its own script when
# its binaries are built (tools/build-addons.sh; `make cluster` builds them).
# Without them the cluster is still complete for everything but their tests,
# which start them themselves (tests/integration/conftest.py, `addon`).
for addon in karpenter keda; do
  script="${DEVCLUSTER_DIR}/${addon}.sh"
  [[ -x "${script}" ]] || continue
  if "${script}" installed; then
    FAILED_COMPONENT=""
    "${script}" up || die "${addon} did not start (tools/devcluster/${addon}.sh up)"
  else
    log "${addon}: not built (tools/build-addons.sh); starting without it"
  fi
done

# ---------------------------------------------------------------- env file
cat >"${ENV_FILE}" <<EOF
# Written by tools/devcluster/up.sh; use: source .devcluster/env
export KUBECONFIG=${KCFG}
export PROMETHEUS_URL=${PROMETHEUS_URL}
export DEVCLUSTER_APISERVER_URL=https://127.0.0.1:${APISERVER_PORT}
export DEVCLUSTER_DEMAND_EXPORTER_URL=http://127.0.0.1:${EXPORTER_PORT}/metrics
export DEVCLUSTER_PROMETHEUS_TARGETS_DIR=${PROM}/targets
export DEVCLUSTER_BIN=${BIN}
case ":\${PATH}:" in *":${BIN}:"*) ;; *) export PATH="${BIN}:\${PATH}" ;; esac
EOF

log "dev cluster up in $((SECONDS - T0))s"
cat >&2 <<EOF
  kube-apiserver  https://127.0.0.1:${APISERVER_PORT}   (KUBECONFIG=${KCFG})
  prometheus      ${PROMETHEUS_URL}
  nodes           $(k get nodes -l type=kwok -o name | tr '\n' ' ')
  logs            ${LOGS}/
  use:            source ${ENV_FILE}        stop: tools/devcluster/down.sh
EOF
