"""The residency admission webhook: its HTTPS server, its caches and its certificate, off Kopf.

Every replica serves admission, the elected one and the ones Kopf peering keeps paused alike, and
none of it runs on Kopf's worker threads, so planning cycles stuck on a silent Prometheus cannot
delay an answer. ``start`` runs, each in a daemon thread of its own:

- the server: an asyncio loop with an aiohttp HTTPS server (``POST /residency`` for
  AdmissionReviews, ``GET /readyz`` for the readiness probe). It answers from memory with
  ``service.admission.decide``; it starts listening once the certificate is loaded and the caches
  have their first lists, and it reloads the certificate in place when the Secret changes;
- the caches (``adapters.watchcache``): namespaces (opt-in label, allowed regions, default
  class), nodes (region label) and the certificate Secret, each kept by list and watch;
- the keeper: makes sure the Secret holds a certificate (``--webhook-cert-source operator``:
  issue, renew and rotate it, ``domain.certificates``; ``secret`` or ``cert-manager``: read what
  someone else keeps there), hands each new one to the server, and applies the
  ValidatingWebhookConfiguration with the CA bundle to trust (left out for cert-manager, whose CA
  injector fills it in) whenever the bundle changes, and every ``REAPPLY_SECONDS`` to undo drift.

Logs never carry a pod's name or labels: an allowed pod is a DEBUG line, a denied one a WARNING
that names the namespace, the data class and the missing constraint. There is no access log.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import logging
import pathlib
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from aiohttp import web

from healthscale import ports
from healthscale.adapters import certificates, placement, watchcache
from healthscale.domain import certificates as rotation
from healthscale.runtime import metrics
from healthscale.service import admission, residency

CONFIGURATION_NAME = "healthscale-residency"
SOURCES = ("operator", "secret", "cert-manager")
DEFAULT_LIFETIME_SECONDS = 90 * 86400.0
CA_LIFETIMES = 10
"""The operator's CA lives this many serving-certificate lifetimes."""
REAPPLY_SECONDS = 600.0
NAMESPACE_WAIT_SECONDS = 2.0
"""A namespace created a moment before its first pod may not have reached the cache yet."""
SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

log = logging.getLogger(__name__)
T = TypeVar("T", covariant=True)


def own_namespace() -> str:
    """The operator's namespace in a pod; ``default`` elsewhere."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


@dataclasses.dataclass(frozen=True)
class Config:
    """The webhook settings of ``healthscale run``."""

    port: int = 0
    """0 runs no admission webhook."""
    addr: str = "127.0.0.1"
    """The address the server listens on."""
    host: str = "127.0.0.1"
    """Without ``service``: the host in the webhook's URL (and in its certificate)."""
    service: tuple[str, str] | None = None
    """(namespace, name) of a Service in front of every replica; the API server calls it instead of a URL."""
    configuration_name: str = CONFIGURATION_NAME
    cert_source: str = "operator"
    cert_secret: tuple[str, str] | None = None
    """(namespace, name); None: ``<configuration name>-cert`` in the operator's namespace."""
    cert_lifetime: float = DEFAULT_LIFETIME_SECONDS
    namespaces: tuple[str, ...] = ()
    """The operator's ``--namespace`` list: the webhook judges only these (empty: every enforced namespace)."""
    """Of the serving certificates the operator issues (renewed with a third of it left)."""

    def __post_init__(self) -> None:
        if self.cert_source not in SOURCES:
            raise ValueError(f"webhook certificate source {self.cert_source!r} is not one of {', '.join(SOURCES)}")
        if self.cert_lifetime < 60:
            raise ValueError("the webhook certificate lifetime must be at least a minute")

    @property
    def secret(self) -> tuple[str, str]:
        return self.cert_secret or (own_namespace(), f"{self.configuration_name}-cert")

    @property
    def names(self) -> list[str]:
        return certificates.names_for(self.service, self.host)

    @property
    def overlap(self) -> float:
        """How long a new CA (or serving certificate) waits for every replica and the API server."""
        return min(300.0, self.cert_lifetime / 12)

    @property
    def interval(self) -> float:
        """How often the keeper looks at the certificate without being woken by a change."""
        return min(60.0, self.cert_lifetime / 30)

    def configuration(self, ca_bundle: bytes | None) -> dict[str, Any]:
        bundle = base64.b64encode(ca_bundle).decode() if ca_bundle else None
        if self.service is not None:
            namespace, name = self.service
            return admission.configuration(self.configuration_name, service=(namespace, name, self.port),
                                           ca_bundle=bundle, namespaces=self.namespaces)
        return admission.configuration(self.configuration_name, url=f"https://{self.host}:{self.port}{admission.PATH}",
                                       ca_bundle=bundle, namespaces=self.namespaces)


class Cache(Protocol[T]):
    """What the webhook uses of an ``adapters.watchcache.Cache``."""

    synced: threading.Event

    def get(self, name: str) -> T | None: ...

    def start(self) -> Any: ...

    def stop(self) -> None: ...


class SecretStore(Protocol):
    """What the keeper uses of ``adapters.certificates.Secrets``."""

    def read(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create(self, namespace: str, name: str, material: certificates.Material,
               labels: Mapping[str, str]) -> dict[str, Any]: ...

    def replace(self, secret: Mapping[str, Any], material: certificates.Material) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Configurations(Protocol):
    """What the keeper uses of ``adapters.placement.Placement``."""

    def apply_webhook_configuration(self, body: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Webhook:
    """One replica's admission webhook (``start`` it, ``stop`` it). The keyword arguments replace
    the cluster-facing parts (tests)."""

    def __init__(self, config: Config, settings: residency.Settings, *,
                 namespaces: Cache[tuple[dict[str, str], dict[str, str]]] | None = None,
                 nodes: Cache[dict[str, str]] | None = None, secret: Cache[dict[str, Any]] | None = None,
                 secrets: SecretStore | None = None, configurations: Configurations | None = None) -> None:
        self.config = config
        self.settings = settings
        namespace, name = config.secret
        self._wake = threading.Event()
        self.namespaces = namespaces or watchcache.Cache("namespaces", lambda core: core.list_namespace,
                                                         watchcache.labels_and_annotations)
        self.nodes = nodes or watchcache.Cache("nodes", lambda core: core.list_node, watchcache.node_labels)
        self.secret = secret or watchcache.Cache(
            f"Secret {namespace}/{name}", lambda core: core.list_namespaced_secret, watchcache.whole,
            args=(namespace,), field_selector=f"metadata.name={name}", on_change=self._wake.set)
        self._secrets = secrets or certificates.Secrets()
        self._placement = configurations or placement.Placement()
        self._stopped = threading.Event()
        self.serving: certificates.Material | None = None
        """What the server serves (or is about to): the keeper's last hand-over."""
        self._applied: tuple[bytes | None, float] | None = None
        self._warned_names: frozenset[str] = frozenset()
        self._loop = asyncio.new_event_loop()
        self._context: ssl.SSLContext | None = None
        self._first = asyncio.Event()
        self._stop = asyncio.Event()
        self.listening = threading.Event()
        """Set once the server accepts connections."""
        self._threads = [threading.Thread(target=self._serve, name="webhook-server", daemon=True),
                         threading.Thread(target=self._keep_forever, name="webhook-certificates", daemon=True)]

    # ------------------------------------------------------------------------------ lifecycle

    def start(self, keeper: bool = True) -> Webhook:
        """Start the caches, the server and (unless a test calls ``keep`` itself) the keeper."""
        self.namespaces.start()
        self.nodes.start()
        self.secret.start()
        for thread in self._threads if keeper else self._threads[:1]:
            thread.start()
        where = (f"Service {'/'.join(self.config.service)}" if self.config.service
                 else f"https://{self.config.host}:{self.config.port}{admission.PATH}")
        log.info("residency webhook starting on %s:%d for %s (ValidatingWebhookConfiguration %s, certificate: %s, "
                 "Secret %s)", self.config.addr, self.config.port, where, self.config.configuration_name,
                 self.config.cert_source, "/".join(self.config.secret))
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)
        if not self._threads[0].is_alive() and not self._loop.is_closed():
            self._loop.close()  # never started (the server thread closes it otherwise)
        self.namespaces.stop()
        self.nodes.stop()
        self.secret.stop()
        self._secrets.close()
        self._placement.close()

    @property
    def ready(self) -> bool:
        return self.listening.is_set() and self.namespaces.synced.is_set() and self.nodes.synced.is_set()

    # ------------------------------------------------------------------------------ the keeper

    def _keep_forever(self) -> None:
        self.secret.synced.wait(timeout=30)  # a first look at what is there, so as not to issue needlessly
        while not self._stopped.is_set():
            try:
                self.keep(time.time())
            except (ports.ApiError, ports.NotFound, ValueError) as error:
                log.warning("residency webhook certificate: %s; trying again in %.0fs", error, self.config.interval)
            self._wake.wait(self.config.interval)
            self._wake.clear()

    def keep(self, now: float) -> None:
        """One look: the Secret holds a good certificate, the server serves it, the API server trusts it."""
        namespace, name = self.config.secret
        raw = self.secret.get(name)
        material = certificates.material_of(raw) if raw is not None else None
        if self.config.cert_source == "operator":
            material = self._renewed(raw, material, now)
        elif material is None:
            raise ValueError(f"Secret {namespace}/{name} has no tls.crt and tls.key (yet)"
                             + (": is cert-manager's Certificate issued?" if self.config.cert_source == "cert-manager"
                                else ""))
        else:
            missing = frozenset(certificates.missing_names(material, self.config.names))
            if missing and missing != self._warned_names:
                log.warning("the certificate in Secret %s/%s does not name %s: the API server will refuse it",
                            namespace, name, ", ".join(sorted(missing)))
            self._warned_names = missing
        assert material is not None
        self._serve_material(material)
        bundle = None if self.config.cert_source == "cert-manager" else material.trusted()
        if self._applied is None or self._applied[0] != bundle or now - self._applied[1] >= REAPPLY_SECONDS:
            self._placement.apply_webhook_configuration(self.config.configuration(bundle))
            if self._applied is None or self._applied[0] != bundle:
                count = len(certificates.certificates_in(bundle)) if bundle else 0
                log.info("ValidatingWebhookConfiguration %s applied (%s)", self.config.configuration_name,
                         f"trusting {count} CA(s)" if bundle else "CA bundle left to cert-manager")
            self._applied = (bundle, now)

    def _renewed(self, raw: Mapping[str, Any] | None, material: certificates.Material | None,
                 now: float) -> certificates.Material:
        """The operator's own certificate, issued or renewed when the plan says so; a race lost is no error."""
        namespace, name = self.config.secret
        names = self.config.names
        for _ in range(3):
            plan = rotation.plan(certificates.held(material), now, names, self.config.overlap)
            if not plan.changed:
                assert material is not None
                return material
            fresh = certificates.execute(material, plan, names, now, self.config.cert_lifetime,
                                         self.config.cert_lifetime * CA_LIFETIMES)
            try:
                if raw is None:
                    self._secrets.create(namespace, name, fresh, {"app.kubernetes.io/managed-by": "healthscale"})
                else:
                    self._secrets.replace(raw, fresh)
            except ports.ApiError as error:
                if error.status != 409:
                    raise
                # Another replica wrote first: take what it wrote, and plan again on that.
                raw = self._secrets.read(namespace, name)
                material = certificates.material_of(raw) if raw is not None else None
                continue
            log.info("residency webhook certificate in Secret %s/%s: %s", namespace, name, "; ".join(plan.reasons))
            return fresh
        raise ports.ApiError(f"Secret {namespace}/{name} kept changing while renewing the webhook certificate",
                             retryable=True, status=409)

    def _serve_material(self, material: certificates.Material) -> None:
        if material == self.serving:
            return
        self.serving = material
        expiry = certificates.not_after(material)
        metrics.WEBHOOK_CERTIFICATE_EXPIRY.set(expiry)
        log.info("residency webhook serves certificate %x (valid until %s)", certificates.serial(material),
                 dt.datetime.fromtimestamp(expiry, dt.timezone.utc).isoformat(timespec="seconds"))
        self._loop.call_soon_threadsafe(self._load, material)

    # ------------------------------------------------------------------------------ the server

    def _load(self, material: certificates.Material) -> None:
        """In the server's loop: (re)load the certificate; new connections get it, open ones keep theirs."""
        context = self._context or ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="healthscale-webhook-") as directory:
            certificate, key = pathlib.Path(directory, "tls.crt"), pathlib.Path(directory, "tls.key")
            certificate.write_bytes(material.certificate)
            key.touch(mode=0o600)
            key.write_bytes(material.key)
            try:
                context.load_cert_chain(certificate, key)
            except ssl.SSLError as error:
                log.error("residency webhook: cannot use the certificate (%s); keeping the previous one", error)
                return
        self._context = context
        self._first.set()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run_server())
        except OSError as error:  # the port is taken, the address is not ours: this replica never gets ready
            log.error("residency webhook cannot listen on %s:%d: %s", self.config.addr, self.config.port, error)
        finally:
            self._loop.close()

    async def _run_server(self) -> None:
        await self._first.wait()
        await asyncio.to_thread(self.namespaces.synced.wait, 60)
        await asyncio.to_thread(self.nodes.synced.wait, 60)
        # An AdmissionReview carries the pod twice on updates; pods can be large (up to etcd's 1.5 MiB).
        application = web.Application(client_max_size=8 * 1024 * 1024)
        application.router.add_post(admission.PATH, self._review)
        application.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(application, access_log=None, handle_signals=False)
        await runner.setup()
        # reuse_port: several replicas on one host (the local control plane) share the port.
        site = web.TCPSite(runner, self.config.addr, self.config.port, ssl_context=self._context, reuse_port=True)
        await site.start()
        self.listening.set()
        log.info("residency webhook listening on %s:%d", self.config.addr, self.config.port)
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _readyz(self, _: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="ok")
        return web.Response(status=503, text="caches not synced")

    async def _namespace(self, name: str) -> admission.Namespace | None:
        deadline = time.monotonic() + NAMESPACE_WAIT_SECONDS
        while True:
            found = self.namespaces.get(name)
            if found is not None:
                return admission.Namespace(*found)
            if not name or time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def _review(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            parsed = admission.parse(await request.json())
        except ValueError as error:
            return web.Response(status=400, text=f"not an AdmissionReview: {error}")
        namespace = parsed.namespace
        try:
            decision = admission.decide(parsed, await self._namespace(namespace), self.nodes.get, self.settings)
        except Exception as error:  # a bug must not let a pod in: deny, say so, count it
            log.error("residency admission failed in namespace %s (%s); denied", namespace, type(error).__name__)
            log.debug("residency admission failure", exc_info=True)
            metrics.ADMISSIONS.labels(namespace, "error").inc()
            decision = admission.Decision(False, f"healthscale could not check residency ({type(error).__name__})")
        else:
            metrics.ADMISSIONS.labels(namespace, "allowed" if decision.allowed else "denied").inc()
            if decision.allowed:
                log.debug("residency admission: %s of a pod in namespace %s allowed (%s): %s", parsed.operation,
                          namespace, decision.data_class or "not patient data", decision.message)
            else:
                log.warning("residency admission: %s of a pod in namespace %s denied: %s data without %s",
                            parsed.operation, namespace, decision.data_class or "unknown", decision.missing)
        answer = web.json_response(admission.response(parsed.uid, decision))
        metrics.ADMISSION_SECONDS.observe(time.perf_counter() - started)
        return answer


def start(config: Config, settings: residency.Settings) -> Webhook | None:
    """After ``kube.load_config()``: the webhook running, or None when no port is set."""
    if not config.port:
        return None
    return Webhook(config, settings).start()
