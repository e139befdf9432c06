"""One reconcile cycle of a ClinicalSLO: observe, forecast, plan, apply, report.

The service owns the order of things and the safety rules at the edges: a Prometheus outage or
an empty demand query becomes "no forecast" (so the planner holds, never scales down), Preview
never writes to the workload, and the original replica count or HPA floor is remembered in the
status the first time healthscale changes it, so deleting the ClinicalSLO can restore it.
It returns everything the Kopf handler needs to write: the status, the Events and the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from healthscale.adapters import kube, prometheus
from healthscale.api import clinicalslo, surgeschedule
from healthscale.domain import calendar, forecasting, planning, series, slo

ANOMALY_INTERVALS = 3
"""Demand above the forecast band for this many cycles in a row is an anomaly, not noise."""

log = logging.getLogger(__name__)

FITS = threading.BoundedSemaphore(2)
"""Cycles that read a whole history or refit at once. Each holds tens of MiB of temporaries
(14 days at 1 minute is a 20,160-row design matrix) and is CPU-bound, so after a restart a
thousand first cycles take turns instead of all holding their buffers on two cores."""


@dataclasses.dataclass
class Memory:
    """What one ClinicalSLO's cycles keep between them (in the operator's memory)."""

    history: prometheus.HistoryCache | None = None
    forecast_state: forecasting.State | None = None
    planner: planning.Memory = dataclasses.field(default_factory=planning.Memory)
    last_forecast: forecasting.Forecast | None = None
    above_band: int = 0
    last_cycle: int | None = None
    burn_values: dict[str, tuple[int, float | None]] = dataclasses.field(default_factory=dict)
    """SLO-window averages by PromQL: when read and the value, reused per ``slo.reuse_seconds``."""


@dataclasses.dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Result:
    status: dict[str, Any]
    events: tuple[Event, ...]
    decision: planning.Decision | None
    scaled: bool


@dataclasses.dataclass(frozen=True)
class Clients:
    prometheus: prometheus.Client
    workloads: kube.Workloads


def _timestamp(epoch: int) -> str:
    return series.from_epoch(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def condition(previous: Sequence[Mapping[str, Any]], type_: str, ok: bool | None, reason: str, message: str,
              generation: int | None, now: int) -> dict[str, Any]:
    """A metav1.Condition; lastTransitionTime moves only when the status changes."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    earlier = next((item for item in previous if item.get("type") == type_), None)
    moved = earlier is None or earlier.get("status") != status
    return {
        "type": type_, "status": status, "reason": reason, "message": message[:32768],
        "lastTransitionTime": _timestamp(now) if moved or earlier is None else earlier.get("lastTransitionTime", _timestamp(now)),
        "observedGeneration": generation,
    }


def surge_windows(schedules: Sequence[surgeschedule.SurgeSchedule], now: int, reach: int) -> list[calendar.Window]:
    """Every window of the selecting schedules that overlaps ``[now - 1d, now + reach + 1d)``."""
    found: list[calendar.Window] = []
    for schedule in schedules:
        found += calendar.Calendar(schedule.spec.timezone, schedule.spec.surges).windows(
            series.from_epoch(now - series.DAY), series.from_epoch(now + reach + series.DAY))
    return found


def next_surge(schedules: Sequence[surgeschedule.SurgeSchedule], now: int) -> str | None:
    moment = series.from_epoch(now)
    upcoming = []
    for schedule in schedules:
        for window in calendar.Calendar(schedule.spec.timezone, schedule.spec.surges).next_per_surge(moment).values():
            upcoming.append(window)
    if not upcoming:
        return None
    first = min(upcoming, key=lambda window: window.effective_start)
    state = "active" if first.in_effect(moment) else "at"
    return f"{first.surge} {state} {first.start.strftime('%Y-%m-%dT%H:%MZ')}"


def burn_report(client: prometheus.Client, spec: clinicalslo.ClinicalSLOSpec, memory: Memory, now: int,
                step: int) -> slo.Report | None:
    """Burn rates from the errors and total indicators (rates), averaged over each window.

    Long windows' averages are reused for a while (``slo.reuse_seconds``): without that, every
    ClinicalSLO would send Prometheus 16 subqueries a cycle, two of them over the whole SLO window.
    """
    errors, total = spec.indicators.errors, spec.indicators.total
    if errors is None or total is None:
        memory.burn_values = {}
        return None
    kept, used = memory.burn_values, {}

    def average(indicator: str, seconds: int, resolution: str) -> float | None:
        query = f"avg_over_time(({indicator})[{seconds}s:{resolution}])"
        earlier = kept.get(query)
        # A fixed spread per query (from its text) staggers re-reads across ClinicalSLOs.
        spread = zlib.crc32(query.encode()) / 2**32
        if earlier is not None and now - earlier[0] < slo.reuse_seconds(seconds, step, spread):
            used[query] = earlier
        else:
            used[query] = (now, client.scalar(query))
        return used[query][1]

    counts: dict[int, slo.Counts] = {}
    for seconds in slo.WINDOW_SECONDS:
        bad = average(errors, seconds, "1m")
        all_ = average(total, seconds, "1m")
        if all_ is None:
            continue
        bad = bad or 0.0
        counts[seconds] = slo.Counts(good=max(0.0, all_ - bad) * seconds, total=all_ * seconds)
    window_seconds = int(spec.objectives.window.total_seconds())
    bad = average(errors, window_seconds, "5m")
    all_ = average(total, window_seconds, "5m")
    memory.burn_values = used  # only this spec's queries: an edited indicator leaves nothing behind
    whole = slo.Counts(max(0.0, (all_ or 0.0) - (bad or 0.0)), all_) if all_ is not None else None
    return slo.evaluate(spec.objectives.availability, counts, whole)


def _above_band(memory: Memory, now: int, demand: float | None, quantile: float) -> bool:
    """Was the newest demand above the band the previous forecast gave for its interval?"""
    previous = memory.last_forecast
    if previous is None or demand is None:
        return False
    index = (now - previous.step - previous.start) // previous.step
    if not 0 <= index < len(previous.point):
        return False
    return bool(demand > float(previous.quantile(quantile)[index]))


def run(resource: clinicalslo.ClinicalSLO, schedules: Sequence[surgeschedule.SurgeSchedule], now: int,
        clients: Clients, memory: Memory, previous_status: Mapping[str, Any], dry_run: bool = False) -> Result:
    """Observe, forecast, plan and (in Active mode) apply, for one ClinicalSLO at ``now``."""
    spec = resource.spec
    namespace = resource.metadata.namespace or "default"
    generation = resource.metadata.generation
    policy = planning.Policy.of(spec)
    settings = planning.forecast_settings(spec, policy)
    previous_conditions = list(previous_status.get("conditions") or [])
    events: list[Event] = []
    conditions: list[dict[str, Any]] = []

    target = clients.workloads.read(namespace, spec.target_ref.kind, spec.target_ref.name)

    # Observe demand. Failures and emptiness are "no forecast" with their reason, never zero.
    if memory.history is None or memory.history.query != spec.indicators.demand or memory.history.step != settings.step:
        memory.history = prometheus.HistoryCache(spec.indicators.demand, settings.step)
        memory.forecast_state = None
    outcome: forecasting.Outcome
    current_demand: float | None = None
    heavy = not memory.history.values.size or forecasting.needs_refit(memory.forecast_state, settings, now)
    try:
        with FITS if heavy else contextlib.nullcontext():
            history = prometheus.read_history(clients.prometheus, memory.history, now, settings.history)
            outcome, memory.forecast_state = forecasting.forecast(history, now, settings, memory.forecast_state)
        last = history.last_observed()
        if last is not None and now - last[0] <= max(2 * settings.step, 600):
            current_demand = last[1]
        if history.observed_count() == 0:
            conditions.append(condition(previous_conditions, "MetricsAvailable", False, "EmptyResult",
                                        "the demand query returned no samples", generation, now))
        else:
            conditions.append(condition(previous_conditions, "MetricsAvailable", True, "DemandObserved",
                                        f"{history.observed_count()} demand samples over {settings.history // 3600}h",
                                        generation, now))
    except prometheus.MetricsUnavailable as error:
        outcome = forecasting.NoForecast("MetricsUnavailable", str(error))
        conditions.append(condition(previous_conditions, "MetricsAvailable", False, "PrometheusUnavailable",
                                    str(error), generation, now))

    if isinstance(outcome, forecasting.Forecast):
        conditions.append(condition(previous_conditions, "Forecasting", True, "Forecast",
                                    f"{outcome.model} forecast over {settings.horizon // 60}m", generation, now))
    else:
        conditions.append(condition(previous_conditions, "Forecasting", False, outcome.code, outcome.reason,
                                    generation, now))

    # A forecast that keeps under-calling demand is not trusted until it recovers.
    if _above_band(memory, now, current_demand, policy.quantile):
        memory.above_band += 1
    else:
        memory.above_band = 0
    anomaly = memory.above_band >= ANOMALY_INTERVALS
    if anomaly and memory.above_band == ANOMALY_INTERVALS:
        events.append(Event("Warning", "DemandAnomaly",
                            f"demand {current_demand:.4g} above the forecast's p{policy.quantile * 100:g} band for "
                            f"{ANOMALY_INTERVALS} intervals; planning on current demand until the forecast recovers"))
    conditions.append(condition(previous_conditions, "DemandAnomaly", anomaly,
                                "AboveForecastBand" if anomaly else "WithinForecastBand",
                                f"demand above the forecast band for {memory.above_band} interval(s)", generation, now))
    memory.last_forecast = outcome if isinstance(outcome, forecasting.Forecast) else None

    burn: slo.Report | None = None
    try:
        burn = burn_report(clients.prometheus, spec, memory, now, settings.step)
    except prometheus.MetricsUnavailable as error:
        log.warning("burn rates unavailable: %s", error)

    if not memory.planner.proposals:
        # A restarted operator picks up the stabilisation window from status: no dip mid-surge.
        memory.planner = planning.Memory(tuple(
            (series.to_epoch(_parse_time(item["time"])), int(item["replicas"]))
            for item in previous_status.get("recommendations") or [] if "time" in item and "replicas" in item))
    windows = surge_windows(schedules, now, policy.lookahead)
    decision, memory.planner = planning.plan(policy, planning.Inputs(
        now=now, current_replicas=target.hpa.min_replicas if target.hpa else target.replicas,
        current_demand=current_demand, forecast=outcome, surges=windows,
        fast_burn=burn.fast_burn if burn else False, demand_anomaly=anomaly,
    ), memory.planner)

    # Apply: an HPA keeps reactive scaling, healthscale moves its floor; else the scale subresource.
    original = dict(previous_status.get("original") or {})
    scaled = False
    active = spec.mode == clinicalslo.Mode.ACTIVE and not dry_run
    if target.hpa is not None:
        floor = min(decision.desired_replicas, target.hpa.max_replicas)
        if active and floor != target.hpa.min_replicas:
            if not original:
                original = {"kind": "HorizontalPodAutoscaler", "name": target.hpa.name, "minReplicas": target.hpa.min_replicas}
            clients.workloads.set_hpa_floor(namespace, target.hpa.name, floor)
            scaled = True
            events.append(Event("Normal", "RaisedFloor" if floor > target.hpa.min_replicas else "LoweredFloor",
                                f"HPA {target.hpa.name} minReplicas {target.hpa.min_replicas} -> {floor}: {decision.explanation()}"))
    elif active and decision.desired_replicas != target.replicas:
        if not original:
            original = {"kind": spec.target_ref.kind, "name": spec.target_ref.name, "replicas": target.replicas}
        if decision.desired_replicas < target.replicas and spec.indicators.pod_load:
            _protect_busy_pods(clients, namespace, target, spec.indicators.pod_load)
        clients.workloads.scale(namespace, spec.target_ref.kind, spec.target_ref.name, decision.desired_replicas)
        scaled = True
        events.append(Event("Normal", "ScaledUp" if decision.desired_replicas > target.replicas else "ScaledDown",
                            f"{spec.target_ref.kind} {spec.target_ref.name} {target.replicas} -> "
                            f"{decision.desired_replicas}: {decision.explanation()}"))

    mode_note = "Preview: computed, not applied" if spec.mode == clinicalslo.Mode.PREVIEW else (
        "dry run: computed, not applied" if dry_run else "applied")
    conditions.insert(0, condition(previous_conditions, "Ready", True, "Planned",
                                   f"{mode_note}; {decision.explanation()}", generation, now))
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "currentDemand": current_demand,
        "forecastPeak": decision.forecast_peak,
        "forecastPeakTime": _timestamp(decision.forecast_peak_time) if decision.forecast_peak_time else None,
        "desiredReplicas": decision.desired_replicas,
        "currentReplicas": target.replicas,
        "reason": str(decision.reason),
        "surge": decision.surge,
        "explanation": decision.explanation(),
        "nextSurge": next_surge(schedules, now),
        "model": outcome.model if isinstance(outcome, forecasting.Forecast) else f"none ({outcome.code})",
        "forecastError": outcome.error if isinstance(outcome, forecasting.Forecast) else None,
        "errorBudgetRemaining": burn.budget_remaining if burn else None,
        "burnRates": {name: rate for name, rate in burn.rates.items() if rate is not None} if burn else {},
        "lastCycleTime": _timestamp(now),
        "recommendations": [{"time": _timestamp(time), "replicas": replicas}
                            for time, replicas in memory.planner.proposals],
    }
    if original:
        status["original"] = original
    memory.last_cycle = now
    return Result(status, tuple(events), decision, scaled)


def _protect_busy_pods(clients: Clients, namespace: str, target: kube.Target, pod_load: str) -> None:
    """Cost each pod by its load so the ReplicaSet removes the least loaded first."""
    loads = {labels.get("pod", ""): value for labels, value in clients.prometheus.instant(pod_load)
             if not math.isnan(value)}
    pods = clients.workloads.pods(namespace, target.selector)
    # Unknown load counts as busy: never sacrifice a pod we cannot see into.
    ceiling = max(loads.values(), default=0.0)
    costs = {pod: int(round(1000 * loads.get(pod, ceiling + 1))) for pod in pods}
    clients.workloads.set_deletion_costs(namespace, costs)


def restore(resource: clinicalslo.ClinicalSLO, clients: Clients, status: Mapping[str, Any]) -> str | None:
    """Put back the replica count or HPA floor healthscale found; returns what it did."""
    original = status.get("original") or {}
    namespace = resource.metadata.namespace or "default"
    if not original:
        return None
    try:
        if original.get("kind") == "HorizontalPodAutoscaler":
            clients.workloads.set_hpa_floor(namespace, str(original["name"]), int(original["minReplicas"]))
            return f"restored HPA {original['name']} minReplicas to {original['minReplicas']}"
        clients.workloads.scale(namespace, str(original["kind"]), str(original["name"]), int(original["replicas"]))
        return f"restored {original['kind']} {original['name']} to {original['replicas']} replicas"
    except kube.TargetNotFound:
        return "target is gone; nothing to restore"


def schedule_status(schedule: surgeschedule.SurgeSchedule, now: int) -> dict[str, Any]:
    """The next window of each surge, for the SurgeSchedule's status."""
    moment = series.from_epoch(now)
    windows = calendar.Calendar(schedule.spec.timezone, schedule.spec.surges).next_per_surge(moment)
    listed = [
        {"name": name, "start": window.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
         "end": window.end.strftime("%Y-%m-%dT%H:%M:%SZ"), "active": window.in_effect(moment)}
        for name, window in sorted(windows.items(), key=lambda item: item[1].effective_start)
    ]
    upcoming = [window for window in windows.values() if not window.in_effect(moment)]
    first = min(upcoming, key=lambda window: window.start, default=None)
    return {
        "observedGeneration": schedule.metadata.generation,
        "windows": listed,
        "nextSurge": f"{first.surge} at {first.start.strftime('%Y-%m-%dT%H:%MZ')}" if first else None,
    }

