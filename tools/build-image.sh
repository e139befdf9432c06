#!/usr/bin/env bash
# `make image`: build the operator image from the Dockerfile without a Docker daemon.
#
#   tools/build-image.sh [--archive PATH]
#
# 1. Installs buildah, podman, runc, uidmap and mmdebstrap via apt when missing (needs root).
# 2. Once per machine: a base image, localhost/healthscale-base:bookworm-<recipe>, made with
#    `mmdebstrap --variant=minbase` (Debian bookworm's python3 = 3.11, python3-venv, ca-certificates;
#    no docs, man pages or locales) and imported with podman. About 1.5 minutes.
# 3. `buildah bud` of the Dockerfile on that base (PYTHON_IMAGE), tagged healthscale:<version from
#    pyproject.toml> -- the chart's default image (values.yaml image.repository + the chart's
#    appVersion) -- both as localhost/healthscale:<version> (podman's name for a local short name) and
#    docker.io/library/healthscale:<version> (what a kubelet resolves the short name to). About
#    1.5 minutes; skipped when the image's recorded input hash (Dockerfile, .dockerignore,
#    pyproject.toml, README.md, locks/runtime.txt, operator/, the base) is unchanged.
# 4. With --archive PATH: `podman save` as a docker-archive, for `kind load image-archive PATH` (or
#    `ctr images import`); `podman push` publishes it (README: "Build and publish the image").
#
# Storage: podman/buildah's default root (/var/lib/containers) with the vfs driver, which works
# everywhere (no overlay or fuse needed). Prints the image's name on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

archive=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --archive) archive="$2"; shift 2 ;;
        --archive=*) archive="${1#--archive=}"; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

say() { echo "== build-image: $*" >&2; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
[[ -n "$version" ]] || { echo "no version in pyproject.toml" >&2; exit 1; }
image="localhost/healthscale:$version"
kube_name="docker.io/library/healthscale:$version"
export STORAGE_DRIVER=vfs  # read by both buildah and podman
podman=(podman --storage-driver vfs)
buildah=(buildah --storage-driver vfs)

# 1. Tools.
missing=()
for tool in mmdebstrap buildah podman runc newuidmap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    say "installing mmdebstrap buildah podman runc uidmap via apt (missing: ${missing[*]}; about 1 minute)"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends mmdebstrap buildah podman runc uidmap >/dev/null
fi

# 2. The base. Its tag is a hash of its recipe, so a recipe change builds a new one.
base_packages="python3,python3-venv,ca-certificates,passwd"
base_options=(--variant=minbase "--include=$base_packages" --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
              "--dpkgopt=path-exclude=/usr/share/doc/*" "--dpkgopt=path-include=/usr/share/doc/*/copyright"
              "--dpkgopt=path-exclude=/usr/share/man/*" "--dpkgopt=path-exclude=/usr/share/locale/*"
              "--dpkgopt=path-exclude=/usr/share/info/*")
base_recipe=$(printf '%s\n' bookworm "${base_options[@]}" | sha256sum | cut -c1-12)
base="localhost/healthscale-base:bookworm-$base_recipe"
if ! "${podman[@]}" image exists "$base"; then
    say "making the base $base with mmdebstrap (Debian bookworm minbase + $base_packages; about 1.5 minutes, once)"
    started=$SECONDS
    workdir=$(mktemp -d)
    trap 'rm -rf "$workdir"' EXIT
    mmdebstrap --quiet "${base_options[@]}" bookworm "$workdir/base.tar"
    "${podman[@]}" import --quiet --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
        "$workdir/base.tar" "$base" >/dev/null
    rm -rf "$workdir"
    say "base ready in $((SECONDS - started))s"
fi

# 3. The image, unless its inputs are unchanged.
base_id=$("${podman[@]}" image inspect --format '{{.Id}}' "$base")
inputs=$( {
    echo "$base_id"
    sha256sum Dockerfile .dockerignore pyproject.toml README.md locks/runtime.txt
    find operator -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-64)
current=$("${podman[@]}" image inspect --format '{{index .Labels "io.healthscale.inputs"}}' "$image" 2>/dev/null || true)
current_id=$("${podman[@]}" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
if [[ "$current" == "$inputs" ]]; then
    say "$image is up to date (inputs ${inputs:0:12} unchanged)"
else
    # No --layers: with vfs every cached layer is a full copy of the file system, which costs more
    # than it saves; the input hash above is the cache.
    say "building $image on $base (about 1.5 minutes)"
    started=$SECONDS
    # --isolation chroot and --network host: no user namespaces or CNI needed. pip inside the build
    # trusts what the host trusts (a proxy's CA included), hence the host's CA bundle, read-only.
    ca_bundle=()
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] && \
        ca_bundle=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
    "${buildah[@]}" bud --quiet --isolation chroot --network host --pull=never \
        "${ca_bundle[@]}" --build-arg "PYTHON_IMAGE=$base" \
        --label "io.healthscale.inputs=$inputs" --label "org.opencontainers.image.version=$version" \
        --tag "$image" --tag "$kube_name" . >/dev/null
    say "built in $((SECONDS - started))s"
    # The previous build, now untagged: with vfs it holds a full copy of its file system.
    if [[ -n "$current_id" && "$current_id" != "$("${podman[@]}" image inspect --format '{{.Id}}' "$image")" ]]; then
        "${podman[@]}" rmi "$current_id" >/dev/null 2>&1 || true
    fi
fi
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image")
say "$image: $((size / 1000000)) MB"

# 4. Export.
if [[ -n "$archive" ]]; then
    mkdir -p "$(dirname "$archive")"
    rm -f "$archive"
    "${podman[@]}" save --quiet --format docker-archive --output "$archive" "$kube_name"
    say "saved $kube_name to $archive (kind load image-archive $archive)"
fi
echo "$image"
