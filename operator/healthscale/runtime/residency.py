"""Data residency in the Kopf runtime: the admission webhook, its server and configuration, and the
residency step of every ClinicalSLO cycle.

- ``run_cycle`` is what the ClinicalSLO timer calls instead of ``cycle.run``: enforce the region
  requirement, plan and scale, audit where the pods run (``service.residency.run_cycle``), and
  publish the residency metrics.
- ``register`` adds, when a webhook port is set, a validating admission handler for Pods labelled
  ``healthscale.io/data-class`` and the HTTPS server that serves it. Kopf's own managed webhook
  configuration cannot set a ``namespaceSelector`` (and overwrites every webhook in its object),
  so the server applies its own ValidatingWebhookConfiguration each time it (re)starts: one webhook,
  ``failurePolicy: Fail``, limited to namespaces labelled ``healthscale.io/residency=enforced``
  and to pods with the data-class label. The certificate is self-signed at start-up (good for the
  local control plane, which reaches the server on loopback); its CA bundle goes into the
  configuration.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from healthscale.adapters import kube, placement
from healthscale.api import clinicalslo, surgeschedule
from healthscale.domain import residency as rules
from healthscale.runtime import metrics
from healthscale.service import cycle
from healthscale.service import residency

WEBHOOK_ID = "residency"
"""Kopf handler id; also the last segment of the webhook URL."""
CONFIGURATION_NAME = "healthscale-residency"

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config:
    """The residency settings of ``healthscale run``."""

    region_label: str = rules.DEFAULT_REGION_LABEL
    default_regions: tuple[str, ...] = ()
    evict: bool = False
    webhook_port: int = 0
    """0 runs no admission webhook."""
    webhook_host: str = "127.0.0.1"
    """The host the API server calls (and the certificate names)."""
    webhook_addr: str = "127.0.0.1"
    """The address the webhook server listens on."""
    configuration_name: str = CONFIGURATION_NAME

    def settings(self) -> residency.Settings:
        return residency.Settings(self.region_label, self.default_regions, self.evict)


@dataclasses.dataclass
class Runtime:
    """Residency's share of Kopf's memo."""

    config: Config
    placement: placement.Placement


def run_cycle(memo: Any, slo: clinicalslo.ClinicalSLO, schedules: list[surgeschedule.SurgeSchedule], now: int,
              ports_: cycle.Ports, memory: cycle.Memory, status: clinicalslo.ClinicalSLOStatus,
              dry_run: bool) -> cycle.Result:
    """One ClinicalSLO cycle with residency (a plain ``cycle.run`` when residency is not configured)."""
    runtime = memo.get("residency")
    if not isinstance(runtime, Runtime):
        return cycle.run(slo, schedules, now, ports_, memory, status, dry_run)
    result, outcome = residency.run_cycle(slo, schedules, now, ports_, runtime.placement, runtime.config.settings(),
                                          memory, status, dry_run)
    metrics.record_residency(slo.metadata.namespace, slo.metadata.name, outcome)
    return result


# ------------------------------------------------------------------------------- admission


def _admit(runtime: Runtime, body: Mapping[str, Any], old: Mapping[str, Any] | None,
           request_namespace: str | None) -> rules.Verdict:
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace") or request_namespace
    if not namespace:
        return rules.Verdict(False, "cannot tell the pod's namespace, so cannot check its residency")
    labels, annotations = runtime.placement.namespace_metadata(namespace)
    node = (body.get("spec") or {}).get("nodeName")
    node_labels = (runtime.placement.node_labels(node) or {}) if node else None
    return residency.admit(body, old, namespace, labels, annotations, runtime.config.settings(), node_labels)


def register(runtime: Runtime) -> None:
    """Register the webhook handler and its server with Kopf (only when a webhook port is set)."""
    config = runtime.config
    if not config.webhook_port:
        return

    def admit_pod(body: kopf.Body, namespace: str | None, old: Any = None, **_: Any) -> None:
        """Reject patient-data Pods whose scheduling constraints allow a node outside the regions."""
        try:
            verdict = _admit(runtime, body, old, namespace)
        except (kube.ApiError, kube.TargetNotFound) as error:
            metrics.ADMISSIONS.labels(namespace or "", "error").inc()
            raise kopf.AdmissionError(f"healthscale could not check residency: {error}", code=503) from error
        metrics.ADMISSIONS.labels(namespace or "", "allowed" if verdict.allowed else "denied").inc()
        if not verdict.allowed:
            raise kopf.AdmissionError(verdict.message, code=403)

    kopf.on.validate("", "v1", "pods", id=WEBHOOK_ID, operations=["CREATE", "UPDATE"],
                     labels={residency.DATA_CLASS_LABEL: kopf.PRESENT})(admit_pod)

    def serve_webhook(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = WebhookServer(
            apply=runtime.placement.apply_webhook_configuration, configuration_name=config.configuration_name,
            addr=config.webhook_addr, host=config.webhook_host, port=config.webhook_port)
        settings.admission.managed = None  # our own configuration: Kopf's cannot select namespaces

    kopf.on.startup(id="residency-webhook-server")(serve_webhook)


class WebhookServer(kopf.WebhookServer):
    """Kopf's HTTPS webhook server, with a self-signed certificate made by ``cryptography`` and our
    own ValidatingWebhookConfiguration applied whenever it (re)starts listening."""

    def __init__(self, *, apply: Callable[[dict[str, Any]], None], configuration_name: str,
                 **options: Any) -> None:
        super().__init__(**options)
        self._apply = apply
        self._configuration_name = configuration_name

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for client_config in super().__call__(fn):
            url = f"{str(client_config.get('url', '')).rstrip('/')}/{WEBHOOK_ID}"
            body = residency.webhook_configuration(self._configuration_name, url, client_config.get("caBundle"))
            for attempt in range(5):
                try:
                    await asyncio.to_thread(self._apply, body)
                    break
                except kube.ApiError as error:
                    if not error.retryable or attempt == 4:
                        raise
                    log.warning("applying the residency webhook configuration failed (%s); retrying", error)
                    await asyncio.sleep(2.0 * (attempt + 1))
            log.info("residency webhook at %s (ValidatingWebhookConfiguration %s)", url, self._configuration_name)
            yield client_config

    @staticmethod
    def build_certificate(hostnames: Collection[str], password: str | None = None) -> tuple[bytes, bytes]:
        """A self-signed certificate for the webhook's host names and IP addresses (PEM cert, PEM key)."""
        ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
        names: list[str] = []
        for hostname in dict.fromkeys(hostnames):
            try:
                address = ipaddress.ip_address(hostname)
            except ValueError:
                names.append(hostname)
                continue
            if not address.is_unspecified:
                ips.append(address)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else str(ips[0]))])
        now = dt.datetime.now(dt.timezone.utc)
        alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
        alternatives += [x509.IPAddress(address) for address in ips]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
        return (certificate.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def make_runtime(config: Config) -> Runtime:
    """After ``kube.load_config()``: the residency runtime, its handlers registered with Kopf."""
    runtime = Runtime(config, placement.Placement())
    register(runtime)
    return runtime
