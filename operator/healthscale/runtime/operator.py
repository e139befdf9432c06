"""Starting the operator: options, the metrics endpoint, and Kopf's run loop."""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import random
import threading
import time
import urllib.parse

import kopf
import prometheus_client

from healthscale.adapters import prometheus
from healthscale.runtime import audit, deferral, handlers, residency, sweeper  # sweeper: registers its start-up handler
from healthscale.runtime import webhook
from healthscale.service import room


@dataclasses.dataclass(frozen=True)
class Options:
    prometheus_url: str
    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    namespaces: tuple[str, ...] = ()
    dry_run: bool = False
    metrics_port: int = 9102
    health_port: int = 8080
    peering: str | None = None
    peering_priority: int | None = None
    log_format: str = "plain"
    verbose: bool = False
    residency: residency.Config = residency.Config()
    webhook: webhook.Config = webhook.Config()
    pod_deletion_cost: bool = True
    prometheus_rules: bool = True
    keda: bool = True
    """Raise KEDA ScaledObjects' minReplicaCount (--no-keda: never list them)."""
    node_warmup: room.Settings | None = room.Settings()
    """How placeholder pods are made; None: --no-node-warmup."""
    deferral: bool = True
    """Act on SurgeSchedules' spec.defer (--no-deferral: never list or write deferrable objects)."""
    deferral_seconds: float = 20.0
    """How often the deferral loop runs (--deferral-seconds)."""


def _tune_malloc() -> None:
    """Keep freed forecast buffers and API-response pages from staying in the process.

    glibc only; elsewhere a no-op. Two arenas instead of eight per core for the worker threads; a
    fixed 1 MiB mmap threshold (glibc otherwise raises it after the first large free, so later
    multi-MiB numpy arrays, a fit's design matrix, come from the heap and are never given back);
    and a thread that trims the heap every ``TRIM_SECONDS``.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-8, 2)  # M_ARENA_MAX
    libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    threading.Thread(target=_trim_periodically, args=(libc,), name="malloc-trim", daemon=True).start()


TRIM_SECONDS = 30.0


def _trim_periodically(libc: ctypes.CDLL) -> None:
    """Hand freed heap pages back to the system now and then.

    A burst (the first cycles after a restart, a page of API responses) leaves free chunks
    scattered over the heap, which glibc keeps mapped: without this the resident size stays at the
    burst's peak although the live data is about half of it.
    """
    while True:
        time.sleep(TRIM_SECONDS)
        libc.malloc_trim(0)


def run(options: Options) -> int:
    parsed = urllib.parse.urlparse(options.prometheus_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(f"--prometheus-url {options.prometheus_url!r} must be an http(s) URL with a host")
    # JSON logs carry each decision's numbers as fields (Kopf adds the object's namespace and name).
    kopf.configure(verbose=options.verbose,
                   log_format=kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.PLAIN,
                   log_refkey="object" if options.log_format == "json" else None)
    logging.getLogger().setLevel(logging.DEBUG if options.verbose else logging.INFO)
    runtime = handlers.make_runtime(
        options.prometheus_url,
        prometheus.Auth(options.bearer_token, options.ca_file, options.insecure_skip_verify),
        options.dry_run,
        options.pod_deletion_cost,
        options.prometheus_rules,
        options.node_warmup,
        floor_options=("keda",) if options.keda else (),
    )
    residency_runtime = residency.make_runtime(options.residency)
    # Admission in its own thread, before Kopf: every replica serves it, whatever peering decides.
    admission = webhook.start(options.webhook, options.residency.settings())
    # Kopf keeps only the highest-priority peer active and pauses all peers that tie, so each
    # replica needs its own priority; a random one makes an arbitrary replica the active one. The
    # residency audit knows from it whether this replica is the active one.
    priority = options.peering_priority if options.peering_priority is not None else random.randint(1, 2**30)
    if options.residency.enabled:
        residency.warn_if_untrusted(options.residency)
        audit.register(audit.Config(options.residency.settings(), options.residency.audit_seconds,
                                    options.namespaces, options.peering, priority))
    if options.deferral:
        deferral.register(deferral.Config(interval=options.deferral_seconds, dry_run=options.dry_run, keda=options.keda, namespaces=options.namespaces,
                                          peering=options.peering, priority=priority))
    _tune_malloc()
    if options.metrics_port:
        prometheus_client.start_http_server(options.metrics_port)
    try:
        kopf.run(
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            standalone=options.peering is None,
            peering_name=options.peering,
            priority=priority,
            liveness_endpoint=f"http://0.0.0.0:{options.health_port}/healthz" if options.health_port else None,
            memo=kopf.Memo(runtime=runtime, residency=residency_runtime,
                           sweeper=sweeper.Config(namespaces=options.namespaces)),
        )
    finally:
        if admission is not None:
            admission.stop()
    return 0
