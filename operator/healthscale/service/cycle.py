"""One reconcile of a ClinicalSLO, as a sequence of small steps.

1. ``floors``: ``minReplicas`` and the surge floors in effect, from the spec and the calendar alone;
2. ``target``: the workload and its floor owner (the HPA or KEDA ScaledObject that scales it) as
   they are now; a paused floor owner is left as it is (the ``FloorOwner`` condition says why);
3. ``records``: what healthscale changed before is kept, or put back (``restore.settle``);
4. ``hold_floor``: in Active mode the target is raised to the floor *before* any metric is read,
   so a slow or broken Prometheus never delays a surge floor;
5. ``observe``: demand history, forecast, and each objective's compliance, budget and burn rates
   (availability and latency, through one path: ``measure``). Every outcome is a value: a
   forecast, or "no forecast" with its reason (PrometheusUnavailable, InvalidQuery,
   NonFiniteSample, StaleData, ...); an objective's report, or its reason (LatencyBucketMissing,
   ...); never an exception and never zero;
   5b. ``capacity``: perReplica learned from the latency objective at most daily (``service.capacity``)
   and the one planned with: declared, or with ``perReplicaFrom: Learned`` the bounded recommendation;
6. ``plan``: the planner's decision (pure);
7. ``apply``: each field's original is saved to status before the field is first written;
8. ``status``: the typed ``ClinicalSLOStatus`` the CRD is generated from.

The residency service wraps this with its enforce step before and audit step after. The
reconcile talks to the world only through ``healthscale.ports``; the runtime wires the adapters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from healthscale import ports
from healthscale.api import clinicalslo, common, durations, surgeschedule
from healthscale.domain import calendar, history, planning, series, slo, warmup
from healthscale.domain.forecast import base, choice
from healthscale.service import events as events_
from healthscale.service import history as history_reader
from healthscale.service import restore

ANOMALY_INTERVALS = 3
"""Demand above the forecast band for this many cycles in a row is an anomaly, not noise."""
BUDGET_SECONDS = 20.0
"""A cycle's time budget (one tick): once spent, the optional reads (burn rates) are skipped."""

log = logging.getLogger(__name__)

FITS = threading.BoundedSemaphore(2)
"""Cycles that read a whole history or refit at once. Each holds tens of MiB of temporaries
(14 days at 1 minute is a 20,160-row design matrix) and is CPU-bound, so after a restart a
thousand first cycles take turns instead of all holding their buffers on two cores."""

Event = events_.Event
condition = events_.condition


@dataclasses.dataclass
class Memory:
    """What one ClinicalSLO's cycles keep between them (in the operator's memory)."""

    history: history.HistoryCache | None = None
    forecast_state: choice.State | None = None
    planner: planning.Memory = dataclasses.field(default_factory=planning.Memory)
    last_forecast: base.Forecast | None = None
    above_band: int = 0
    last_cycle: int | None = None
    burn_values: dict[str, tuple[int, float | None]] = dataclasses.field(default_factory=dict)
    """SLO-window averages by PromQL: when read and the value, reused per ``slo.reuse_seconds``."""
    buckets: dict[str, tuple[int, tuple[str, ...]]] = dataclasses.field(default_factory=dict)
    """A latency histogram's bucket boundaries by selector: when read and the le values."""
    capacity_first: int | None = None
    """When this process may first learn perReplica for a ClinicalSLO never learned (staggered by name)."""
    rules_applied: tuple[str, int] | None = None
    """The digest of the PrometheusRule last applied for this ClinicalSLO, and when (``rule_sync``)."""
    no_records_since: int | None = None
    """When Prometheus last had no recorded ratios for this ClinicalSLO (``RECORDS_RETRY_SECONDS``)."""


@dataclasses.dataclass(frozen=True)
class Ports:
    """The outside world as the reconcile sees it; the runtime wires adapters, tests wire fakes."""

    metrics: ports.Metrics
    workloads: ports.Workloads
    records: ports.Records
    clock: Callable[[], float] = time.monotonic
    """Seconds, for the cycle's time budget only (decisions use the ``now`` they are given)."""
    deletion_cost: bool = True
    """Set pod-deletion-cost from indicators.podLoad before a scale-down (off: podLoad is ignored
    and pods are never patched; the operator's --no-pod-deletion-cost)."""


@dataclasses.dataclass(frozen=True)
class Result:
    status: clinicalslo.ClinicalSLOStatus
    events: tuple[Event, ...]
    decision: planning.Decision | None
    scaled: bool
    retry_after: float | None = None
    """Set when a write failed in a way worth retrying before the next step."""
    reservation: warmup.Reservation | None = None
    """Node room to hold ahead of need (``service.room`` applies it); None: warm-up is off, or no plan."""


def surge_windows(schedules: Sequence[surgeschedule.SurgeSchedule], now: int,
                  reach: int) -> tuple[list[calendar.Window], list[str]]:
    """Every window of the selecting schedules that overlaps ``[now - 1d, now + reach + 1d)``,
    and a problem line for each schedule whose calendar could not be read (it is skipped)."""
    found: list[calendar.Window] = []
    problems: list[str] = []
    for schedule in schedules:
        try:
            found += calendar.Calendar(schedule.spec.timezone, schedule.spec.surges).windows(
                series.from_epoch(now - series.DAY), series.from_epoch(now + reach + series.DAY))
        except (ValueError, OverflowError, OSError) as error:
            problems.append(f"SurgeSchedule {schedule.metadata.name} skipped: {error}")
    return found, problems


def next_surge(schedules: Sequence[surgeschedule.SurgeSchedule], now: int) -> str | None:
    moment = series.from_epoch(now)
    upcoming: list[calendar.Window] = []
    for schedule in schedules:
        try:
            upcoming += calendar.Calendar(schedule.spec.timezone, schedule.spec.surges).next_per_surge(moment).values()
        except (ValueError, OverflowError, OSError):
            continue  # reported by surge_windows
    if not upcoming:
        return None
    first = min(upcoming, key=lambda window: window.effective_start)
    state = "active" if first.in_effect(moment) else "at"
    return f"{first.surge} {state} {first.start.strftime('%Y-%m-%dT%H:%MZ')}"


# ------------------------------------------------------------------------------- observe


def scalar(metrics: ports.Metrics, query: str) -> float | None:
    """A query expected to give one series; None when it gives nothing or a non-finite value."""
    found = metrics.instant(query)
    if len(found) > 1:
        raise ports.MetricsError("InvalidQuery", f"{query!r} returned {len(found)} series; aggregate it to one")
    if not found or not math.isfinite(found[0][1]):
        return None
    return found[0][1]


RATE_WINDOW = "5m"
"""The rate() range healthscale puts in the queries it builds from indicators.latencyHistogram."""
BOUNDARY_LOOKBACK = 3600
"""A histogram's bucket boundaries are those of the series its selector matched in the last hour."""


@dataclasses.dataclass(frozen=True)
class Sli:
    """One objective's indicator as PromQL: the rate of good (or bad) events, and of all events."""

    objective: str
    percent: float
    """The target share of good events, in percent."""
    events: str
    total: str
    good: bool
    """Whether ``events`` counts good events (latency) or bad ones (availability's errors)."""
    bucket: str | None = None
    """The histogram bucket (le) read as the latency threshold."""


SUBQUERIES, RECORDING_RULES = "Subqueries", "RecordingRules"
"""Where an objective's ratios came from: the operator's own subqueries, or the recording rules
that ``healthscale rules`` (or the operator's PrometheusRule) has Prometheus evaluate."""
RECORDS_RETRY_SECONDS = 600
"""After Prometheus had no recorded ratios for a ClinicalSLO, look again only after this long: a
cluster without the rules pays one cheap selector query per ClinicalSLO every 10 minutes."""


@dataclasses.dataclass(frozen=True)
class Measured:
    """One objective this cycle: its report, or "no report" with the reason (a condition's)."""

    objective: str
    percent: float
    report: slo.Report | None
    reason: str = ""
    message: str = ""
    bucket: str | None = None
    source: str = SUBQUERIES


def bucket_selector(selector: str, le: str) -> str:
    """``name{matchers}`` with ``le="<le>"`` added to its matchers."""
    name, brace, rest = selector.strip().partition("{")
    matchers = rest.rstrip().removesuffix("}").strip().rstrip(",").strip() if brace else ""
    value = le.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}{{{matchers + ", " if matchers else ""}le="{value}"}}'


def histogram_sli(selector: str, percent: float, le: str) -> Sli:
    """Good events: the bucket at the threshold; all events: the +Inf bucket of the same series
    (present in every classic histogram and scraped with the bucket, so good never exceeds all)."""
    def rate(bucket: str) -> str:
        return f"sum(rate({bucket_selector(selector, bucket)}[{RATE_WINDOW}]))"
    return Sli(slo.LATENCY, percent, rate(le), rate("+Inf"), good=True, bucket=le)


class _Averages:
    """Window averages of indicators, reused per ``slo.reuse_seconds`` across cycles."""

    def __init__(self, metrics: ports.Metrics, kept: dict[str, tuple[int, float | None]], now: int,
                 step: int) -> None:
        self.metrics, self.kept, self.now, self.step = metrics, kept, now, step
        self.used: dict[str, tuple[int, float | None]] = {}

    def __call__(self, indicator: str, seconds: int, resolution: str) -> float | None:
        query = f"avg_over_time(({indicator})[{seconds}s:{resolution}])"
        earlier = self.kept.get(query)
        # A fixed spread per query (from its text) staggers re-reads across ClinicalSLOs.
        spread = zlib.crc32(query.encode()) / 2**32
        if earlier is not None and self.now - earlier[0] < slo.reuse_seconds(seconds, self.step, spread):
            self.used[query] = earlier
        else:
            self.used[query] = (self.now, scalar(self.metrics, query))
        return self.used[query][1]

    def keep(self, indicators: Sequence[str]) -> None:
        """Carry over what was kept of ``indicators`` (an objective whose reads failed this cycle)."""
        prefixes = tuple(f"avg_over_time(({indicator})[" for indicator in indicators)
        for query, value in self.kept.items():
            if query.startswith(prefixes):
                self.used.setdefault(query, value)


def _counts(sli: Sli, events: float | None, total: float | None, seconds: int) -> slo.Counts | None:
    if total is None or (sli.good and events is None):
        return None  # no evidence (a good-events query that returns nothing is never "all bad")
    if sli.good:
        return slo.Counts.of_rates(total, seconds, good_rate=events)
    return slo.Counts.of_rates(total, seconds, bad_rate=events)


def sli_report(average: Callable[[str, int, str], float | None], sli: Sli, window_seconds: int) -> slo.Report:
    """Burn rates over every window and compliance and budget over the SLO window, of one SLI."""
    counts: dict[int, slo.Counts] = {}
    for seconds in slo.WINDOW_SECONDS:
        step = slo.resolution(seconds)
        found = _counts(sli, average(sli.events, seconds, step), average(sli.total, seconds, step), seconds)
        if found is not None:
            counts[seconds] = found
    step = slo.resolution(window_seconds)
    whole = _counts(sli, average(sli.events, window_seconds, step), average(sli.total, window_seconds, step), 1)
    return slo.evaluate(sli.percent, counts, whole)


def records_query(namespace: str, name: str) -> str:
    """One selector for every ratio the recording rules keep for a ClinicalSLO (all windows, both
    objectives): an index lookup for Prometheus, against 16 or more subqueries per objective."""
    return (f"{{__name__=~{slo.promql_string(slo.RECORD_PREFIX + '.+')}, namespace={slo.promql_string(namespace)}, "
            f"clinicalslo={slo.promql_string(name)}}}")


def read_records(metrics: ports.Metrics, namespace: str, name: str, memory: Memory,
                 now: int) -> dict[str, dict[str, float]]:
    """objective -> recorded series name -> error ratio, as Prometheus has them now; empty when it
    has none (no rules loaded, or not evaluated yet), and then not asked again for a while."""
    if memory.no_records_since is not None and now - memory.no_records_since < RECORDS_RETRY_SECONDS:
        return {}
    found: dict[str, dict[str, float]] = {}
    for labels, value in metrics.instant(records_query(namespace, name)):
        if math.isfinite(value) and 0.0 <= value <= 1.0:
            found.setdefault(labels.get("objective", ""), {})[labels.get("__name__", "")] = value
    memory.no_records_since = None if found else now
    return found


def _ratio_counts(ratio: float | None) -> slo.Counts | None:
    # Counts of one event with the recorded error ratio: every ratio the report computes is the same.
    return None if ratio is None else slo.Counts(good=1.0 - ratio, total=1.0)


def recorded_report(sli: Sli, ratios: Mapping[str, float], window_seconds: int) -> slo.Report:
    """The report from recorded error ratios. A window with no recorded ratio had no events (the
    rules record no ratio then), as a subquery over it would have found."""
    counts = {seconds: found for seconds in slo.WINDOW_SECONDS
              if (found := _ratio_counts(ratios.get(slo.record_name(seconds)))) is not None}
    return slo.evaluate(sli.percent, counts, _ratio_counts(ratios.get(slo.record_name(window_seconds))))


def latency_sli(metrics: ports.Metrics, spec: clinicalslo.ClinicalSLOSpec, memory: Memory,
                now: int) -> Sli | Measured | None:
    """The latency SLI, or why it cannot be measured (``Measured`` without a report); None without
    a latency objective. A histogram's boundaries are discovered, and reused for a while."""
    objective, indicators = spec.objectives.latency, spec.indicators
    if objective is None:
        return None
    if indicators.latency_good is not None and indicators.total is not None:
        return Sli(slo.LATENCY, objective.percentile, indicators.latency_good, indicators.total, good=True)
    selector = indicators.latency_histogram
    if selector is None:
        return None  # the models refuse this spec
    earlier = memory.buckets.get(selector)
    if earlier is not None and now - earlier[0] < slo.MAX_REUSE_SECONDS:
        read_at, boundaries = earlier
    else:
        read_at, boundaries = now, tuple(metrics.label_values("le", selector, now - BOUNDARY_LOOKBACK, now))
    memory.buckets = {selector: (read_at, boundaries)}
    threshold = objective.threshold_seconds
    if not boundaries:
        return Measured(slo.LATENCY, objective.percentile, None, "EmptyResult",
                        f"indicators.latencyHistogram {selector} matched no series with an le label in the last "
                        f"{BOUNDARY_LOOKBACK // 60}m: check the metric name and labels")
    le = slo.bucket_at(threshold, boundaries)
    if le is None:
        found = ", ".join(slo.sorted_boundaries(boundaries))
        return Measured(slo.LATENCY, objective.percentile, None, "LatencyBucketMissing",
                        f"no bucket of {selector} has its boundary at objectives.latency.thresholdSeconds "
                        f"{threshold:g} (within {slo.BUCKET_TOLERANCE:.1%}); its boundaries are {found}: set the "
                        f"threshold to one of them or add a bucket at {threshold:g}")
    return histogram_sli(selector, objective.percentile, le)


def measure(metrics: ports.Metrics, spec: clinicalslo.ClinicalSLOSpec, memory: Memory, now: int,
            step: int, records_of: tuple[str, str] | None = None) -> dict[str, Measured]:
    """Each measured objective's report (availability from errors/total, latency from its
    histogram or latencyGood/total), or why it has none. Raises nothing Prometheus does.

    With ``records_of`` (namespace, name), the ratios come from the recording rules when Prometheus
    has them for the objective (one selector query for all), else from subqueries. Long windows'
    subquery averages are reused for a while (``slo.reuse_seconds``): without that, every
    ClinicalSLO would send Prometheus 16 subqueries a cycle per objective, two of them over the
    whole SLO window.
    """
    average = _Averages(metrics, memory.burn_values, now, step)
    window_seconds = int(spec.objectives.window.total_seconds())
    found: dict[str, Measured] = {}
    slis: list[Sli | Measured] = []
    if spec.indicators.errors is not None and spec.indicators.total is not None:
        slis.append(Sli(slo.AVAILABILITY, spec.objectives.availability, spec.indicators.errors,
                        spec.indicators.total, good=False))
    if spec.objectives.latency is None:
        memory.buckets = {}
    else:
        try:
            latency = latency_sli(metrics, spec, memory, now)
        except ports.MetricsError as error:
            latency = Measured(slo.LATENCY, spec.objectives.latency.percentile, None, error.reason,
                               f"reading the buckets of indicators.latencyHistogram: {error}")
        if latency is not None:
            slis.append(latency)
    records: dict[str, dict[str, float]] = {}
    if records_of is not None and any(isinstance(sli, Sli) for sli in slis):
        try:
            records = read_records(metrics, *records_of, memory, now)
        except ports.MetricsError as error:
            log.debug("recorded ratios not read (%s); using subqueries", error)
    for sli in slis:
        if isinstance(sli, Measured):
            found[sli.objective] = sli
            continue
        if sli.objective in records:
            found[sli.objective] = Measured(sli.objective, sli.percent,
                                            recorded_report(sli, records[sli.objective], window_seconds),
                                            bucket=sli.bucket, source=RECORDING_RULES)
            continue
        try:
            found[sli.objective] = Measured(sli.objective, sli.percent, sli_report(average, sli, window_seconds),
                                            bucket=sli.bucket)
        except ports.MetricsError as error:
            average.keep((sli.events, sli.total))
            found[sli.objective] = Measured(sli.objective, sli.percent, None, error.reason, str(error), sli.bucket)
    memory.burn_values = average.used  # only this spec's queries: an edited indicator leaves nothing behind
    return found


_CONDITION_TYPES = {slo.AVAILABILITY: "AvailabilityObjectiveMet", slo.LATENCY: "LatencyObjectiveMet"}


def objective_condition(previous: Sequence[common.Condition], spec: clinicalslo.ClinicalSLOSpec, measured: Measured,
                        generation: int | None, now: int) -> common.Condition:
    """True while the objective's compliance over its window meets the target; the reason says
    whether its budget burns (FastBurn, SlowBurn), is spent (BudgetExhausted) or neither
    (WithinBudget). Unknown when it could not be measured, with the reason."""
    type_ = _CONDITION_TYPES[measured.objective]
    report = measured.report
    if report is None:
        return condition(previous, type_, None, measured.reason, measured.message, generation, now)
    window = durations.format(spec.objectives.window)
    if report.compliance is None or report.budget_remaining is None:
        return condition(previous, type_, None, "NoEvents", f"no events over the last {window}: nothing to measure",
                         generation, now)
    met = report.budget_remaining >= 0
    reason = ("FastBurn" if report.fast_burn else "SlowBurn" if report.slow_burn
              else "WithinBudget" if met else "BudgetExhausted")
    latency = spec.objectives.latency
    what = (f"under {latency.threshold_seconds:g}s" + (f" (bucket le={measured.bucket})" if measured.bucket else "")
            if measured.objective == slo.LATENCY and latency is not None else "good")
    message = (f"{report.compliance * 100:.3f}% of events {what} over {window} (objective {measured.percent:g}%), "
               f"{report.budget_remaining * 100:.1f}% of the error budget left; {report.summary()}"
               + (" (from the recording rules)" if measured.source == RECORDING_RULES else ""))
    return condition(previous, type_, met, reason, message, generation, now)


def objectives_status(measured: dict[str, Measured]) -> clinicalslo.ObjectivesStatus | None:
    if not measured:
        return None

    def one(item: Measured | None) -> clinicalslo.ObjectiveStatus | None:
        if item is None:
            return None
        report = item.report
        return clinicalslo.ObjectiveStatus(
            target=item.percent, bucket=item.bucket, source=item.source if report else None,
            compliance=report.compliance if report else None,
            error_budget_remaining=report.budget_remaining if report else None,
            burn_rates={name: rate for name, rate in report.rates.items() if rate is not None} if report else {})
    return clinicalslo.ObjectivesStatus(availability=one(measured.get(slo.AVAILABILITY)),
                                        latency=one(measured.get(slo.LATENCY)))


def _above_band(memory: Memory, now: int, demand: float | None, quantile: float) -> bool:
    """Was the newest demand above the band the previous forecast gave for its interval?"""
    previous = memory.last_forecast
    if previous is None or demand is None:
        return False
    index = (now - previous.step - previous.start) // previous.step
    if not 0 <= index < len(previous.point):
        return False
    return bool(demand > float(previous.quantile(quantile)[index]))


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the metrics said this cycle: every failure is a value with its reason."""

    outcome: base.Outcome
    current_demand: float | None
    stale: base.NoForecast | None
    anomaly: bool
    objectives: dict[str, Measured]
    conditions: tuple[common.Condition, ...]
    events: tuple[Event, ...]


def _non_finite(values: np.ndarray) -> base.NoForecast | None:
    count = int(np.count_nonzero(np.isinf(values)))
    if not count:
        return None
    return base.NoForecast("NonFiniteSample", f"indicators.demand returned {count} infinite sample(s) "
                                                     "(a division by zero?); fix the query")


def observe(resource: clinicalslo.ClinicalSLO, ports_: Ports, memory: Memory, now: int,
            previous: Sequence[common.Condition], started: float) -> Observation:
    """Read demand, forecast and burn rates. Never raises for anything Prometheus or the data do."""
    spec = resource.spec
    generation = resource.metadata.generation
    policy = planning.Policy.of(spec)
    settings = planning.forecast_settings(spec, policy)
    conditions: list[common.Condition] = []
    events: list[Event] = []
    if memory.history is None or memory.history.query != spec.indicators.demand or memory.history.step != settings.step:
        memory.history = history.HistoryCache(spec.indicators.demand, settings.step)
        memory.forecast_state = None
    outcome: base.Outcome
    current_demand: float | None = None
    stale: base.NoForecast | None = None
    heavy = not memory.history.values.size or choice.needs_refit(memory.forecast_state, settings, now)
    try:
        with FITS if heavy else contextlib.nullcontext():
            demand = history_reader.read(ports_.metrics, memory.history, now, settings.history)
            bad = _non_finite(demand.values)
            if bad is not None:
                outcome = bad
            else:
                outcome, memory.forecast_state = choice.forecast(demand, now, settings, memory.forecast_state)
        if bad is None:
            stale = choice.staleness(demand, now)
            last = demand.last_observed()
            if last is not None and stale is None and now - last[0] <= max(2 * settings.step, choice.FRESH_SECONDS):
                current_demand = last[1]
        observed = int(np.count_nonzero(np.isfinite(demand.values)))
        if bad is not None:
            conditions.append(condition(previous, "MetricsAvailable", False, bad.code, bad.reason, generation, now))
        elif observed == 0:
            conditions.append(condition(previous, "MetricsAvailable", False, "EmptyResult",
                                        "the demand query returned no samples", generation, now))
        elif stale is not None:
            conditions.append(condition(previous, "MetricsAvailable", False, stale.code, stale.reason, generation, now))
        else:
            conditions.append(condition(previous, "MetricsAvailable", True, "DemandObserved",
                                        f"{observed} demand samples over {settings.history // 3600}h", generation, now))
    except ports.MetricsError as error:
        outcome = base.NoForecast(error.reason, str(error))
        conditions.append(condition(previous, "MetricsAvailable", False, error.reason, str(error), generation, now))
    except Exception as error:  # noqa: BLE001 - a forecasting bug must cost no floor; it is reported, not hidden
        log.exception("forecasting failed")
        outcome = base.NoForecast("ForecastFailed", f"{type(error).__name__}: {error}")
        conditions.append(condition(previous, "MetricsAvailable", None, "ForecastFailed", outcome.reason,
                                    generation, now))

    if isinstance(outcome, base.Forecast):
        conditions.append(condition(previous, "Forecasting", True, "Forecast",
                                    f"{outcome.model} forecast over {settings.horizon // 60}m", generation, now))
    else:
        conditions.append(condition(previous, "Forecasting", False, outcome.code, outcome.reason, generation, now))

    # A forecast that keeps under-calling demand is not trusted until it recovers.
    memory.above_band = memory.above_band + 1 if _above_band(memory, now, current_demand, policy.quantile) else 0
    anomaly = memory.above_band >= ANOMALY_INTERVALS
    if anomaly and memory.above_band == ANOMALY_INTERVALS:
        events.append(Event("Warning", "DemandAnomaly",
                            f"demand {current_demand:.4g} above the forecast's p{policy.quantile * 100:g} band for "
                            f"{ANOMALY_INTERVALS} intervals; planning on current demand until the forecast recovers"))
    conditions.append(condition(previous, "DemandAnomaly", anomaly,
                                "AboveForecastBand" if anomaly else "WithinForecastBand",
                                f"demand above the forecast band for {memory.above_band} interval(s)", generation, now))
    memory.last_forecast = outcome if isinstance(outcome, base.Forecast) else None

    measured: dict[str, Measured] = {}
    if ports_.clock() - started > BUDGET_SECONDS:
        log.warning("burn rates skipped: the cycle spent its %gs budget", BUDGET_SECONDS)
        skipped = f"not read this cycle: it spent its {BUDGET_SECONDS:g}s budget before the burn rates"
        if spec.indicators.errors is not None:
            measured[slo.AVAILABILITY] = Measured(slo.AVAILABILITY, spec.objectives.availability, None,
                                                  "NotRead", skipped)
        if spec.objectives.latency is not None:
            measured[slo.LATENCY] = Measured(slo.LATENCY, spec.objectives.latency.percentile, None, "NotRead", skipped)
    else:
        measured = measure(ports_.metrics, spec, memory, now, settings.step,
                           (resource.metadata.namespace, resource.metadata.name))
    for item in measured.values():
        if item.report is None:
            log.warning("%s objective not measured (%s): %s", item.objective, item.reason, item.message)
        conditions.append(objective_condition(previous, spec, item, generation, now))
    return Observation(outcome, current_demand, stale, anomaly, measured, tuple(conditions), tuple(events))


# --------------------------------------------------------------------------------- apply


@dataclasses.dataclass
class Writer:
    """The cycle's writes to one field, each preceded by saving its original to status."""

    resource: clinicalslo.ClinicalSLO
    world: Ports
    originals: tuple[clinicalslo.Original, ...]
    carried_floor: int | None
    active: bool
    events: list[Event] = dataclasses.field(default_factory=list)
    scaled: bool = False

    def owner_floor(self, key: restore.Key) -> int:
        """The floor (HPA, ScaledObject) its owner set: recorded before healthscale's first write, else
        as found."""
        recorded = next((item for item in self.originals if key.same_object(item)), None)
        return recorded.value if recorded is not None else key.current

    def target_value(self, key: restore.Key, target: ports.Target, desired: int) -> int:
        if target.floor is None:
            return desired
        # Never below the floor the autoscaler's owner set, never above its ceiling (the API refuses it).
        return min(max(desired, self.owner_floor(key)), target.floor.max_replicas)

    def write(self, key: restore.Key, value: int, why: str) -> restore.Key:
        """Move the field to ``value`` (Active mode only); returns the key with its new value.

        Raises ``ports.ApiError`` or ``ports.NotFound``: nothing is written when saving the
        original fails."""
        if not self.active or value == key.current:
            return key
        namespace, name = self.resource.metadata.namespace, self.resource.metadata.name
        if not any(key.same_object(item) for item in self.originals):
            self.originals = (*self.originals, key.record(self.carried_floor))
            self.world.records.save_originals(namespace, name, [item.wire() for item in self.originals])
        self.world.workloads.write_field(namespace, key.kind, key.name, key.uid, key.field, value)
        self.scaled = True
        if key.field != restore.WORKLOAD_FIELD:
            reason = "RaisedFloor" if value > key.current else "LoweredFloor"
            self.events.append(Event("Normal", reason, f"{restore.label(key.kind)} {key.name} {key.field} "
                                                       f"{key.current} -> {value}: {why}"))
        else:
            reason = "ScaledUp" if value > key.current else "ScaledDown"
            self.events.append(Event("Normal", reason, f"{key.kind} {key.name} {key.current} -> {value}: {why}"))
        return dataclasses.replace(key, current=value)


FLOOR_OWNER = "FloorOwner"
"""The condition that names the autoscaler whose floor healthscale moves, or why it leaves it alone."""


def floor_owner(target: ports.Target, previous: Sequence[common.Condition], generation: int | None,
                now: int) -> tuple[common.Condition, Event | None] | None:
    """The FloorOwner condition (None when no autoscaler scales the target), and an Event when
    healthscale starts leaving the floor alone."""
    floor = target.floor
    if floor is None:
        return None
    owner = f"{restore.label(floor.kind)} {floor.name}"
    if floor.hands_off is not None:
        found = condition(previous, FLOOR_OWNER, False, "LeftToOwner", floor.hands_off, generation, now)
        earlier = next((item for item in previous if item.type == FLOOR_OWNER), None)
        fresh = earlier is None or (earlier.status, earlier.reason) != (found.status, found.reason)
        return found, Event("Normal", "FloorLeftToOwner", floor.hands_off) if fresh else None
    message = (f"{owner} scales {target.kind} {target.name}: healthscale moves its {floor.field} "
               f"(now {floor.min_replicas}, at most {floor.max_replicas}), never the {target.kind}'s replicas")
    return condition(previous, FLOOR_OWNER, True, "Held", message, generation, now), None


def _protect_busy_pods(ports_: Ports, namespace: str, target: ports.Target, pod_load: str) -> None:
    """Cost each pod by its load so the ReplicaSet removes the least loaded first."""
    if target.selector is None:
        return  # no selector we can express: never annotate a whole namespace
    loads = {labels.get("pod", ""): value for labels, value in ports_.metrics.instant(pod_load)
             if math.isfinite(value)}
    pods = ports_.workloads.pods(namespace, target.selector)
    # Unknown load counts as busy: never sacrifice a pod we cannot see into.
    ceiling = max(loads.values(), default=0.0)
    costs = {pod: int(round(1000 * loads.get(pod, ceiling + 1))) for pod in pods}
    ports_.workloads.set_deletion_costs(namespace, costs)


def _recommendations(memory: Memory, previous: clinicalslo.ClinicalSLOStatus) -> None:
    if not memory.planner.proposals:
        # A restarted operator picks up the stabilisation window from status: no dip mid-surge.
        proposals = []
        for item in previous.recommendations:
            with contextlib.suppress(ValueError):
                proposals.append((series.to_epoch(events_.parse_time(item.time)), item.replicas))
        memory.planner = planning.Memory(tuple(proposals))


def _failed(resource: clinicalslo.ClinicalSLO, previous: clinicalslo.ClinicalSLOStatus, now: int, reason: str,
            message: str, originals: tuple[clinicalslo.Original, ...], extra: Sequence[Event] = (),
            retry_after: float | None = None) -> Result:
    """A cycle that could not plan: Ready=False with the reason, every record kept."""
    ready = condition(previous.conditions, "Ready", False, reason, message, resource.metadata.generation, now)
    kept = tuple(item for item in previous.conditions if item.type != "Ready")
    status = previous.model_copy(update={
        "conditions": (ready, *kept), "observed_generation": resource.metadata.generation,
        "originals": originals, "original": None, "last_cycle_time": events_.timestamp(now)})
    return Result(status, (*extra, Event("Warning", reason, message)), None, False, retry_after)


def run(resource: clinicalslo.ClinicalSLO, schedules: Sequence[surgeschedule.SurgeSchedule], now: int,
        ports_: Ports, memory: Memory, previous: clinicalslo.ClinicalSLOStatus, dry_run: bool = False) -> Result:
    """Reconcile one ClinicalSLO at ``now``: floors, target, records, observe, plan, apply, status.

    Raises nothing for what Prometheus, the data or the API server do: failures become
    conditions, Events and ``retry_after``."""
    started = ports_.clock()
    spec = resource.spec
    namespace = resource.metadata.namespace
    generation = resource.metadata.generation
    policy = planning.Policy.of(spec)
    settings = planning.forecast_settings(spec, policy)
    active = spec.mode == clinicalslo.Mode.ACTIVE and not dry_run
    originals = restore.legacy(previous)
    events: list[Event] = []

    # 1. floors: from the spec and the calendar alone.
    windows, schedule_problems = surge_windows(schedules, now, policy.reach)
    events += [Event("Warning", "InvalidSurgeSchedule", problem) for problem in schedule_problems]
    floor = planning.floor(policy, windows, now)

    # 2. target
    try:
        target = ports_.workloads.read(namespace, spec.target_ref.kind, spec.target_ref.name)
    except ports.NotFound as error:
        return _failed(resource, previous, now, "TargetNotFound", f"{error}; retrying", originals, events, 30.0)
    except ports.ApiError as error:
        return _failed(resource, previous, now, "ApiError", str(error), originals, events,
                       15.0 if error.retryable else None)

    # 3. records: keep the one this cycle writes, put back the others.
    key = restore.Key.of(target)
    settled = restore.settle(ports_.workloads, namespace, originals, key if active else None)
    events += settled.events
    events += [Event("Warning", "RestoreFailed", f"could not restore {failure}; retrying") for failure in settled.failures]
    owner = floor_owner(target, previous.conditions, generation, now)
    if owner is not None and owner[1] is not None:
        events.append(owner[1])
    hands_off = target.floor is not None and target.floor.hands_off is not None
    # A paused (or otherwise owned) floor is left as it is: nothing is written, its record is kept.
    writer = Writer(resource, ports_, settled.originals, settled.carried_floor, active and not hands_off)

    # 4. hold the floor before reading any metric.
    write_error: Exception | None = None
    try:
        held = writer.target_value(key, target, floor.replicas)
        if held > key.current:
            key = writer.write(key, held, f"{floor.signal} {floor.detail} (held before reading metrics)")
    except (ports.ApiError, ports.NotFound) as error:
        write_error = error

    # 5. observe
    observation = observe(resource, ports_, memory, now, previous.conditions, started)
    events += observation.events

    # 5b. capacity: perReplica learned at most daily (service.capacity, imported here because it reads the
    # latency SLI through this module), and the perReplica planned with (declared, or learned and bounded).
    from healthscale.service import capacity as learning

    capacity_status = learning.refresh(resource, ports_, memory, previous.capacity, windows, policy.lookahead, now,
                                       started)
    if capacity_status is not None and capacity_status.effective_per_replica is not None:
        policy = dataclasses.replace(policy, per_replica=capacity_status.effective_per_replica)

    # 6. plan
    _recommendations(memory, previous)
    inputs = planning.Inputs(
        now=now, current_replicas=key.current, current_demand=observation.current_demand,
        forecast=observation.outcome, surges=windows,
        fast_burns=tuple(planning.Burn(item.objective, item.report.summary().removeprefix("burning: "))
                         for item in observation.objectives.values() if item.report and item.report.fast_burn),
        demand_anomaly=observation.anomaly, stale=observation.stale, ready_replicas=target.ready_replicas,
    )
    decision, memory.planner = planning.plan(policy, inputs, memory.planner)
    reservation = None
    if policy.node_provisioning_seconds > 0:
        reservation = warmup.reserve(policy, inputs, decision,
                                     previous.reservation.replicas if previous.reservation is not None else 0)
    if spec.capacity.per_replica_from == clinicalslo.PerReplicaFrom.LEARNED and capacity_status is not None \
            and capacity_status.reason:
        decision = dataclasses.replace(decision, notes=(*decision.notes, capacity_status.reason))

    # 7. apply
    if write_error is None:
        value = writer.target_value(key, target, decision.desired_replicas)
        try:
            if value < key.current and target.floor is None and spec.indicators.pod_load and writer.active \
                    and ports_.deletion_cost:
                with contextlib.suppress(ports.MetricsError):  # no loads known: the ReplicaSet's own order
                    _protect_busy_pods(ports_, namespace, target, spec.indicators.pod_load)
            key = writer.write(key, value, decision.explanation())
        except (ports.ApiError, ports.NotFound) as error:
            write_error = error
    events += writer.events

    # 8. status
    mode_note = "Preview: computed, not applied" if spec.mode == clinicalslo.Mode.PREVIEW else (
        "dry run: computed, not applied" if dry_run else
        f"not applied: {restore.label(key.kind)} {key.name} is left as it is (FloorOwner)" if hands_off else "applied")
    retry_after: float | None = None
    if write_error is not None:
        retryable = isinstance(write_error, ports.ApiError) and write_error.retryable
        retry_after = 15.0 if retryable or isinstance(write_error, ports.NotFound) else None
        ready = condition(previous.conditions, "Ready", False, "ScaleRefused",
                          f"{write_error}; the plan was {decision.explanation()}", generation, now)
        events.append(Event("Warning", "ScaleRefused", str(write_error)))
    elif settled.failures:
        ready = condition(previous.conditions, "Ready", False, "RestoreFailed", "; ".join(settled.failures),
                          generation, now)
        retry_after = 15.0 if settled.retryable else None
    else:
        ready = condition(previous.conditions, "Ready", True, "Planned", f"{mode_note}; {decision.explanation()}",
                          generation, now)
    if schedule_problems:
        observation_conditions = (*observation.conditions, condition(
            previous.conditions, "SchedulesValid", False, "InvalidSurgeSchedule", "; ".join(schedule_problems),
            generation, now))
    else:
        observation_conditions = observation.conditions
    if owner is not None:
        observation_conditions = (owner[0], *observation_conditions)
    outcome = observation.outcome
    availability = observation.objectives.get(slo.AVAILABILITY)
    burn = availability.report if availability is not None else None
    status = clinicalslo.ClinicalSLOStatus(
        observed_generation=generation,
        conditions=(ready, *observation_conditions),
        current_demand=observation.current_demand,
        forecast_peak=decision.forecast_peak,
        forecast_peak_time=events_.timestamp(decision.forecast_peak_time) if decision.forecast_peak_time else None,
        desired_replicas=decision.desired_replicas,
        current_replicas=target.replicas,
        reason=str(decision.reason),
        surge=decision.surge,
        explanation=decision.explanation(),
        next_surge=next_surge(schedules, now),
        model=outcome.model if isinstance(outcome, base.Forecast) else f"none ({outcome.code})",
        forecast_error=outcome.error if isinstance(outcome, base.Forecast) else None,
        objectives=objectives_status(observation.objectives),
        # Deprecated mirrors of objectives.availability, kept for a release for dashboards and alerts.
        error_budget_remaining=burn.budget_remaining if burn else None,
        burn_rates={name: rate for name, rate in burn.rates.items() if rate is not None} if burn else {},
        originals=writer.originals,
        original=None,
        last_cycle_time=events_.timestamp(now),
        recommendations=tuple(clinicalslo.Recommendation(time=events_.timestamp(time), replicas=replicas)
                              for time, replicas in memory.planner.proposals),
        capacity=capacity_status,
        reservation=previous.reservation,  # service.room writes this cycle's
    )
    memory.last_cycle = now
    return Result(status, tuple(events), decision, writer.scaled, retry_after, reservation)


# ------------------------------------------------------------------------------ deletion


@dataclasses.dataclass(frozen=True)
class Release:
    """What deleting a ClinicalSLO put back, and what it could not."""

    events: tuple[Event, ...]
    unrestored: tuple[str, ...]
    retryable: bool


def release(workloads: ports.Workloads, namespace: str, status: clinicalslo.ClinicalSLOStatus) -> Release:
    """Put back every field healthscale changed for a ClinicalSLO being deleted (or released).

    Needs only the status, never the spec: a ClinicalSLO whose spec the models reject is
    released all the same."""
    settled = restore.settle(workloads, namespace, restore.legacy(status), None)
    return Release(settled.events, settled.failures, settled.retryable)


def schedule_status(schedule: surgeschedule.SurgeSchedule, now: int,
                    previous: surgeschedule.SurgeScheduleStatus | None) -> surgeschedule.SurgeScheduleStatus:
    """The next window of each surge and the Ready condition, for the SurgeSchedule's status."""
    moment = series.from_epoch(now)
    earlier = previous.conditions if previous else ()
    generation = schedule.metadata.generation
    try:
        windows = calendar.Calendar(schedule.spec.timezone, schedule.spec.surges).next_per_surge(moment)
    except (ValueError, OverflowError, OSError) as error:
        return invalid_schedule_status(generation, earlier, now, str(error))
    listed = tuple(
        surgeschedule.SurgeWindowStatus(name=name, start=window.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                        end=window.end.strftime("%Y-%m-%dT%H:%M:%SZ"), active=window.in_effect(moment))
        for name, window in sorted(windows.items(), key=lambda item: item[1].effective_start)
    )
    upcoming = [window for window in windows.values() if not window.in_effect(moment)]
    first = min(upcoming, key=lambda window: window.start, default=None)
    ready = condition(earlier, "Ready", True, "Valid", f"{len(schedule.spec.surges)} surge(s); "
                      f"{sum(1 for item in listed if item.active)} in effect now", generation, now)
    return surgeschedule.SurgeScheduleStatus(
        observed_generation=generation, conditions=(ready,), windows=listed,
        next_surge=f"{first.surge} at {first.start.strftime('%Y-%m-%dT%H:%MZ')}" if first else None,
    )


def invalid_schedule_status(generation: int | None, earlier: Sequence[common.Condition], now: int,
                            message: str) -> surgeschedule.SurgeScheduleStatus:
    """Ready=False, reason InvalidSpec: the schedule is skipped; every other one keeps working."""
    ready = condition(earlier, "Ready", False, "InvalidSpec", f"{message}; this schedule is skipped", generation, now)
    return surgeschedule.SurgeScheduleStatus(observed_generation=generation, conditions=(ready,))
