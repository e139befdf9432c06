"""The safety net for ClinicalSLOs Kopf no longer serves: deletions in namespaces being deleted.

Kopf drops a namespace it watches by name or pattern as soon as it sees it marked deleted without
"blocking" conditions (kopf/_core/reactor/observation.py: revise_namespaces, is_deleted), which
happens before the namespace controller reports the content left, and never takes it back. The
ClinicalSLOs in it then keep healthscale's finalizer, and the namespace stays Terminating for ever.

A background thread, started at operator start-up, looks every ``SWEEP_SECONDS`` for ClinicalSLOs
being deleted that still hold healthscale's finalizer, and releases them through
``service.release`` (restore from status, a Warning Event naming what was left, finalizer
removed): at once when their namespace is Terminating, otherwise once their deletion is older
than ``GRACE_SECONDS`` (Kopf's own deletion handler had its chance). Retryable failures keep the
finalizer until ``GIVE_UP_SECONDS`` after the deletion. Releasing twice is harmless (the same
values are written back), so running clusterwide, or in several peered replicas, does no harm.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import logging
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import kopf

from healthscale import ports
from healthscale.adapters import kube
from healthscale.runtime import metrics
from healthscale.service import release

SWEEP_SECONDS = 30.0
GRACE_SECONDS = 60.0
"""A deletion this old, in a namespace not known to be Terminating, is released by the sweeper."""
GIVE_UP_SECONDS = 300.0
"""After this long, a restore still failing for a retryable reason is given up and reported."""

logger = logging.getLogger("healthscale.sweeper")


@dataclasses.dataclass(frozen=True)
class Config:
    """What the operator serves: its --namespace names and patterns (none: the whole cluster)."""

    namespaces: tuple[str, ...] = ()


def is_pattern(namespace: str) -> bool:
    return any(mark in namespace for mark in "*?!,")


def matches(namespace: str, pattern: str) -> bool:
    """Kopf's namespace patterns, as kopf._cogs.structs.references.match_namespace reads them:
    comma-separated globs; ``!`` excludes; a later inclusive glob re-includes only what the first
    one matched; a leading exclusion implies a catch-all before it."""
    globs = [glob.strip() for glob in pattern.split(",")]
    if not globs or globs[0].startswith("!"):
        globs.insert(0, "*")
    matched = first = fnmatch.fnmatch(namespace, globs[0])
    for glob in globs[1:]:
        if glob.startswith("!"):
            matched = matched and not fnmatch.fnmatch(namespace, glob.lstrip("!"))
        else:
            matched = matched or (first and fnmatch.fnmatch(namespace, glob))
    return matched


def age(item: Mapping[str, Any], now: float) -> float:
    """Seconds since the ClinicalSLO's deletionTimestamp (0 when unreadable)."""
    stamp = str((item.get("metadata") or {}).get("deletionTimestamp") or "")
    try:
        return now - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class Namespaces(Protocol):
    def terminating(self) -> set[str]:
        """The namespaces being deleted (``adapters.kube.Namespaces``)."""
        ...


class Sweeper:
    def __init__(self, config: Config, slos: release.ClinicalSLOs, workloads: ports.Workloads,
                 namespaces: Namespaces) -> None:
        self.config = config
        self.slos = slos
        self.workloads = workloads
        self.namespaces = namespaces
        self.stopped = threading.Event()
        self._warned: set[str] = set()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s", message)

    def candidates(self) -> tuple[list[dict[str, Any]], Collection[str]]:
        """The ClinicalSLOs to look at, and the namespaces known to be Terminating."""
        if not self.config.namespaces:
            return self.slos.list_all(), ()
        try:
            terminating = self.namespaces.terminating()
        except (ports.ApiError, ports.NotFound) as error:
            # Without namespace list rights only the exact names can be swept (after the grace).
            self._warn_once("namespaces", f"sweeper: cannot list namespaces ({error}); sweeping the exact "
                                          "--namespace names only, after the grace period")
            terminating = set()
        names = {name for name in self.config.namespaces if not is_pattern(name)}
        names |= {name for name in terminating if any(matches(name, pattern) for pattern in self.config.namespaces)}
        found: list[dict[str, Any]] = []
        for namespace in sorted(names):
            try:
                found.extend(self.slos.list_namespace(namespace))
            except (ports.ApiError, ports.NotFound) as error:
                self._warn_once(f"list {namespace}", f"sweeper: cannot list ClinicalSLOs in {namespace}: {error}")
        return found, terminating

    def sweep(self, now: float | None = None) -> list[release.Outcome]:
        """One pass: release what is due; what was done."""
        now = time.time() if now is None else now
        items, terminating = self.candidates()
        done = []
        for item in items:
            if not (release.deleting(item) and release.holds_finalizer(item)):
                continue
            waited = age(item, now)
            namespace = str((item.get("metadata") or {}).get("namespace") or "")
            if namespace not in terminating and waited < GRACE_SECONDS:
                continue
            outcome = release.release_one(self.workloads, self.slos, item, give_up=waited >= GIVE_UP_SECONDS,
                                          retries=0)
            logger.log(logging.INFO if outcome.ok else logging.WARNING, "sweeper released %s", outcome.line())
            # Kopf no longer serves it (its deletion handler, which forgets, will not run): its
            # series would otherwise stay at their last values until the operator restarts.
            metrics.forget(outcome.namespace, outcome.name)
            done.append(outcome)
        return done

    def run(self) -> None:
        while not self.stopped.wait(SWEEP_SECONDS):
            try:
                self.sweep()
            except (ports.ApiError, ports.NotFound) as error:
                logger.warning("sweeper: %s; trying again in %gs", error, SWEEP_SECONDS)
            except Exception:  # the safety net itself must never stop
                logger.exception("sweeper: unexpected error; trying again in %gs", SWEEP_SECONDS)


@kopf.on.startup()
def start_sweeper(memo: Any, **_: Any) -> None:
    config = memo.get("sweeper")
    if not isinstance(config, Config):
        config = Config()
    kube.load_config()
    sweeper = Sweeper(config, kube.ClinicalSLOs(), kube.Workloads(), kube.Namespaces())
    memo["sweeper_thread"] = sweeper
    threading.Thread(target=sweeper.run, name="healthscale-sweeper", daemon=True).start()


@kopf.on.cleanup()
def stop_sweeper(memo: Any, **_: Any) -> None:
    sweeper = memo.get("sweeper_thread")
    if isinstance(sweeper, Sweeper):
        sweeper.stopped.set()
