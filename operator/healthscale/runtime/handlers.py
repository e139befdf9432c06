"""Kopf handlers for ClinicalSLO and SurgeSchedule.

Each handler parses the spec once (pydantic), calls one service function, writes status, posts
Events and maps failures: a spec the models reject is a ``kopf.PermanentError`` (the API server's
CEL rules should already have stopped it), a missing target or a refused write is a
``kopf.TemporaryError`` with a delay. A timer ticks every ``TICK_SECONDS``; a ClinicalSLO is
re-planned when its ``forecast.step`` has passed, or at once after it or a SurgeSchedule changes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import kopf
import pydantic

from healthscale.adapters import kube, prometheus
from healthscale.api import clinicalslo, manifests, surgeschedule
from healthscale.runtime import metrics, residency
from healthscale.service import cycle

GROUP, VERSION = "healthscale.io", "v1alpha1"
TICK_SECONDS = 20.0
FINALIZER = "healthscale.io/restore-scale"
QUEUE_WORKERS = 64
EVENT_POSTERS = 4


@dataclasses.dataclass
class Runtime:
    """Everything the handlers share, kept in Kopf's memo."""

    clients: cycle.Clients
    dry_run: bool = False
    memories: dict[tuple[str, str], cycle.Memory] = dataclasses.field(default_factory=dict)
    due: set[tuple[str, str]] = dataclasses.field(default_factory=set)


def _runtime(memo: Any) -> Runtime:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("healthscale runtime is not configured (start with `healthscale run`)")
    return runtime


def _parse_slo(body: kopf.Body) -> clinicalslo.ClinicalSLO:
    try:
        return manifests.parse(clinicalslo.ClinicalSLO, dict(body), source="ClinicalSLO")
    except manifests.ManifestError as error:
        raise kopf.PermanentError(str(error)) from error


def _parse_schedule(body: Any) -> surgeschedule.SurgeSchedule:
    try:
        return manifests.parse(surgeschedule.SurgeSchedule, dict(body), source="SurgeSchedule")
    except manifests.ManifestError as error:
        raise kopf.PermanentError(str(error)) from error


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="healthscale.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="healthscale.io", key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 8
    # Bounded concurrency: with a thousand ClinicalSLOs Kopf would otherwise process (and open an
    # API connection for) every object at once after a restart; each TLS connection holds a read
    # buffer of up to 256 KiB, and that burst alone used to double the operator's peak memory.
    settings.queueing.worker_limit = QUEUE_WORKERS
    settings.queueing.idle_timeout = 1.0  # a worker holds its slot while idle
    settings.posting.worker_limit = EVENT_POSTERS


@kopf.index(GROUP, VERSION, "surgeschedules")
def schedules_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    """Every SurgeSchedule by namespace, so a ClinicalSLO's cycle finds the ones selecting it."""
    return {namespace or "": dict(body)}


def _refresh_schedules(runtime: Runtime, schedules: list[surgeschedule.SurgeSchedule], now: int,
                       logger: kopf.Logger) -> None:
    """Move the selecting SurgeSchedules' next windows on as time passes.

    Done from the ClinicalSLO cycle rather than a SurgeSchedule timer, because Kopf gives every
    resource with a timer a finalizer: a SurgeSchedule would then hang in deletion (and hold its
    namespace) whenever the operator is not running.
    """
    for schedule in schedules:
        fresh = cycle.schedule_status(schedule, now)
        shown = schedule.status.model_dump(by_alias=True, mode="json") if schedule.status else {}
        if shown.get("windows") == fresh["windows"] and shown.get("nextSurge") == fresh["nextSurge"]:
            continue
        try:
            runtime.clients.workloads.set_schedule_status(schedule.metadata.namespace, schedule.metadata.name, fresh)
        except kube.ApiError as error:
            logger.warning("could not refresh SurgeSchedule %s: %s", schedule.metadata.name, error)


def _selecting(slo: clinicalslo.ClinicalSLO, index: kopf.Index[str, dict[str, Any]],
               logger: kopf.Logger) -> list[surgeschedule.SurgeSchedule]:
    found = []
    for body in index.get(slo.metadata.namespace, []):
        try:
            schedule = surgeschedule.SurgeSchedule.model_validate(body)
        except pydantic.ValidationError:
            logger.warning("skipping invalid SurgeSchedule %s", body.get("metadata", {}).get("name"))
            continue
        if schedule.spec.applies_to(slo.metadata.name, slo.metadata.labels):
            found.append(schedule)
    return found


@kopf.on.resume(GROUP, VERSION, "clinicalslos")
@kopf.on.create(GROUP, VERSION, "clinicalslos")
@kopf.on.update(GROUP, VERSION, "clinicalslos", field="spec")
def spec_changed(body: kopf.Body, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Validate now and plan at the next tick instead of waiting for the step."""
    _parse_slo(body)
    _runtime(memo).due.add((namespace or "", name))


# sharp: ticks keep a fixed grid however long a cycle or the wait for a worker thread takes, so a
# ClinicalSLO's cycles stay one step apart instead of drifting later every minute.
@kopf.timer(GROUP, VERSION, "clinicalslos", interval=TICK_SECONDS, sharp=True, initial_delay=1.0)
def tick(body: kopf.Body, status: kopf.Status, namespace: str | None, name: str, patch: kopf.Patch, memo: Any,
         logger: kopf.Logger, **kwargs: Any) -> None:
    # Kopf passes each index as a keyword named after its function.
    index: kopf.Index[str, dict[str, Any]] = kwargs["schedules_by_namespace"]
    runtime = _runtime(memo)
    key = (namespace or "", name)
    memory = runtime.memories.setdefault(key, cycle.Memory())
    now = int(time.time())
    # Most ticks are not due: decide that from the last cycle's step before parsing the spec (a
    # changed spec is marked due by spec_changed). Due within half a tick counts as due, so that
    # cycles keep the step's cadence, not step + tick.
    if key not in runtime.due and memory.last_cycle is not None and memory.history is not None:
        late = now - memory.last_cycle - memory.history.step
        if late < -TICK_SECONDS / 2:
            return
        metrics.CYCLE_DELAY.observe(max(0, late))
    runtime.due.discard(key)
    slo = _parse_slo(body)
    schedules = _selecting(slo, index, logger)
    started = time.perf_counter()
    try:
        result = residency.run_cycle(memo, slo, schedules, now, runtime.clients, memory, dict(status), runtime.dry_run)
    except kube.TargetNotFound as error:
        metrics.CYCLE_ERRORS.labels(slo.metadata.namespace, name, "TargetNotFound").inc()
        _not_ready(patch, status, slo, now, "TargetNotFound", str(error))
        raise kopf.TemporaryError(f"{error}; retrying", delay=30) from error
    except kube.ApiError as error:
        metrics.CYCLE_ERRORS.labels(slo.metadata.namespace, name, "ApiError").inc()
        _not_ready(patch, status, slo, now, "ApiError", str(error))
        if error.retryable:
            raise kopf.TemporaryError(str(error), delay=15) from error
        kopf.warn(body, reason="ScaleRefused", message=str(error))
        return
    except ValueError as error:  # e.g. a demand query that returns several series
        metrics.CYCLE_ERRORS.labels(slo.metadata.namespace, name, "InvalidQuery").inc()
        _not_ready(patch, status, slo, now, "InvalidQuery", str(error))
        kopf.warn(body, reason="InvalidQuery", message=str(error))
        return
    finally:
        metrics.CYCLE_SECONDS.observe(time.perf_counter() - started)
    patch.status.update(result.status)
    _refresh_schedules(runtime, schedules, now, logger)
    for event in result.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    metrics.record(slo.metadata.namespace, name, result)
    if result.decision is not None:
        decision = result.decision
        # Names and numbers only: nothing from the workload's requests reaches the log.
        logger.info("%s", decision.explanation(), extra={
            "desired": decision.desired_replicas, "current": decision.current_replicas,
            "reason": str(decision.reason), "surge": decision.surge, "forecast_peak": decision.forecast_peak,
            "guards": list(decision.guards)})


def _not_ready(patch: kopf.Patch, status: kopf.Status, slo: clinicalslo.ClinicalSLO, now: int,
               reason: str, message: str) -> None:
    previous = list(status.get("conditions") or [])
    kept = [item for item in previous if item.get("type") != "Ready"]
    patch.status["conditions"] = [cycle.condition(previous, "Ready", False, reason, message,
                                                  slo.metadata.generation, now), *kept]
    patch.status["observedGeneration"] = slo.metadata.generation


@kopf.on.delete(GROUP, VERSION, "clinicalslos")
def deleted(body: kopf.Body, status: kopf.Status, namespace: str | None, name: str, memo: Any,
            logger: kopf.Logger, **_: Any) -> None:
    """Give the workload back as healthscale found it."""
    runtime = _runtime(memo)
    runtime.memories.pop((namespace or "", name), None)
    metrics.forget(namespace or "", name)
    try:
        slo = clinicalslo.ClinicalSLO.model_validate(dict(body))
    except pydantic.ValidationError:
        logger.warning("deleting an invalid ClinicalSLO; nothing was ever scaled")
        return
    if slo.spec.mode != clinicalslo.Mode.ACTIVE or runtime.dry_run:
        return
    try:
        done = cycle.restore(slo, runtime.clients, dict(status))
    except kube.ApiError as error:
        raise kopf.TemporaryError(f"could not restore the original scale: {error}", delay=15) from error
    if done:
        logger.info("%s", done)


@kopf.on.resume(GROUP, VERSION, "surgeschedules")
@kopf.on.create(GROUP, VERSION, "surgeschedules")
@kopf.on.update(GROUP, VERSION, "surgeschedules", field="spec")
@kopf.on.delete(GROUP, VERSION, "surgeschedules", optional=True)
def schedule_changed(body: kopf.Body, namespace: str | None, memo: Any, patch: kopf.Patch, **_: Any) -> None:
    """Re-plan the namespace's ClinicalSLOs at the next tick, and publish the next windows."""
    runtime = _runtime(memo)
    runtime.due.update(key for key in runtime.memories if key[0] == namespace)
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    schedule = _parse_schedule(body)
    patch.status.update(cycle.schedule_status(schedule, int(time.time())))




def make_runtime(prometheus_url: str, auth: prometheus.Auth, dry_run: bool) -> Runtime:
    kube.load_config()
    return Runtime(cycle.Clients(prometheus.Client(prometheus_url, auth), kube.Workloads()), dry_run=dry_run)
