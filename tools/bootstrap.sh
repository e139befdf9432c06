#!/usr/bin/env bash
# Set-up steps shared by the Makefile and .ci/run. Each step installs what is missing, says what
# it is doing and roughly how long the cold path takes, and does nothing (quickly) when everything
# is in place already. Nothing needs to be run before `make demo` or `make test`.
#
# Usage: tools/bootstrap.sh STEP...
#   venv      .venv with healthscale and its test tools (pip install -e ".[test]", constrained by
#             locks/test.txt when that exists). Reinstalls only when pyproject.toml or the lock
#             changed since the last install (a hash in .venv/.healthscale-installed).
#   system    Debian packages: prometheus + promtool (the local stack), lua5.4 (the Argo CD health
#             check test), openssl and curl (tools/devcluster/up.sh), via apt-get when missing.
#   binaries  kube-apiserver, etcd, kwok... from Go modules into .devcluster/bin (tools/build-binaries.sh).
#   helm      helm from Go modules into .devcluster/bin (tools/build-helm.sh).
#   addons    Karpenter (KWOK provider) and KEDA from Go modules into .devcluster/bin
#             (tools/build-addons.sh). Not part of `make setup`: `make test` builds them in the
#             background while the other integration tests run (tests/integration/conftest.py).
#
# Environment (optional):
#   HEALTHSCALE_PYTHON   the Python the virtualenv is made from (default: python3; needs >= 3.11)
#   VENV                 the virtualenv's directory (default: .venv)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${REPO_ROOT}"
VENV="${VENV:-.venv}"
BASE_PYTHON="${HEALTHSCALE_PYTHON:-python3}"
STAMP="${VENV}/.healthscale-installed"
LOCK="locks/test.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
took() { local s=$((SECONDS - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# apt-get as root, or through sudo.
apt_install() {
  local sudo_=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo_=(sudo)
  fi
  command -v apt-get >/dev/null || die "apt-get not found: install $* with your system's package manager"
  log "apt-get update ..."
  "${sudo_[@]}" apt-get update -qq
  log "apt-get install $* ..."
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ------------------------------------------------------------------------------------------ venv
python_ok() { # python_ok PYTHON: runs, and is >= 3.11
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

make_venv() {
  rm -rf "${VENV}"
  if "${BASE_PYTHON}" -m venv "${VENV}" >/dev/null 2>&1 && "${VENV}/bin/python" -m pip --version >/dev/null 2>&1; then
    return
  fi
  # Debian's python3 ships venv's ensurepip separately (python3-venv / python3.X-venv).
  local minor
  minor="$("${BASE_PYTHON}" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  log "${BASE_PYTHON} -m venv failed (ensurepip missing?); installing python3-venv and python${minor}-venv"
  rm -rf "${VENV}"
  if (apt_install python3-venv "python${minor}-venv") && "${BASE_PYTHON}" -m venv "${VENV}"; then
    return
  fi
  # Last resort: a venv without pip, and pip put into it by the system's pip (pip >= 22.3 has --python).
  log "falling back to a venv without ensurepip, with pip installed by ${BASE_PYTHON} -m pip"
  rm -rf "${VENV}"
  "${BASE_PYTHON}" -m venv --without-pip "${VENV}"
  "${BASE_PYTHON}" -m pip --python "${VENV}/bin/python" install --quiet pip \
    || die "cannot put pip into ${VENV}: install Debian's python3-venv (apt-get install python3-venv)"
}

step_venv() {
  if ! command -v "${BASE_PYTHON}" >/dev/null; then
    log "${BASE_PYTHON} not found; installing Debian's python3 and python3-venv"
    apt_install python3 python3-venv
  fi
  python_ok "${BASE_PYTHON}" || die "$("${BASE_PYTHON}" --version 2>&1) is too old: healthscale needs Python >= 3.11 (set HEALTHSCALE_PYTHON)"

  local constraint=() inputs=(pyproject.toml) want
  if [[ -f "${LOCK}" ]]; then constraint=(-c "${LOCK}"); inputs+=("${LOCK}"); fi
  want="$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)"
  if python_ok "${VENV}/bin/python" && [[ -f "${STAMP}" && "$(cat "${STAMP}")" == "${want}" ]]; then
    log "python: ${VENV} is up to date with pyproject.toml${constraint:+ and ${LOCK}}"
    return
  fi

  local t0=${SECONDS}
  if python_ok "${VENV}/bin/python" && "${VENV}/bin/python" -m pip --version >/dev/null 2>&1; then
    log "python: pyproject.toml${constraint:+ or ${LOCK}} changed since ${VENV} was installed; updating it"
  else
    log "python: creating ${VENV} from $("${BASE_PYTHON}" --version 2>&1) ($(command -v "${BASE_PYTHON}"))"
    make_venv
  fi
  rm -f "${STAMP}"
  log "python: pip install -e \".[test]\"${constraint:+ -c ${LOCK}} into ${VENV}:" \
      "~2-4 min on 2 cores (mostly downloads), once per checkout"
  "${VENV}/bin/python" -m pip install --quiet -e ".[test]" "${constraint[@]}"
  "${VENV}/bin/healthscale" --help >/dev/null || die "${VENV}/bin/healthscale --help failed after the install"
  echo "${want}" >"${STAMP}"
  log "python: ${VENV} ready in $(took "${t0}")"
}

# ---------------------------------------------------------------------------------------- system
step_system() {
  local -A package_of=([prometheus]=prometheus [promtool]=prometheus [lua5.4]=lua5.4 [openssl]=openssl [curl]=curl)
  local tool packages=()
  for tool in prometheus promtool lua5.4 openssl curl; do
    command -v "${tool}" >/dev/null || packages+=("${package_of[${tool}]}")
  done
  if ((${#packages[@]} == 0)); then
    log "system: prometheus, promtool, lua5.4, openssl and curl are installed"
    return
  fi
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  local t0=${SECONDS}
  log "system: installing Debian packages ${packages[*]} (prometheus runs on loopback for the local stack;" \
      "its systemd service is not used; lua5.4 runs the Argo CD health check): ~1 min cold, once per machine"
  apt_install "${packages[@]}"
  for tool in prometheus promtool lua5.4 openssl curl; do
    command -v "${tool}" >/dev/null || die "${tool} still missing after apt-get install"
  done
  log "system: done in $(took "${t0}")"
}

# ------------------------------------------------------------------------------------ Go binaries
need_go() {
  command -v go >/dev/null || die "go not found: the local control plane and helm are built from Go modules.
  Install Go >= 1.26 (https://go.dev/dl/; Debian's golang-go is too old) and put it on PATH."
}

step_binaries() {
  local b missing=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl; do
    [[ -x .devcluster/bin/${b} ]] || missing+=("${b}")
  done
  local t0=${SECONDS}
  if ((${#missing[@]})); then
    need_go
    log "binaries: building ${missing[*]} from Go modules into .devcluster/bin:" \
        "~7-10 min cold on 2 cores (and ~5 GB of Go caches), ~30 s with a warm Go build cache; once per checkout"
    tools/build-binaries.sh
    log "binaries: done in $(took "${t0}")"
  else
    need_go
    # All present: tools/build-binaries.sh checks their versions (~2 s) and rebuilds any that differ;
    # show only what it does beyond the check.
    tools/build-binaries.sh 2>&1 | { grep -v -E 'up to date, skipping|^  [a-z-]+ +(Kubernetes v|Client Version|etcd Version|kwok(ctl)? version)|versions:$|nothing to build|go version|versions: kubernetes' || true; } >&2
    log "binaries: kube-apiserver, etcd, kwok... in .devcluster/bin have the expected versions"
  fi
}

step_helm() {
  if [[ ! -x .devcluster/bin/helm ]]; then
    need_go
    log "helm: building helm from Go modules into .devcluster/bin: ~1.5 min cold, ~1 s with a warm Go build cache"
  else
    need_go
  fi
  tools/build-helm.sh
}

step_addons() {
  need_go
  local t0=${SECONDS}
  log "addons: Karpenter's KWOK provider and KEDA from Go modules into .devcluster/bin (tools/build-addons.sh):" \
      "~13 min cold on 2 cores, seconds when built; make test builds them in the background instead"
  tools/build-addons.sh
  log "addons: done in $(took "${t0}")"
}

(($#)) || die "usage: $0 venv|system|binaries|helm|addons..."
for step in "$@"; do
  case "${step}" in
    venv) step_venv ;;
    system) step_system ;;
    binaries) step_binaries ;;
    helm) step_helm ;;
    addons) step_addons ;;
    *) die "unknown step ${step} (venv, system, binaries, helm, addons)" ;;
  esac
done
