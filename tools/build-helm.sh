#!/usr/bin/env bash
# Build `helm` (v3) from Go modules into .devcluster/bin, beside kubectl and the other binaries.
#
# Usage: tools/build-helm.sh [TARGET_DIR]       (default: <repo>/.devcluster/bin)
#
# Why the ldflags: a plain `go install helm.sh/helm/v3/cmd/helm@vX` leaves helm's built-in
# Kubernetes version at its source default, 1.20, so `helm template` and `helm lint` would render
# `.Capabilities.KubeVersion` as v1.20.0 (and `kubeVersion` constraints or deprecation checks would
# be judged against a six-year-old cluster). Helm's own Makefile sets the version through -X flags;
# we set it to the Kubernetes minor the dev cluster runs (read from tools/k8s/go.mod, the single
# source of truth), so the chart is rendered and linted against the cluster it is installed into.
# The chart tests also pass --kube-version explicitly, so they do not depend on this.
#
# Idempotent: skipped when TARGET_DIR/helm already reports HELM_VERSION and the expected
# Kubernetes version. Needs only Go and the Go module proxy.
#
# Environment (optional):
#   HELM_VERSION   helm v3 module version (default below; the newest v3 the proxy served when
#                  this was written: `go list -m -versions helm.sh/helm/v3`)
#   FORCE=1        rebuild even if present and correct
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/.." && pwd)"
BIN_DIR="${1:-${REPO_ROOT}/.devcluster/bin}"
mkdir -p "${BIN_DIR}"
BIN_DIR="$(cd "${BIN_DIR}" && pwd)"

export CGO_ENABLED=0
export GO111MODULE=on
export GOWORK=off

log() { printf '[build-helm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go not found in PATH (install Go >= 1.26)"
[[ "${HELM_VERSION}" =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "HELM_VERSION must be a v3.x.y release, got ${HELM_VERSION}"

# The Kubernetes version the dev cluster runs, e.g. v1.36.3 -> major 1, minor 36.
K8S_VERSION="$(cd "${TOOLS_DIR}/k8s" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
[[ "${K8S_VERSION}" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "unexpected Kubernetes version ${K8S_VERSION}"
K8S_MAJOR="${BASH_REMATCH[1]}"
K8S_MINOR="${BASH_REMATCH[2]}"

# `helm version --template` prints exactly what we ask for, so the check is a string compare.
# `helm template` without --kube-version renders Capabilities.KubeVersion as v<major>.<minor>.0.
expected="${HELM_VERSION} v${K8S_MAJOR}.${K8S_MINOR}.0"
current() {
  [[ -x "${BIN_DIR}/helm" ]] || return 1
  local version kube
  version="$("${BIN_DIR}/helm" version --template '{{.Version}}' 2>/dev/null)" || return 1
  # A minimal chart-free way to read the built-in KubeVersion: render a one-template chart.
  local tmp
  tmp="$(mktemp -d)"
  mkdir -p "${tmp}/c/templates"
  printf 'apiVersion: v2\nname: c\nversion: 0.0.1\n' >"${tmp}/c/Chart.yaml"
  printf '# {{ .Capabilities.KubeVersion.Version }}\n' >"${tmp}/c/templates/v.yaml"
  kube="$("${BIN_DIR}/helm" template "${tmp}/c" 2>/dev/null | sed -n 's/^# \(v[0-9.]*\)$/\1/p')"
  rm -rf "${tmp}"
  [[ "${version} ${kube}" == "${expected}" ]] && return 0
  log "helm present but reports '${version} ${kube}', want '${expected}'"
  return 1
}

if [[ "${FORCE:-0}" != 1 ]] && current; then
  log "helm ${HELM_VERSION} (Kubernetes v${K8S_MAJOR}.${K8S_MINOR}) in ${BIN_DIR}: up to date, skipping"
  exit 0
fi

# The same -X flags as helm's Makefile, with the version fixed instead of taken from git.
LDFLAGS="-s -w"
LDFLAGS+=" -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}"
LDFLAGS+=" -X helm.sh/helm/v3/internal/version.metadata="
LDFLAGS+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  LDFLAGS+=" -X ${pkg}.k8sVersionMajor=${K8S_MAJOR} -X ${pkg}.k8sVersionMinor=${K8S_MINOR}"
done

log "$(go version); installing helm ${HELM_VERSION} (Kubernetes v${K8S_MAJOR}.${K8S_MINOR}) into ${BIN_DIR} ..."
start="$(date +%s)"
# `go install pkg@version` builds with helm's own go.mod/go.sum, independent of tools/k8s.
GOBIN="${BIN_DIR}" nice -n 10 go install -trimpath -buildvcs=false -ldflags="${LDFLAGS}" \
  "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}"
end="$(date +%s)"
log "built in $((end - start))s"

current || die "the new helm does not report '${expected}'"
log "$("${BIN_DIR}/helm" version --short)"
