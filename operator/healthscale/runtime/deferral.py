"""Deferring non-critical work, as a background loop on the active replica only.

Every ``interval`` seconds a thread started with the operator runs ``service.deferral`` over every
served SurgeSchedule, posts its Events and sets ``healthscale_deferred_workloads``. Not a Kopf timer
on SurgeSchedules: Kopf gives every object with a timer its finalizer, which would hold every
schedule in deletion while the operator is down. The loop holds its own finalizer
(``healthscale.io/restore-deferred``) only on a schedule that has deferred something, and only
until it is all put back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

import kopf

from healthscale import ports

from healthscale.adapters import audit as audit_adapter
from healthscale.adapters import deferrables
from healthscale.runtime import audit, metrics, sweeper
from healthscale.service import deferral
from healthscale.service import residency as residency_service

logger = logging.getLogger("healthscale.deferral")


@dataclasses.dataclass(frozen=True)
class Config:
    interval: float = 20.0
    """Seconds between cycles; deferral ends at most this late after its window."""
    dry_run: bool = False
    keda: bool = True
    namespaces: tuple[str, ...] = ()
    peering: str | None = None
    priority: int = 0


class Loop:
    def __init__(self, config: Config, deferrer: deferral.Deferrer, port: deferrables.Deferrables,
                 leader: audit.Leadership) -> None:
        self.config = config
        self.deferrer = deferrer
        self.port = port
        self.leader = leader
        self.stopped = threading.Event()

    def once(self) -> None:
        if not self.leader(set()):
            return
        counts: dict[tuple[str, str], int] = {}
        for outcome in self.deferrer.cycle():
            if outcome.deferred is not None:
                counts[(outcome.namespace, outcome.name)] = outcome.deferred
            for problem in outcome.problems:
                logger.warning("deferral, SurgeSchedule %s/%s: %s; trying again in %gs", outcome.namespace,
                               outcome.name, problem, self.config.interval)
            for event in outcome.events:
                # Kinds, names and counts only: nothing from the workloads' pods reaches the log.
                logger.info("SurgeSchedule %s/%s: %s: %s", outcome.namespace, outcome.name, event.reason, event.message)
                for involved in event.on:
                    try:
                        self.port.post_event(involved, event.type, event.reason, event.message)
                    except (ports.ApiError, ports.NotFound) as error:
                        logger.warning("deferral: Event %s not posted: %s", event.reason, error)
        metrics.record_deferrals(counts)

    def run(self) -> None:
        while True:
            try:
                self.once()
            except (ports.ApiError, ports.NotFound) as error:
                logger.warning("deferral: %s; trying again in %gs", error, self.config.interval)
            except Exception:  # the loop that puts things back must never stop for good
                logger.exception("deferral: unexpected error; trying again in %gs", self.config.interval)
            if self.stopped.wait(self.config.interval):
                return


def register(config: Config) -> None:
    """Start the deferral thread with the operator (after ``kube.load_config()``), stop it at cleanup."""

    def start(memo: Any, **_: Any) -> None:
        # Exact namespace names are listed one by one (a namespaced install may list nothing else);
        # with a pattern among them, the whole cluster is listed and filtered as Kopf matches them.
        exact = () if any(sweeper.is_pattern(item) for item in config.namespaces) else config.namespaces
        port = deferrables.Deferrables(options=("keda",) if config.keda else (), namespaces=exact)
        peering = audit_adapter.Audit("")
        # The audit's Config says which namespaces are served and whether this replica leads.
        scope = audit.Config(residency_service.Settings(), namespaces=config.namespaces, peering=config.peering,
                             priority=config.priority)
        loop = Loop(config, deferral.Deferrer(port, port.kinds, config.dry_run, serves=scope.serves,
                                              cycle_seconds=config.interval), port, audit.Leadership(scope, peering))
        memo["deferral_loop"] = loop
        threading.Thread(target=loop.run, name="healthscale-deferral", daemon=True).start()

    def stop(memo: Any, **_: Any) -> None:
        loop = memo.get("deferral_loop")
        if isinstance(loop, Loop):
            loop.stopped.set()

    kopf.on.startup(id="deferral")(start)
    kopf.on.cleanup(id="deferral-stop")(stop)
