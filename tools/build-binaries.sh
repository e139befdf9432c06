#!/usr/bin/env bash
# Build the local control-plane toolchain from Go modules (no Docker/kind needed):
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#       from k8s.io/kubernetes           (wrapper module: tools/k8s)
#   etcd
#       from go.etcd.io/etcd/server/v3   (wrapper module: tools/etcd)
#   kwok, kwokctl
#       via `go install sigs.k8s.io/kwok/cmd/...@KWOK_VERSION`
#
# Usage: tools/build-binaries.sh [TARGET_DIR]     (default: <repo>/.devcluster/bin)
#
# Idempotent: a binary that already exists in TARGET_DIR and reports the
# expected version is skipped. Needs only Go (>= 1.26) and the Go module proxy.
# The Kubernetes and etcd versions come from tools/k8s/go.mod and
# tools/etcd/go.mod; KWOK_VERSION below (or from the environment).
#
# Environment knobs (all optional):
#   KWOK_VERSION          kwok module version to install (default below)
#   SOURCE_DATE_EPOCH     build date stamped into the k8s binaries
#                         (default: release time of the k8s.io/kubernetes module,
#                         so rebuilding the same versions gives the same binaries)
#   FORCE=1               rebuild everything even if present and correct
set -euo pipefail

KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/.." && pwd)"
BIN_DIR="${1:-${REPO_ROOT}/.devcluster/bin}"
mkdir -p "${BIN_DIR}"
BIN_DIR="$(cd "${BIN_DIR}" && pwd)"

export CGO_ENABLED=0
export GO111MODULE=on
export GOWORK=off   # never let a go.work elsewhere in the repo pull these modules into a workspace

log() { printf '[build-binaries] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go not found in PATH"
log "$(go version); target dir: ${BIN_DIR}"

# Versions, read from the wrapper modules (single source of truth).
mod_version() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }
K8S_VERSION="$(mod_version "${TOOLS_DIR}/k8s" k8s.io/kubernetes)"        # e.g. v1.36.3
ETCD_VERSION="$(mod_version "${TOOLS_DIR}/etcd" go.etcd.io/etcd/server/v3)" # e.g. v3.6.16
if [[ ! "${KWOK_VERSION}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  # A query such as "v0.8" or "latest": resolve it so the version check below works.
  KWOK_VERSION="$(cd "${TOOLS_DIR}/etcd" && go list -m -f '{{.Version}}' "sigs.k8s.io/kwok@${KWOK_VERSION}")"
fi
[[ "${K8S_VERSION}" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]] || die "unexpected k8s version ${K8S_VERSION}"
K8S_MAJOR="${BASH_REMATCH[1]}"
K8S_MINOR="${BASH_REMATCH[2]}"
log "versions: kubernetes ${K8S_VERSION}, etcd ${ETCD_VERSION}, kwok ${KWOK_VERSION}"

# Expected `--version` output fragment per binary.
expected_version() {
  case "$1" in
    kube-apiserver|kube-controller-manager|kube-scheduler) echo "Kubernetes ${K8S_VERSION}" ;;
    kubectl) echo "Client Version: ${K8S_VERSION}" ;;
    etcd) echo "etcd Version: ${ETCD_VERSION#v}" ;;
    kwok|kwokctl) echo "${KWOK_VERSION}" ;;
    *) die "no version rule for $1" ;;
  esac
}

version_output() {
  local bin="${BIN_DIR}/$1"
  case "$1" in
    kubectl) "${bin}" version --client 2>&1 ;;
    *) "${bin}" --version 2>&1 ;;
  esac
}

# 0 if BIN_DIR/$1 exists and reports the expected version.
has_version() {
  local name="$1" out
  [[ -x "${BIN_DIR}/${name}" ]] || return 1
  out="$(version_output "${name}")" || return 1
  # Whole-word match ("v1.36.3" must not match "v1.36.30").
  if [[ " ${out//$'\n'/ } " == *" $(expected_version "${name}") "* ]]; then
    return 0
  fi
  log "${name}: present but reports '${out//$'\n'/ | }'"
  return 1
}

is_current() { [[ "${FORCE:-0}" != 1 ]] && has_version "$1"; }

declare -a SUMMARY=()
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
timed() { # timed LABEL CMD...  -- runs CMD, records and prints its wall-clock time
  local label="$1" start end
  shift
  start="$(date +%s)"
  "$@"
  end="$(date +%s)"
  SUMMARY+=("$(printf '%-28s %6ss  (%s)' "${label}" "$((end - start))" "$(fmt_secs $((end - start)))")")
  log "${label}: done in $(fmt_secs $((end - start)))"
}

# ---------------------------------------------------------------- Kubernetes
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
# Same tags and flags as hack/lib/golang.sh for non-debug release builds.
K8S_TAGS="selinux,notest,grpcnotrace"

k8s_ldflags() {
  local build_date
  if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    build_date="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
  else
    build_date="$(cd "${TOOLS_DIR}/k8s" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
  fi
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    flags+=" -X ${pkg}.gitMajor=${K8S_MAJOR}"
    flags+=" -X ${pkg}.gitMinor=${K8S_MINOR}"
    flags+=" -X ${pkg}.gitCommit="
    flags+=" -X ${pkg}.gitTreeState=clean"
    flags+=" -X ${pkg}.buildDate=${build_date}"
  done
  echo "${flags}"
}

# shellcheck disable=SC2317  # fetch_in/build_in are invoked indirectly via timed
# fetch_in MODULE_DIR TAGS PACKAGE... -- download just the modules PACKAGEs need
fetch_in() {
  local moddir="$1" tags="$2"
  shift 2
  (cd "${moddir}" && nice -n 10 go list -tags="${tags}" -deps "$@" >/dev/null)
}

# shellcheck disable=SC2317
# build_in MODULE_DIR NAME PACKAGE [extra go build args...]
build_in() {
  local moddir="$1" name="$2" pkg="$3"
  shift 3
  local tmp="${BIN_DIR}/.${name}.tmp.$$"
  (cd "${moddir}" && nice -n 10 go build -trimpath -buildvcs=false "$@" -o "${tmp}" "${pkg}")
  mv -f "${tmp}" "${BIN_DIR}/${name}"
}

todo_k8s=()
for b in "${K8S_BINS[@]}"; do
  if is_current "${b}"; then log "${b}: up to date, skipping"; else todo_k8s+=("${b}"); fi
done
if ((${#todo_k8s[@]})); then
  LDFLAGS="$(k8s_ldflags)"
  pkgs=()
  for b in "${todo_k8s[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/${b}"); done
  # Download exactly the modules these packages need (timed separately from compiling).
  timed "fetch modules (k8s)" fetch_in "${TOOLS_DIR}/k8s" "${K8S_TAGS}" "${pkgs[@]}"
  for b in "${todo_k8s[@]}"; do
    log "building ${b} ${K8S_VERSION} ..."
    timed "${b}" build_in "${TOOLS_DIR}/k8s" "${b}" "k8s.io/kubernetes/cmd/${b}" \
      -tags="${K8S_TAGS}" -ldflags="${LDFLAGS}"
  done
fi

# ---------------------------------------------------------------------- etcd
if is_current etcd; then
  log "etcd: up to date, skipping"
else
  timed "fetch modules (etcd)" fetch_in "${TOOLS_DIR}/etcd" "" go.etcd.io/etcd/server/v3
  log "building etcd ${ETCD_VERSION} ..."
  # etcd's own build uses -trimpath and CGO_ENABLED=0 as well; its version
  # string is a constant in go.etcd.io/etcd/api/v3/version, no -X needed.
  timed "etcd" build_in "${TOOLS_DIR}/etcd" etcd go.etcd.io/etcd/server/v3 -ldflags="-s -w"
fi

# ---------------------------------------------------------------------- kwok
# `go install pkg@version` builds kwok with its own go.mod/go.sum (it pins its
# own k8s.io/* v0.36.x libraries), independent of tools/k8s.
for b in kwok kwokctl; do
  if is_current "${b}"; then
    log "${b}: up to date, skipping"
  else
    log "installing ${b} ${KWOK_VERSION} ..."
    timed "${b}" env GOBIN="${BIN_DIR}" nice -n 10 go install -trimpath -buildvcs=false \
      -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/${b}@${KWOK_VERSION}"
  fi
done

# ------------------------------------------------------------------- summary
rc=0
log "versions:"
for b in "${K8S_BINS[@]}" etcd kwok kwokctl; do
  if has_version "${b}"; then
    printf '  %-24s %s\n' "${b}" "$(version_output "${b}" | head -n1)" >&2
  else
    printf '  %-24s MISSING OR WRONG VERSION\n' "${b}" >&2
    rc=1
  fi
done
if ((${#SUMMARY[@]})); then
  log "build times (wall clock):"
  printf '  %s\n' "${SUMMARY[@]}" >&2
else
  log "nothing to build"
fi
exit "${rc}"
