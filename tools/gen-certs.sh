#!/usr/bin/env bash
# Generate a throw-away PKI for a local kube-apiserver with openssl.
#
# Usage: tools/gen-certs.sh OUT_DIR [DAYS]
#
# Writes into OUT_DIR:
#   ca.crt ca.key                 cluster CA (also used as --client-ca-file)
#   apiserver.crt apiserver.key   serving cert for 127.0.0.1 / localhost / kubernetes.default...
#   admin.crt admin.key           client cert, CN=kubernetes-admin O=system:masters
#   sa.key sa.pub                 service-account token signing key pair
#
# Only for local development clusters: keys are unencrypted, the CA is
# generated fresh every time and is valid for DAYS (default 1) days.
set -euo pipefail

OUT="${1:?usage: $0 OUT_DIR [DAYS]}"
DAYS="${2:-1}"
command -v openssl >/dev/null 2>&1 || { echo "gen-certs: openssl not found (apt-get install -y openssl)" >&2; exit 1; }
mkdir -p "${OUT}"
cd "${OUT}"
umask 077

# Run openssl quietly (it prints key-generation progress on stderr), but show
# its output if it fails.
ossl() {
  local out
  if ! out="$(openssl "$@" 2>&1)"; then
    printf 'gen-certs: openssl %s failed:\n%s\n' "$1" "${out}" >&2
    return 1
  fi
}

# CA
ossl req -x509 -newkey rsa:2048 -nodes -sha256 -days "${DAYS}" \
  -keyout ca.key -out ca.crt -subj "/CN=devcluster-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"

# sign NAME SUBJECT EXT   -- key + CSR + cert signed by the CA
sign() {
  local name="$1" subj="$2" ext="$3"
  ossl req -newkey rsa:2048 -nodes -sha256 -keyout "${name}.key" -out "${name}.csr" -subj "${subj}"
  printf '%s\n' "${ext}" > "${name}.ext"
  ossl x509 -req -in "${name}.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
    -sha256 -days "${DAYS}" -extfile "${name}.ext" -out "${name}.crt"
  rm -f "${name}.csr" "${name}.ext"
}

sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

sign admin "/O=system:masters/CN=kubernetes-admin" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

# Service-account signing key pair.
# The API server's own client identity towards aggregated API servers (KEDA's metrics adapter):
# they trust it through the requestheader CA, which is this CA, for the name front-proxy-client only.
sign front-proxy-client "/CN=front-proxy-client" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
ossl pkey -in sa.key -pubout -out sa.pub
rm -f ca.srl

# Sanity check.
openssl verify -CAfile ca.crt apiserver.crt admin.crt front-proxy-client.crt >/dev/null
