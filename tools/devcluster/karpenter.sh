#!/usr/bin/env bash
# Karpenter with its KWOK cloud provider on the local dev cluster (tools/devcluster/up.sh).
#
#   tools/devcluster/karpenter.sh up        CRDs, namespace, KWOKNodeClass, NodePools, the process
#   tools/devcluster/karpenter.sh down      stop the process (cluster objects and nodes stay)
#   tools/devcluster/karpenter.sh installed exit 0 when the binary and its CRDs are there (up.sh asks)
#   tools/devcluster/karpenter.sh nodepool NAME REGION [SECONDS]
#                                           print a NodePool like up's (tests make their own)
#
# The binary is .devcluster/bin/karpenter-kwok (tools/build-addons.sh). Karpenter runs outside the
# cluster as the admin user, with leader election off; metrics on :31280, health probes on :31281.
# Karpenter binds those on every interface (it has no bind-address flag); nothing else listens.
#
# What up creates:
#   KWOKNodeClass `default`, and a NodePool per region (DEVCLUSTER_KARPENTER_REGIONS): eu-west-1,
#   eu-central-1 and us-east-1, where the static nodes are, and ap-southeast-2, which has none, so
#   every node there comes from Karpenter. A NodePool's nodes carry the region in both
#   topology.kubernetes.io/region and the admin-only node-restriction.kubernetes.io/region (through
#   the template's labels), and the taint devcluster.healthscale.io/autoscaled=true:NoSchedule, so
#   only pods that tolerate it use them: other tests' pods never land on a node that comes and goes,
#   and a pod without the toleration never makes Karpenter launch one. Limit: 64 CPU per NodePool.
#   Consolidation: empty nodes go 30 s after they empty (WhenEmpty; busy nodes are never drained).
#   Instance types: kwok-1x ... kwok-16x (1-16 CPU, 4Gi per CPU, 110 pods, on-demand), written to
#   .devcluster/run/karpenter-instance-types.json.
#   Node start-up: Karpenter's KWOK provider creates the Node at launch; our kwok stages
#   (tools/devcluster/kwok/karpenter-node-*.yaml) report it NotReady at once and Ready at
#   launch + its annotation devcluster.healthscale.io/initialize-after-seconds, which the
#   NodePool's template sets. Meanwhile it is tainted not-ready and pods wait, as on a cloud.
#
# Environment (all optional):
#   DEVCLUSTER_STATE_DIR               default <repo>/.devcluster
#   DEVCLUSTER_KARPENTER_NODE_SECONDS  launch-to-Ready time of a new node (default 120)
#   DEVCLUSTER_KARPENTER_REGIONS       space-separated regions, one NodePool each (default above)
#   DEVCLUSTER_KARPENTER_METRICS_PORT  default 31280
#   DEVCLUSTER_KARPENTER_HEALTH_PORT   default 31281
#   DEVCLUSTER_TIMEOUT                 seconds to wait for Karpenter to get healthy (default 180)
set -euo pipefail

DEVCLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${DEVCLUSTER_DIR}/../.." && pwd)"
STATE="${DEVCLUSTER_STATE_DIR:-${REPO_ROOT}/.devcluster}"
BIN="${STATE}/bin"
LOGS="${STATE}/logs"
PIDS="${STATE}/pids"
RUN="${STATE}/run"
KCFG="${STATE}/kubeconfig"
CRDS="${STATE}/addon-crds"
NAME=karpenter
BINARY="${BIN}/karpenter-kwok"
NAMESPACE=karpenter
METRICS_PORT="${DEVCLUSTER_KARPENTER_METRICS_PORT:-31280}"
HEALTH_PORT="${DEVCLUSTER_KARPENTER_HEALTH_PORT:-31281}"
NODE_SECONDS="${DEVCLUSTER_KARPENTER_NODE_SECONDS:-120}"
REGIONS="${DEVCLUSTER_KARPENTER_REGIONS:-eu-west-1 eu-central-1 us-east-1 ap-southeast-2}"
TIMEOUT="${DEVCLUSTER_TIMEOUT:-180}"
TAINT_KEY=devcluster.healthscale.io/autoscaled
DELAY_ANNOTATION=devcluster.healthscale.io/initialize-after-seconds
POOL_CPU_LIMIT=64

log() { printf '[karpenter] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

k() { "${BIN}/kubectl" --kubeconfig="${KCFG}" --request-timeout=30s "$@"; }
alive() { # running and not a zombie (orphans may never be reaped in a container)
  kill -0 "$1" 2>/dev/null && [[ "$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null)" != Z ]]
}
pid_of() { sed -n 1p "${PIDS}/${NAME}.pid" 2>/dev/null; }
healthy() {
  curl -fsS --max-time 2 "http://127.0.0.1:${HEALTH_PORT}/healthz" >/dev/null 2>&1 &&
    curl -fsS --max-time 2 "http://127.0.0.1:${HEALTH_PORT}/readyz" >/dev/null 2>&1
}
running() { local pid; pid="$(pid_of)"; [[ -n "${pid}" ]] && alive "${pid}"; }

# Serialize with up.sh/down.sh (they take the same lock; up.sh calls us holding it).
lock() {
  if [[ "${DEVCLUSTER_LOCK_HELD:-0}" != 1 ]]; then
    mkdir -p "${STATE}"
    exec 9>"${STATE}/lock"
    flock -w 900 9 || die "gave up waiting for ${STATE}/lock"
  fi
}

# nodepool NAME REGION SECONDS -- a NodePool whose nodes are in REGION and Ready SECONDS after launch.
nodepool() {
  local name="$1" region="$2" seconds="$3"
  [[ "${seconds}" =~ ^[0-9]+$ ]] || die "node start-up must be whole seconds, got ${seconds}"
  cat <<EOF
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: ${name}
  labels:
    app.kubernetes.io/managed-by: healthscale-devcluster
spec:
  template:
    metadata:
      labels:
        topology.kubernetes.io/region: ${region}
        node-restriction.kubernetes.io/region: ${region}
      annotations:
        ${DELAY_ANNOTATION}: "${seconds}"
    spec:
      nodeClassRef:
        group: karpenter.kwok.sh
        kind: KWOKNodeClass
        name: default
      requirements:
      - key: karpenter.sh/capacity-type
        operator: In
        values: [on-demand]
      taints:
      - key: ${TAINT_KEY}
        value: "true"
        effect: NoSchedule
      # As a kubelet registers: no pod lands before the node is Ready (the node-lifecycle
      # controller lifts it then).
      startupTaints:
      - key: node.kubernetes.io/not-ready
        effect: NoSchedule
      expireAfter: Never
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 30s
  limits:
    cpu: "${POOL_CPU_LIMIT}"
EOF
}

# Small, predictable instance types instead of the provider's 144 built-in ones: less for
# Karpenter's simulation to weigh on two cores, and sizes a test can reason about.
instance_types() {
  python3 - <<'EOF'
import json
types = []
for cpu in (1, 2, 4, 8, 16):
    offerings = [{"Price": round(0.04 * cpu, 4), "Available": True, "Requirements": [
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}
        for zone in ("kwok-zone-a", "kwok-zone-b")]
    types.append({"name": f"kwok-{cpu}x", "offerings": offerings, "architecture": "amd64",
                  "operatingSystems": ["linux"],
                  "resources": {"cpu": str(cpu), "memory": f"{4 * cpu}Gi", "pods": "110",
                                "ephemeral-storage": "100Gi"}})
print(json.dumps(types, indent=1))
EOF
}

cluster_objects() {
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: ${NAMESPACE}
---
apiVersion: karpenter.kwok.sh/v1alpha1
kind: KWOKNodeClass
metadata:
  name: default
spec: {}
EOF
  local region
  for region in ${REGIONS}; do
    echo "---"
    nodepool "${region}" "${region}" "${NODE_SECONDS}"
  done
}

stop() {
  local file="${PIDS}/${NAME}.pid" pid marker i
  [[ -f "${file}" ]] || { log "not running"; return 0; }
  pid="$(sed -n 1p "${file}")"
  marker="$(sed -n 2p "${file}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && alive "${pid}"; then
    if [[ "$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null)" != *"${marker}"* ]]; then
      log "pid ${pid} no longer runs ${marker}; leaving it alone"
    else
      kill -TERM "${pid}" 2>/dev/null || true
      for ((i = 0; i < 40; i++)); do
        alive "${pid}" || break
        sleep 0.5
      done
      alive "${pid}" && { log "pid ${pid} ignored SIGTERM for 20s, killing"; kill -KILL "${pid}" 2>/dev/null || true; }
      log "stopped karpenter (pid ${pid})"
    fi
  fi
  rm -f "${file}"
}

up() {
  lock
  [[ -x "${BINARY}" ]] || die "${BINARY} is missing; build it with tools/build-addons.sh"
  [[ -f "${KCFG}" && "$(k get --raw /readyz 2>/dev/null)" == ok ]] ||
    die "the dev cluster is not up (tools/devcluster/up.sh)"
  if running && healthy; then
    log "already running (pid $(pid_of)); nothing to do"
    return 0
  fi
  # kwok reads its stages only at start: a cluster started before the stage existed would make
  # Karpenter's nodes Ready at once and every warm-up measurement meaningless.
  grep -q 'name: karpenter-node-initialize' "${RUN}/kwok.yaml" 2>/dev/null &&
    grep -q 'name: karpenter-node-register' "${RUN}/kwok.yaml" ||
    die "kwok runs without the karpenter-node-* stages (its config predates them);
  restart the dev cluster: tools/devcluster/down.sh && tools/devcluster/up.sh"
  [[ -f "${PIDS}/${NAME}.pid" ]] && stop
  local port
  for port in "${METRICS_PORT}" "${HEALTH_PORT}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      die "port ${port} is already in use (set DEVCLUSTER_KARPENTER_METRICS_PORT / _HEALTH_PORT)"
    fi
  done

  log "applying CRDs, the KWOKNodeClass and NodePools for ${REGIONS} (nodes Ready ${NODE_SECONDS} s after launch)"
  local crds=("${CRDS}"/karpenter.sh_*.yaml "${CRDS}"/karpenter.kwok.sh_*.yaml)
  [[ -e "${crds[0]}" ]] || die "no Karpenter CRDs in ${CRDS}; run tools/build-addons.sh"
  local args=() crd
  for crd in "${crds[@]}"; do args+=(-f "${crd}"); done
  k apply --server-side --force-conflicts --field-manager=devcluster "${args[@]}" >/dev/null
  k wait --for=condition=Established --timeout=60s crd/nodepools.karpenter.sh crd/nodeclaims.karpenter.sh \
    crd/kwoknodeclasses.karpenter.kwok.sh >/dev/null
  mkdir -p "${RUN}" "${LOGS}" "${PIDS}"
  cluster_objects >"${RUN}/karpenter-objects.yaml"
  k apply -f "${RUN}/karpenter-objects.yaml" >/dev/null
  instance_types >"${RUN}/karpenter-instance-types.json"

  log "starting karpenter-kwok (health on http://127.0.0.1:${HEALTH_PORT}, metrics on :${METRICS_PORT})"
  setsid env SYSTEM_NAMESPACE="${NAMESPACE}" KUBECONFIG="${KCFG}" "${BINARY}" \
    --disable-leader-election \
    --metrics-port="${METRICS_PORT}" \
    --health-probe-port="${HEALTH_PORT}" \
    --instance-types-file-path="${RUN}/karpenter-instance-types.json" \
    --log-level=info \
    >"${LOGS}/${NAME}.log" 2>&1 </dev/null 9>&- &
  printf '%s\n%s\n' "$!" "${BINARY}" >"${PIDS}/${NAME}.pid"

  local deadline=$((SECONDS + TIMEOUT))
  until healthy; do
    if ! running; then
      log "karpenter exited during start-up; last 30 lines of ${LOGS}/${NAME}.log:"
      tail -n 30 "${LOGS}/${NAME}.log" >&2
      rm -f "${PIDS}/${NAME}.pid"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "karpenter not healthy after ${TIMEOUT}s; last 30 lines of ${LOGS}/${NAME}.log:"
      tail -n 30 "${LOGS}/${NAME}.log" >&2
      stop
      exit 1
    fi
    sleep 0.5
  done
  # Karpenter launches nothing for a NodePool until it has judged it (and its NodeClass) Ready.
  local pools=() region
  for region in ${REGIONS}; do pools+=("nodepool/${region}"); done
  k wait --for=condition=Ready --timeout="$((TIMEOUT))s" "${pools[@]}" >/dev/null ||
    die "NodePools not Ready; see ${LOGS}/${NAME}.log"
  log "karpenter up (pid $(pid_of)); NodePools: ${REGIONS}"
}

case "${1:-}" in
  up) up ;;
  down) lock; stop ;;
  installed) [[ -x "${BINARY}" && -e "${CRDS}/karpenter.sh_nodepools.yaml" ]] ;;
  nodepool)
    (($# >= 3)) || { usage >&2; exit 2; }
    nodepool "$2" "$3" "${4:-${NODE_SECONDS}}"
    ;;
  -h | --help) usage ;;
  *) usage >&2; exit 2 ;;
esac
