#!/usr/bin/env bash
# Build the optional cluster add-ons from Go modules (no images, no Helm charts):
#
#   karpenter-kwok           Karpenter with its KWOK cloud provider
#       via `go install sigs.k8s.io/karpenter/kwok@KARPENTER_VERSION` (Karpenter's own
#       go.mod and go.sum; it has no replace directives, so no wrapper module is needed)
#   keda-operator            KEDA's operator        (github.com/kedacore/keda/v2/cmd/operator)
#   keda-metrics-apiserver   KEDA's external-metrics adapter (.../cmd/adapter); the HPA that
#       KEDA makes reads its metric through it (external.metrics.k8s.io)
#       both from the wrapper module tools/keda (KEDA's go.mod has replace/exclude lines)
#
# and copies the CRDs each one needs, from the same module versions, into CRD_DIR:
#   Karpenter: NodePool, NodeClaim, NodeOverlay, CapacityBuffer (sigs.k8s.io/karpenter/pkg/apis/crds)
#              and KWOKNodeClass (kwok/apis/crds)
#   KEDA:      ScaledObject, ScaledJob, TriggerAuthentication, ClusterTriggerAuthentication,
#              CloudEventSource, ClusterCloudEventSource (config/crd/bases)
#
# Usage: tools/build-addons.sh [TARGET_DIR [CRD_DIR]]
#   TARGET_DIR default: <repo>/.devcluster/bin;  CRD_DIR default: TARGET_DIR/../addon-crds
#
# Idempotent: a binary in TARGET_DIR whose embedded build info (`go version -m`) names the
# expected module version and Go toolchain is skipped. CRDs are copied every run (cheap).
#
# Toolchain: Karpenter's go.mod says `go 1.26.9`, newer than the machines' Go 1.26.8, so the
# add-ons are built with ADDONS_GOTOOLCHAIN (default go1.26.10, an approved release that the
# go command fetches through the module proxy into GOMODCACHE the first time, about 76 MB).
# KEDA only needs 1.26.0 but is built with the same toolchain, so the two share the compiled
# standard library and the dependencies they have in common (controller-runtime, prometheus,
# zap, ...). The repo's own go (GOTOOLCHAIN=local) is untouched outside this script.
#
# Environment knobs (all optional):
#   KARPENTER_VERSION     sigs.k8s.io/karpenter module version (default below)
#   ADDONS_GOTOOLCHAIN    Go toolchain for the add-ons (default below)
#   FORCE=1               rebuild everything even if present and correct
set -euo pipefail

KARPENTER_VERSION="${KARPENTER_VERSION:-v1.15.0}"
ADDONS_GOTOOLCHAIN="${ADDONS_GOTOOLCHAIN:-go1.26.10}"

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/.." && pwd)"
BIN_DIR="${1:-${REPO_ROOT}/.devcluster/bin}"
mkdir -p "${BIN_DIR}"
BIN_DIR="$(cd "${BIN_DIR}" && pwd)"
CRD_DIR="${2:-$(dirname "${BIN_DIR}")/addon-crds}"
mkdir -p "${CRD_DIR}"
CRD_DIR="$(cd "${CRD_DIR}" && pwd)"

export CGO_ENABLED=0
export GO111MODULE=on
export GOWORK=off   # never let a go.work elsewhere in the repo pull these modules into a workspace

log() { printf '[build-addons] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null 2>&1 || die "go not found in PATH"
[[ "${KARPENTER_VERSION}" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || die "KARPENTER_VERSION must be an exact release such as v1.15.0, got ${KARPENTER_VERSION}"
[[ "${ADDONS_GOTOOLCHAIN}" =~ ^go[0-9]+\.[0-9]+(\.[0-9]+)?$ ]] \
  || die "ADDONS_GOTOOLCHAIN must name a release such as go1.26.10, got ${ADDONS_GOTOOLCHAIN}"

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

# From here on every go command runs the add-ons' toolchain. The first use downloads it.
export GOTOOLCHAIN="${ADDONS_GOTOOLCHAIN}"
# shellcheck disable=SC2317  # invoked indirectly via timed
fetch_toolchain() { (cd "${TOOLS_DIR}/keda" && go version >/dev/null); }
read -r local_go modcache goos goarch <<<"$(GOTOOLCHAIN=local go env GOVERSION GOMODCACHE GOOS GOARCH | tr '\n' ' ')"
if [[ "${local_go}" != "${ADDONS_GOTOOLCHAIN}" \
  && ! -d "${modcache}/golang.org/toolchain@v0.0.1-${ADDONS_GOTOOLCHAIN}.${goos}-${goarch}" ]]; then
  timed "toolchain ${ADDONS_GOTOOLCHAIN}" fetch_toolchain
fi
log "$(cd "${TOOLS_DIR}/keda" && go version); target dir: ${BIN_DIR}; CRDs: ${CRD_DIR}"

KEDA_VERSION="$(cd "${TOOLS_DIR}/keda" && go list -m -f '{{.Version}}' github.com/kedacore/keda/v2)" # e.g. v2.21.0
log "versions: karpenter ${KARPENTER_VERSION}, keda ${KEDA_VERSION}"

# name -> main package, module, module version
pkg_of() {
  case "$1" in
    karpenter-kwok) echo sigs.k8s.io/karpenter/kwok ;;
    keda-operator) echo github.com/kedacore/keda/v2/cmd/operator ;;
    keda-metrics-apiserver) echo github.com/kedacore/keda/v2/cmd/adapter ;;
    *) die "unknown add-on $1" ;;
  esac
}
mod_of() {
  case "$1" in
    karpenter-kwok) echo "sigs.k8s.io/karpenter ${KARPENTER_VERSION}" ;;
    keda-*) echo "github.com/kedacore/keda/v2 ${KEDA_VERSION}" ;;
  esac
}

# The build info the go command embeds: first line "<file>: goX.Y.Z", then tab-separated
# "path <main package>", "mod <main module> <version>" and "dep <module> <version>" lines.
buildinfo() { go version -m "${BIN_DIR}/$1" 2>/dev/null; }

# 0 if BIN_DIR/$1 exists and was built from the expected package, module version and toolchain.
has_version() {
  local name="$1" info mod ver
  [[ -x "${BIN_DIR}/${name}" ]] || return 1
  info="$(buildinfo "${name}")" || return 1
  read -r mod ver <<<"$(mod_of "${name}")"
  if [[ "${info}" == *": ${ADDONS_GOTOOLCHAIN}"$'\n'* ]] \
    && grep -qP "^\\tpath\\t$(pkg_of "${name}")\$" <<<"${info}" \
    && grep -qP "^\\t(mod|dep)\\t${mod}\\t${ver}(\\t|\$)" <<<"${info}"; then
    return 0
  fi
  log "${name}: present but built from something else: $(head -n1 <<<"${info}")"
  return 1
}

is_current() { [[ "${FORCE:-0}" != 1 ]] && has_version "$1"; }

# ----------------------------------------------------------------- Karpenter
# Upstream's kwok image (`ko build sigs.k8s.io/karpenter/kwok`) leaves
# sigs.k8s.io/karpenter/pkg/operator.Version at "unspecified"; we set it so that the
# build_info metric, the User-Agent and the start-up log name the release.
if is_current karpenter-kwok; then
  log "karpenter-kwok: up to date, skipping"
else
  log "installing karpenter-kwok ${KARPENTER_VERSION} ..."
  # GOBIN is a private temp dir: `go install` names the binary after the package (kwok),
  # which would overwrite KWOK's own kwok binary in BIN_DIR.
  gobin="$(mktemp -d "${BIN_DIR}/.karpenter.XXXXXX")"
  trap 'rm -rf "${gobin}"' EXIT
  timed "karpenter-kwok" env GOBIN="${gobin}" nice -n 10 go install -trimpath -buildvcs=false \
    -ldflags="-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=${KARPENTER_VERSION}" \
    "sigs.k8s.io/karpenter/kwok@${KARPENTER_VERSION}"
  mv -f "${gobin}/kwok" "${BIN_DIR}/karpenter-kwok"
fi

# ---------------------------------------------------------------------- KEDA
# shellcheck disable=SC2317
fetch_keda() { (cd "${TOOLS_DIR}/keda" && nice -n 10 go list -deps "$@" >/dev/null); }
# shellcheck disable=SC2317
build_keda() { # build_keda NAME
  local name="$1" tmp="${BIN_DIR}/.${1}.tmp.$$"
  # Same -X flags as KEDA's Makefile (GO_LDFLAGS); its release images use the bare version.
  (cd "${TOOLS_DIR}/keda" && nice -n 10 go build -trimpath -buildvcs=false \
    -ldflags="-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v} -X github.com/kedacore/keda/v2/version.GitCommit=" \
    -o "${tmp}" "$(pkg_of "${name}")")
  mv -f "${tmp}" "${BIN_DIR}/${name}"
}
todo_keda=()
for b in keda-operator keda-metrics-apiserver; do
  if is_current "${b}"; then log "${b}: up to date, skipping"; else todo_keda+=("${b}"); fi
done
if ((${#todo_keda[@]})); then
  pkgs=()
  for b in "${todo_keda[@]}"; do pkgs+=("$(pkg_of "${b}")"); done
  timed "fetch modules (keda)" fetch_keda "${pkgs[@]}"
  for b in "${todo_keda[@]}"; do
    log "building ${b} ${KEDA_VERSION} ..."
    timed "${b}" build_keda "${b}"
  done
fi

# ---------------------------------------------------------------------- CRDs
# The module zips carry the generated CRD manifests; copy them (writable) from exactly the
# module versions the binaries were built from.
karpenter_dir="$(go mod download -json "sigs.k8s.io/karpenter@${KARPENTER_VERSION}" \
  | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
keda_dir="$(cd "${TOOLS_DIR}/keda" && go list -m -f '{{.Dir}}' github.com/kedacore/keda/v2)"
[[ -d "${karpenter_dir}" ]] || die "cannot find the sigs.k8s.io/karpenter@${KARPENTER_VERSION} module directory"
[[ -d "${keda_dir}" ]] || die "cannot find the github.com/kedacore/keda/v2@${KEDA_VERSION} module directory"
CRDS=(
  # NodeOverlay and CapacityBuffer are only watched behind the feature gates of the same
  # names; their CRDs are copied anyway so that turning a gate on needs no rebuild.
  "${karpenter_dir}/pkg/apis/crds/karpenter.sh_nodepools.yaml"
  "${karpenter_dir}/pkg/apis/crds/karpenter.sh_nodeclaims.yaml"
  "${karpenter_dir}/pkg/apis/crds/karpenter.sh_nodeoverlays.yaml"
  "${karpenter_dir}/pkg/apis/crds/autoscaling.x-k8s.io_capacitybuffers.yaml"
  "${karpenter_dir}/kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml"
  # keda-operator runs the CloudEventSource controllers unconditionally, so it needs the
  # eventing.keda.sh CRDs too (a controller whose kind is missing stops the manager).
  "${keda_dir}/config/crd/bases/keda.sh_scaledobjects.yaml"
  "${keda_dir}/config/crd/bases/keda.sh_scaledjobs.yaml"
  "${keda_dir}/config/crd/bases/keda.sh_triggerauthentications.yaml"
  "${keda_dir}/config/crd/bases/keda.sh_clustertriggerauthentications.yaml"
  "${keda_dir}/config/crd/bases/eventing.keda.sh_cloudeventsources.yaml"
  "${keda_dir}/config/crd/bases/eventing.keda.sh_clustercloudeventsources.yaml"
)
for f in "${CRDS[@]}"; do
  [[ -f "${f}" ]] || die "CRD not found in the module: ${f}"
  install -m 0644 "${f}" "${CRD_DIR}/"
done
log "copied ${#CRDS[@]} CRDs into ${CRD_DIR}"

# ------------------------------------------------------------------- summary
rc=0
log "versions:"
for b in karpenter-kwok keda-operator keda-metrics-apiserver; do
  if has_version "${b}"; then
    printf '  %-24s %s (%s)\n' "${b}" "$(mod_of "${b}")" "$(buildinfo "${b}" | head -n1 | sed 's/.*: //')" >&2
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
