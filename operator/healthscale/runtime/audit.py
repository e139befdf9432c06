"""The namespace residency audit as a background loop, on the elected replica only.

Every ``Config.interval`` seconds a thread started at operator start-up runs ``service.audit``
over every served namespace labelled ``healthscale.io/residency=enforced``, sets
``healthscale_residency_violations{namespace,data_class}`` and posts one Warning Event
(``ResidencyViolation``) on each violating pod, once per pod and node (again after a restart).

Not a Kopf timer on Namespaces: Kopf gives every object with a timer a finalizer, which would mean
patching namespaces (and a namespace that cannot be deleted while the operator is down).

Only the replica Kopf has made active audits, so that several replicas never post the same Events.
Kopf does not tell its handlers whether they are paused, so ``Leadership`` reads the peering
object(s) the way Kopf's peering does (kopf/_core/engines/peering.py, process_peering_event): a
replica is paused while any other live peer has a priority at least as high as its own; it knows
itself by its priority, which it chose (``runtime.operator``) and passed to Kopf. Standalone, the
one replica is the leader. With namespaced peering, the peering objects of the exact served
namespace names are read, and the audited namespaces' ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import kopf

from healthscale import ports
from healthscale.adapters import audit as adapter
from healthscale.runtime import metrics, sweeper
from healthscale.service import audit
from healthscale.service import residency

logger = logging.getLogger("healthscale.audit")


@dataclasses.dataclass(frozen=True)
class Config:
    settings: residency.Settings
    interval: float = 60.0
    namespaces: tuple[str, ...] = ()
    """The operator's --namespace names and patterns (none: the whole cluster)."""
    peering: str | None = None
    priority: int = 0

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or any(sweeper.matches(namespace, pattern) for pattern in self.namespaces)


class Peering(Protocol):
    def peers(self, name: str, namespace: str | None) -> dict[str, dict[str, Any]]: ...


def _live(peer: Mapping[str, Any], now: dt.datetime) -> bool:
    try:
        seen = dt.datetime.fromisoformat(str(peer.get("lastseen")).replace("Z", "+00:00"))
        lifetime = dt.timedelta(seconds=int(peer.get("lifetime", 60)))
    except (TypeError, ValueError):
        return False
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=dt.timezone.utc)
    return seen + lifetime > now


def active(peerings: list[dict[str, dict[str, Any]]], priority: int, now: dt.datetime) -> bool:
    """Would Kopf keep a replica of this priority running, given these peering objects' peers?

    It must be in at least one of them (Kopf has announced it), be the only live peer of its
    priority everywhere (equal priorities pause every one of them), and no live peer may be higher.
    """
    present = False
    for peers in peerings:
        live = [int(peer.get("priority", 0)) for peer in peers.values() if _live(peer, now)]
        if any(value > priority for value in live) or live.count(priority) > 1:
            return False
        present = present or priority in live
    return present


class Leadership:
    def __init__(self, config: Config, peering: Peering) -> None:
        self.config = config
        self.peering = peering

    def __call__(self, audited: set[str]) -> bool:
        """Is this replica the active one? ``audited``: the namespaces it would audit."""
        name = self.config.peering
        if name is None:
            return True
        if not self.config.namespaces:
            places: list[str | None] = [None]
        else:
            exact = {namespace for namespace in self.config.namespaces if not sweeper.is_pattern(namespace)}
            places = list(sorted(exact | audited))
        now = dt.datetime.now(dt.timezone.utc)
        return active([self.peering.peers(name, place) for place in places], self.config.priority, now)


class Poster(Protocol):
    def post_pod_event(self, namespace: str, pod: str, uid: str, type_: str, reason: str, message: str) -> None: ...


class Auditor:
    """One replica's audit loop: audit, export the counts, post each new violation once."""

    def __init__(self, config: Config, cluster: ports.NamespaceAudit, poster: Poster,
                 leader: Callable[[set[str]], bool]) -> None:
        self.config = config
        self.cluster = cluster
        self.poster = poster
        self.leader = leader
        self.stopped = threading.Event()
        self.posted: dict[tuple[str, str], str] = {}
        """(namespace, pod) -> the node it was reported on: a pod is reported again only if it moves."""
        self.clipped: dict[str, tuple[str, ...]] = {}

    def audit_once(self) -> audit.Report | None:
        """One pass; None when another replica is the active one."""
        listed = audit.enforced(self.cluster, self.config.serves)
        if not self.leader(set(listed)):
            metrics.record_audit(None)
            return None
        report = audit.run(self.cluster, self.config.settings, self.config.serves, listed)
        metrics.record_audit(report)
        for failure in report.failures:
            logger.warning("residency audit: %s; trying again in %gs", failure, self.config.interval)
        for item in report.namespaces:
            if item.allowed.clipped and self.clipped.get(item.namespace) != item.allowed.clipped:
                logger.warning("residency audit: namespace %s allows %s, outside the cluster-wide --allowed-regions; "
                               "they are not allowed", item.namespace, ", ".join(item.allowed.clipped))
            self.clipped[item.namespace] = item.allowed.clipped
            counts = {name: count for name, count in item.counts().items() if count}
            if counts:
                # Counts only: pod names can carry identifiers; the Events on the pods point at them.
                logger.warning("residency audit: namespace %s has %s pod(s) outside %s", item.namespace,
                               ", ".join(f"{count} {name}" for name, count in sorted(counts.items())),
                               ", ".join(item.allowed.regions) or "any allowed region (none is set)")
        self._post(report)
        return report

    def _post(self, report: audit.Report) -> None:
        current: dict[tuple[str, str], str] = {}
        violations = {(item.namespace, violation.pod): violation
                      for item in report.namespaces for violation in item.violations}
        for event in audit.events(report, self.config.settings):
            key = (event.namespace, event.pod)
            node = violations[key].node
            current[key] = node
            if self.posted.get(key) == node:
                continue
            try:
                self.poster.post_pod_event(event.namespace, event.pod, event.uid, "Warning", event.reason,
                                           event.message)
            except (ports.ApiError, ports.NotFound) as error:
                logger.warning("residency audit: %s; trying again in %gs", error, self.config.interval)
                current.pop(key)  # not posted: try again next pass
        self.posted = current

    def run(self) -> None:
        while True:
            try:
                self.audit_once()
            except (ports.ApiError, ports.NotFound) as error:
                logger.warning("residency audit: %s; trying again in %gs", error, self.config.interval)
            except Exception:  # the audit must never stop for good
                logger.exception("residency audit: unexpected error; trying again in %gs", self.config.interval)
            if self.stopped.wait(self.config.interval):
                return


def register(config: Config) -> None:
    """Start the audit thread with the operator (after ``kube.load_config()``), stop it at cleanup."""

    def start(memo: Any, **_: Any) -> None:
        client = adapter.Audit(f"{residency.OPT_IN_LABEL}={residency.OPT_IN_VALUE}")
        auditor = Auditor(config, client, client, Leadership(config, client))
        memo["residency_auditor"] = auditor
        threading.Thread(target=auditor.run, name="healthscale-residency-audit", daemon=True).start()

    def stop(memo: Any, **_: Any) -> None:
        auditor = memo.get("residency_auditor")
        if isinstance(auditor, Auditor):
            auditor.stopped.set()

    kopf.on.startup(id="residency-audit")(start)
    kopf.on.cleanup(id="residency-audit-stop")(stop)

