"""The admission webhook's certificates: issued with ``cryptography``, kept in a Secret.

The Secret (type ``kubernetes.io/tls``, in the operator's namespace) is shared by every replica:

- ``tls.crt``, ``tls.key``: the serving certificate and its key;
- ``ca.crt``: every CA the webhook configuration must trust, the current one first;
- ``ca.key``: the current CA's key, so that any replica can renew the serving certificate. Only in
  a Secret the operator issued itself (``--webhook-cert-source operator``); a Secret you provide,
  or cert-manager's, needs just the first three (``ca.crt`` is optional there).

Replicas converge on one Secret: it is created only if absent (the loser of a race gets a 409
and reads the winner's) and replaced only at the resourceVersion read (a 409 means someone else
renewed it first). ``domain.certificates`` decides when to renew; ``execute`` carries a plan out.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import ipaddress
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import kubernetes
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from healthscale import ports
from healthscale.adapters import kube
from healthscale.domain import certificates

TLS_CERT, TLS_KEY, CA_CERT, CA_KEY = "tls.crt", "tls.key", "ca.crt", "ca.key"
SECRET_TYPE = "kubernetes.io/tls"


@dataclasses.dataclass(frozen=True)
class Material:
    """What the Secret holds (PEM bytes)."""

    certificate: bytes
    key: bytes
    ca_bundle: bytes = b""
    """Every CA to trust; empty when the Secret has no ca.crt (then the serving chain's last certificate)."""
    ca_key: bytes = b""

    def trusted(self) -> bytes:
        """The CA bundle the webhook configuration gets."""
        if self.ca_bundle:
            return self.ca_bundle
        chain = certificates_in(self.certificate)
        return chain[-1].public_bytes(serialization.Encoding.PEM) if chain else b""

    def data(self) -> dict[str, str]:
        """The Secret's ``data`` (base64)."""
        raw = {TLS_CERT: self.certificate, TLS_KEY: self.key, CA_CERT: self.ca_bundle, CA_KEY: self.ca_key}
        return {key: base64.b64encode(value).decode() for key, value in raw.items() if value}


def material_of(secret: Mapping[str, Any]) -> Material | None:
    """The Secret's certificates; None while it lacks a serving certificate or key."""
    data = secret.get("data") or {}
    decoded = {key: base64.b64decode(str(value)) for key, value in data.items() if key in (TLS_CERT, TLS_KEY, CA_CERT, CA_KEY)}
    if not decoded.get(TLS_CERT) or not decoded.get(TLS_KEY):
        return None
    return Material(decoded[TLS_CERT], decoded[TLS_KEY], decoded.get(CA_CERT, b""), decoded.get(CA_KEY, b""))


# ------------------------------------------------------------------------------------ reading


def certificates_in(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem.strip() else []


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _cert(certificate: x509.Certificate) -> certificates.Cert:
    return certificates.Cert(fingerprint(certificate), certificate.not_valid_before_utc.timestamp(),
                             certificate.not_valid_after_utc.timestamp())


def names_of(certificate: x509.Certificate) -> frozenset[str]:
    """The DNS names and IP addresses a certificate is valid for."""
    try:
        alternatives = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset()
    ips = [str(address) for address in alternatives.get_values_for_type(x509.IPAddress)]
    return frozenset([*alternatives.get_values_for_type(x509.DNSName), *ips])


def _signed_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # another issuer, another key type, another key
        return False
    return True


def held(material: Material | None) -> certificates.Held:
    """The Secret as ``domain.certificates.plan`` sees it. Without ca.key there is no current CA."""
    if material is None:
        return certificates.Held()
    bundle = certificates_in(material.ca_bundle)
    serving = certificates_in(material.certificate)
    ca = bundle[0] if bundle and material.ca_key else None
    leaf = serving[0] if serving else None
    issuer = next((item for item in bundle if leaf is not None and _signed_by(leaf, item)), None)
    return certificates.Held(
        ca=_cert(ca) if ca is not None else None,
        older_cas=tuple(_cert(item) for item in (bundle[1:] if ca is not None else bundle)),
        serving=_cert(leaf) if leaf is not None else None,
        serving_names=names_of(leaf) if leaf is not None else frozenset(),
        serving_issuer=fingerprint(issuer) if issuer is not None else None,
    )


def serial(material: Material) -> int:
    """The serving certificate's serial number (which certificate a server is using)."""
    return certificates_in(material.certificate)[0].serial_number


def not_after(material: Material) -> float:
    return certificates_in(material.certificate)[0].not_valid_after_utc.timestamp()


# ------------------------------------------------------------------------------------ issuing


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _window(now: float, lifetime: float) -> tuple[dt.datetime, dt.datetime]:
    issued = dt.datetime.fromtimestamp(now, dt.timezone.utc)
    return (issued - dt.timedelta(seconds=certificates.BACKDATE_SECONDS), issued + dt.timedelta(seconds=lifetime))


def issue_ca(now: float, lifetime: float) -> tuple[bytes, bytes]:
    """A new CA (PEM certificate, PEM key), good for ``lifetime`` seconds."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _window(now, lifetime)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "healthscale"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"healthscale webhook CA {start:%Y%m%dT%H%M%S}")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_serving(ca_certificate: bytes, ca_key: bytes, names: Sequence[str], now: float,
                  lifetime: float) -> tuple[bytes, bytes]:
    """A serving certificate for ``names`` (DNS names or IP addresses), signed by the CA."""
    ca = certificates_in(ca_certificate)[0]
    signer = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the webhook CA key is not an EC key")
    ips: list[x509.GeneralName] = []
    dns: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            dns.append(x509.DNSName(name))
            continue
        if not address.is_unspecified:
            ips.append(x509.IPAddress(address))
    if not dns and not ips:
        raise ValueError("a serving certificate needs a host name or IP address")
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _window(now, lifetime)
    end = min(end, ca.not_valid_after_utc)  # never outlive the CA that vouches for it
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(names[0]))])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([*dns, *ips]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def execute(material: Material | None, plan: certificates.Plan, names: Sequence[str], now: float,
            lifetime: float, ca_lifetime: float) -> Material:
    """The Secret's new contents after ``plan`` (from ``domain.certificates.plan`` on ``held(material)``)."""
    bundle = certificates_in(material.ca_bundle) if material is not None else []
    if plan.new_ca or material is None or not material.ca_key:
        ca_certificate, ca_key = issue_ca(now, ca_lifetime)
    else:
        ca_certificate, ca_key = bundle[0].public_bytes(serialization.Encoding.PEM), material.ca_key
    kept = [item.public_bytes(serialization.Encoding.PEM) for item in bundle if fingerprint(item) in plan.keep]
    current = certificates_in(ca_certificate)[0]
    others = [pem for pem in kept if certificates_in(pem)[0] != current]
    if plan.new_serving or material is None:
        certificate, key = issue_serving(ca_certificate, ca_key, names, now, lifetime)
    else:
        certificate, key = material.certificate, material.key
    return Material(certificate, key, b"".join([ca_certificate, *others]), ca_key)


# ------------------------------------------------------------------------------------ the Secret


class Secrets:
    """Reads, creates and replaces the webhook's certificate Secret."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = kube.TIMEOUT) -> None:
        self._api = kube.Api(api_client, timeout)
        self._core = kubernetes.client.CoreV1Api(self._api.client)

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def read(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as the API's JSON, None when there is none."""
        try:
            return self._api.json(f"read Secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace)
        except ports.NotFound:
            return None

    def create(self, namespace: str, name: str, material: Material, labels: Mapping[str, str]) -> dict[str, Any]:
        """Create it; ``ports.ApiError`` with status 409 when another replica was first."""
        body = {"apiVersion": "v1", "kind": "Secret", "type": SECRET_TYPE,
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}, "data": material.data()}
        return self._api.json(f"create Secret {namespace}/{name}", self._core.create_namespaced_secret, namespace,
                              body, field_manager=kube.FIELD_MANAGER)

    def replace(self, secret: Mapping[str, Any], material: Material) -> dict[str, Any]:
        """Replace its data at the resourceVersion read; 409 when it changed meanwhile."""
        metadata = dict(secret.get("metadata") or {})
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        body = {**secret, "data": material.data()}
        return self._api.json(f"replace Secret {namespace}/{name}", self._core.replace_namespaced_secret, name,
                              namespace, body, field_manager=kube.FIELD_MANAGER)


def names_for(service: tuple[str, str] | None, host: str) -> list[str]:
    """The names a serving certificate must carry: the Service's DNS names, or the URL's host."""
    if service is not None:
        namespace, name = service
        return [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
    return [host]


def missing_names(material: Material, names: Collection[str]) -> list[str]:
    """Names the serving certificate of a provided Secret does not carry (for a warning)."""
    return sorted(set(names) - names_of(certificates_in(material.certificate)[0]))
