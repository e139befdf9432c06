"""Kopf handlers for ClinicalSLO and SurgeSchedule.

Each handler parses the spec once (pydantic), calls one service function, writes the typed status
and posts Events. Nothing a user can put in a spec raises out of a handler: a spec the models
reject is ``Ready=False`` with reason ``InvalidSpec`` (and a Warning Event) in the object's own
status; a failed or refused write is a condition plus a ``kopf.TemporaryError`` when a retry can
help. A timer ticks every ``TICK_SECONDS``; a ClinicalSLO is re-planned when its ``forecast.step``
has passed, or at once after it or a SurgeSchedule changes. Deletion restores what healthscale
changed, from status alone, and always releases the finalizer: a restore the API server refuses
(403, 404, 422), or one still failing after ``DELETE_RETRIES`` tries, is named in a Warning Event.
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
from healthscale.service import events
from healthscale.runtime import metrics, residency
from healthscale.service import cycle, room, rule_sync

GROUP, VERSION = "healthscale.io", "v1alpha1"
TICK_SECONDS = 20.0
FINALIZER = "healthscale.io/restore-scale"
QUEUE_WORKERS = 64
EVENT_POSTERS = 4
DELETE_RETRIES = 5
"""Tries of a retryable restore (timeouts, 409, 429, 5xx) before deletion gives up and says so."""
API_TIMEOUT_SECONDS = 15.0
"""Kopf's own API requests (status patches, Events); a silent API server costs at most this."""


@dataclasses.dataclass
class Runtime:
    """Everything the handlers share, kept in Kopf's memo."""

    ports: cycle.Ports
    kube: kube.Workloads
    """The adapter itself, for what is not the reconcile's (SurgeSchedule status)."""
    dry_run: bool = False
    rules: rule_sync.Port | None = None
    """PrometheusRules per ClinicalSLO (``rule_sync``) when the cluster serves them; None: off."""
    placeholders: room.Port | None = None
    """Placeholder Deployments holding node room (``service.room``); None: off (--no-node-warmup)."""
    placeholder_settings: room.Settings = room.Settings()
    memories: dict[tuple[str, str], cycle.Memory] = dataclasses.field(default_factory=dict)
    due: set[tuple[str, str]] = dataclasses.field(default_factory=set)


def _runtime(memo: Any) -> Runtime:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("healthscale runtime is not configured (start with `healthscale run`)")
    return runtime


def previous_status(raw: Any) -> clinicalslo.ClinicalSLOStatus:
    """The status as last written (``clinicalslo.read_status``: leniently, records kept)."""
    return clinicalslo.read_status(dict(raw or {}))[0]


def write_status(patch: kopf.Patch, status: clinicalslo.ClinicalSLOStatus) -> None:
    # None values stay in: a merge patch needs explicit nulls to clear fields set last cycle. Items
    # of a list are replaced whole, so a null there is no "clear" but a value the server drops.
    body = status.model_dump(mode="json", by_alias=True)
    body["originals"] = [item.wire() for item in status.originals]
    body["conditions"] = [item.wire() for item in status.conditions]
    patch.status.update(body)


def _invalid(patch: kopf.Patch, body: kopf.Body, status: clinicalslo.ClinicalSLOStatus, generation: int | None,
             message: str) -> None:
    """Ready=False/InvalidSpec in the object's status, and a Warning Event once per generation."""
    ready = events.condition(status.conditions, "Ready", False, "InvalidSpec", message, generation, int(time.time()))
    first = not any(item.type == "Ready" and item.reason == "InvalidSpec" and item.observed_generation == generation
                    for item in status.conditions)
    kept = tuple(item for item in status.conditions if item.type != "Ready")
    write_status(patch, status.model_copy(update={"conditions": (ready, *kept), "observed_generation": generation}))
    if first:
        kopf.warn(body, reason="InvalidSpec", message=message[:1024])


def _parse_slo(body: kopf.Body, patch: kopf.Patch, status: clinicalslo.ClinicalSLOStatus) -> clinicalslo.ClinicalSLO | None:
    try:
        return manifests.parse(clinicalslo.ClinicalSLO, dict(body), source="ClinicalSLO")
    except manifests.ManifestError as error:
        _invalid(patch, body, status, body.get("metadata", {}).get("generation"), "; ".join(error.problems))
        return None


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
    settings.networking.request_timeout = API_TIMEOUT_SECONDS
    settings.networking.connect_timeout = 5.0
    # A watch the API server stopped answering is dropped and re-opened instead of hanging.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 5.0


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
        fresh = cycle.schedule_status(schedule, now, schedule.status)
        shown = schedule.status
        if shown is not None and shown.windows == fresh.windows and shown.next_surge == fresh.next_surge \
                and [(item.type, item.status, item.reason) for item in shown.conditions] == \
                [(item.type, item.status, item.reason) for item in fresh.conditions]:
            continue
        try:
            runtime.kube.set_schedule_status(
                schedule.metadata.namespace, schedule.metadata.name, fresh.part(fresh.CALENDAR_PART))
        except (kube.ApiError, kube.TargetNotFound) as error:
            logger.warning("could not refresh SurgeSchedule %s: %s", schedule.metadata.name, error)


def parse_schedule(body: dict[str, Any]) -> surgeschedule.SurgeSchedule:
    """A SurgeSchedule whose spec is validated strictly and whose status is read leniently
    (``surgeschedule.read_status``): one status item written by another operator version, or the
    deferral records of a newer one, never makes the schedule count as invalid."""
    schedule = manifests.parse_spec(surgeschedule.SurgeSchedule, body, source="SurgeSchedule")
    return schedule.model_copy(update={"status": surgeschedule.read_status(body.get("status"))[0]})


def _selecting(slo: clinicalslo.ClinicalSLO, index: kopf.Index[str, dict[str, Any]],
               logger: kopf.Logger) -> list[surgeschedule.SurgeSchedule]:
    """The valid SurgeSchedules that select ``slo``. An invalid one is skipped (its own status
    says why, see ``schedule_changed``): it never stops another schedule or ClinicalSLO."""
    found = []
    for body in index.get(slo.metadata.namespace, []):
        try:
            schedule = parse_schedule(body)
        except manifests.ManifestError:
            logger.debug("skipping invalid SurgeSchedule %s", body.get("metadata", {}).get("name"))
            continue
        if schedule.spec.applies_to(slo.metadata.name, slo.metadata.labels):
            found.append(schedule)
    return found


@kopf.on.resume(GROUP, VERSION, "clinicalslos")
@kopf.on.create(GROUP, VERSION, "clinicalslos")
@kopf.on.update(GROUP, VERSION, "clinicalslos", field="spec")
def spec_changed(body: kopf.Body, status: kopf.Status, namespace: str | None, name: str, memo: Any,
                 patch: kopf.Patch, **_: Any) -> None:
    """Validate now (an invalid spec says so in status) and plan at the next tick."""
    _parse_slo(body, patch, previous_status(status))
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
    previous = previous_status(status)
    slo = _parse_slo(body, patch, previous)
    if slo is None:
        metrics.CYCLE_ERRORS.labels(namespace or "", name, "InvalidSpec").inc()
        return
    schedules = _selecting(slo, index, logger)
    started = time.perf_counter()
    try:
        result = residency.run_cycle(memo, slo, schedules, now, runtime.ports, memory, previous, runtime.dry_run)
    except (kube.ApiError, kube.TargetNotFound) as error:  # the residency steps' reads and writes
        metrics.CYCLE_ERRORS.labels(slo.metadata.namespace, name, "ApiError").inc()
        _forget_if_deleted(runtime, key, kwargs.get("stopped"))
        ready = events.condition(previous.conditions, "Ready", False, "ApiError", str(error),
                                 slo.metadata.generation, now)
        kept = tuple(item for item in previous.conditions if item.type != "Ready")
        write_status(patch, previous.model_copy(update={"conditions": (ready, *kept)}))
        if isinstance(error, kube.ApiError) and not error.retryable:
            kopf.warn(body, reason="ApiError", message=str(error))
            return
        raise kopf.TemporaryError(str(error), delay=15) from error
    finally:
        metrics.CYCLE_SECONDS.observe(time.perf_counter() - started)
    status_ = result.status
    rule_events: tuple[events.Event, ...] = ()
    if runtime.rules is not None and not runtime.dry_run:
        synced = rule_sync.sync(runtime.rules, slo, status_, memory, previous.conditions, now)
        if synced.condition is not None:
            kept = tuple(item for item in status_.conditions if item.type != rule_sync.CONDITION)
            status_ = status_.model_copy(update={"conditions": (*kept, synced.condition)})
        rule_events = synced.events
    room_events: tuple[events.Event, ...] = ()
    if result.decision is not None:  # a cycle that planned (a failed one keeps the room it had)
        not_applied = ("Preview" if slo.spec.mode == clinicalslo.Mode.PREVIEW
                       else "dry run" if runtime.dry_run else None)
        held = room.sync(runtime.placeholders, runtime.placeholder_settings, slo, result.reservation, previous.reservation,
                         residency.regions(memo, slo), not_applied)
        status_ = status_.model_copy(update={"reservation": held.status})
        room_events = held.events
        metrics.record_reservation(slo.metadata.namespace, name, held)
    write_status(patch, status_)
    _refresh_schedules(runtime, schedules, now, logger)
    for event in (*result.events, *rule_events, *room_events):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    metrics.record(slo.metadata.namespace, name, result)
    outcome = next((item for item in result.status.conditions if item.type == "Ready"), None)
    if outcome is not None and outcome.status != "True":
        metrics.CYCLE_ERRORS.labels(slo.metadata.namespace, name, outcome.reason).inc()
    _forget_if_deleted(runtime, key, kwargs.get("stopped"))
    if result.decision is not None:
        decision = result.decision
        # Names and numbers only: nothing from the workload's requests reaches the log.
        logger.info("%s", decision.explanation(), extra={
            "desired": decision.desired_replicas, "current": decision.current_replicas,
            "reason": str(decision.reason), "surge": decision.surge, "forecast_peak": decision.forecast_peak,
            "guards": list(decision.guards)})
    if result.retry_after is not None:
        raise kopf.TemporaryError(outcome.message if outcome else "retrying", delay=result.retry_after)


def _forget_if_deleted(runtime: Runtime, key: tuple[str, str], stopped: Any) -> None:
    """Drop again what a cycle recorded if its ClinicalSLO was deleted while the cycle ran.

    Kopf runs ``deleted`` while a timer's thread may still be in a cycle, but sets the timer's stop
    flag (reason RESOURCE_DELETED) first: checked after the cycle recorded, the flag catches either
    order, so the metrics ``deleted`` forgot do not come back."""
    reason = getattr(stopped, "reason", None)
    if reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in reason:
        metrics.forget(*key)
        runtime.memories.pop(key, None)


@kopf.on.delete(GROUP, VERSION, "clinicalslos", retries=DELETE_RETRIES + 1)
def deleted(body: kopf.Body, status: kopf.Status, namespace: str | None, name: str, memo: Any, retry: int,
            logger: kopf.Logger, **_: Any) -> None:
    """Give back what healthscale changed, from status alone (the spec may not even parse)."""
    runtime = _runtime(memo)
    runtime.memories.pop((namespace or "", name), None)
    metrics.forget(namespace or "", name)
    recorded = previous_status(status)
    released = cycle.release(runtime.ports.workloads, namespace or "default", recorded)
    for event in (*room.release(runtime.placeholders, namespace or "default", recorded), *released.events):
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.info("%s", event.message)
    if not released.unrestored:
        return
    if released.retryable and retry < DELETE_RETRIES:
        raise kopf.TemporaryError(f"could not restore: {'; '.join(released.unrestored)}", delay=min(30, 2 ** retry))
    # Refused (403, 422) or still failing: say exactly what is left, and let the deletion finish.
    message = f"not restored, left as it is: {'; '.join(released.unrestored)}"
    kopf.warn(body, reason="RestoreFailed", message=message[:1024])
    logger.warning("%s", message)


@kopf.on.resume(GROUP, VERSION, "surgeschedules")
@kopf.on.create(GROUP, VERSION, "surgeschedules")
@kopf.on.update(GROUP, VERSION, "surgeschedules", field="spec")
@kopf.on.delete(GROUP, VERSION, "surgeschedules", optional=True)
def schedule_changed(body: kopf.Body, namespace: str | None, memo: Any, patch: kopf.Patch, **_: Any) -> None:
    """Re-plan the namespace's ClinicalSLOs at the next tick, and publish the next windows (or,
    for a schedule the models reject, Ready=False with the reason and a Warning Event)."""
    runtime = _runtime(memo)
    runtime.due.update(key for key in runtime.memories if key[0] == namespace)
    if body.get("metadata", {}).get("deletionTimestamp"):
        return
    generation = body.get("metadata", {}).get("generation")
    raw_status = body.get("status") or {}
    try:
        earlier = surgeschedule.SurgeScheduleStatus.model_validate(raw_status).conditions
    except pydantic.ValidationError:
        earlier = ()
    now = int(time.time())
    try:
        schedule = parse_schedule(dict(body))
    except manifests.ManifestError as error:
        message = "; ".join(error.problems)
        fresh = cycle.invalid_schedule_status(generation, earlier, now, message)
        kopf.warn(body, reason="InvalidSpec", message=f"{message}; this schedule is skipped"[:1024])
    else:
        fresh = cycle.schedule_status(schedule, now, schedule.status)
        ready = fresh.conditions[0]
        if ready.status != "True":
            kopf.warn(body, reason=ready.reason, message=ready.message[:1024])
    # The calendar's part only: status.deferred and the rest belong to the deferral loop.
    patch.status.update(fresh.part(fresh.CALENDAR_PART))


def make_runtime(prometheus_url: str, auth: prometheus.Auth, dry_run: bool, deletion_cost: bool = True,
                 prometheus_rules: bool = True, node_warmup: room.Settings | None = room.Settings(),
                 floor_options: tuple[str, ...] = ("keda",)) -> Runtime:
    """``floor_options``: the floor kinds turned on (``adapters.kinds.FloorKind.option``)."""
    kube.load_config()
    workloads = kube.Workloads(options=floor_options)
    return Runtime(cycle.Ports(prometheus.Client(prometheus_url, auth), workloads, kube.ClinicalSLOs(),
                               deletion_cost=deletion_cost), workloads, dry_run=dry_run,
                   rules=kube.PrometheusRules() if prometheus_rules else None,
                   placeholders=kube.Placeholders() if node_warmup is not None else None,
                   placeholder_settings=node_warmup or room.Settings())
