"""The operator's own Prometheus metrics: what it decided for each ClinicalSLO, and how fast.

Labels are namespace and ClinicalSLO name only, never anything from the workload's data; the
objective metrics add the objective (availability, latency) and the burn-rate window; the
residency metrics add the allowed region (configuration), the admission result and, for the
namespace audit, the data class (phi, pii or unknown: never a value a pod author wrote). No metric
is labelled with a pod name. ``healthscale_build_info`` carries versions (healthscale, Python, Kopf).
``forget`` removes a gone ClinicalSLO's series from every metric defined here.
"""

from __future__ import annotations

import importlib.metadata
import platform

import prometheus_client

from healthscale.api import clinicalslo
from healthscale.domain import slo
from healthscale.service import audit, cycle, room
from healthscale.service import residency

_LABELS = ("namespace", "clinicalslo")
REASONS = ("schedule", "forecast", "reactive", "minimum")

DESIRED = prometheus_client.Gauge("healthscale_desired_replicas", "Replicas the last plan asked for", _LABELS)
CURRENT = prometheus_client.Gauge("healthscale_current_replicas", "Replicas the target had at the last cycle", _LABELS)
DEMAND = prometheus_client.Gauge("healthscale_current_demand", "Latest observed demand", _LABELS)
FORECAST_PEAK = prometheus_client.Gauge(
    "healthscale_forecast_peak_demand", "Highest planned demand over the lookahead", _LABELS)
REASON = prometheus_client.Gauge(
    "healthscale_decision_reason", "1 for the signal that decided the last plan, 0 for the others", (*_LABELS, "reason"))
FORECASTING = prometheus_client.Gauge(
    "healthscale_forecast_available", "1 when the last cycle had a forecast, 0 when it had none", _LABELS)
BUDGET = prometheus_client.Gauge(
    "healthscale_error_budget_remaining",
    "Deprecated (healthscale_objective_error_budget_remaining{objective=\"availability\"}): share of the "
    "availability objective's error budget left", _LABELS)
COMPLIANCE = prometheus_client.Gauge(
    "healthscale_objective_compliance", "Share of good events over the SLO window (0 to 1), by objective",
    (*_LABELS, "objective"))
OBJECTIVE_BUDGET = prometheus_client.Gauge(
    "healthscale_objective_error_budget_remaining",
    "Share of the objective's error budget left over the SLO window (1 untouched, negative overspent)",
    (*_LABELS, "objective"))
BURN_RATE = prometheus_client.Gauge(
    "healthscale_objective_burn_rate",
    "How many times faster than sustainable the objective's error budget is spent, by window",
    (*_LABELS, "objective", "window"))
FORECAST_ERROR = prometheus_client.Gauge(
    "healthscale_forecast_error", "Recent forecast error, mean absolute scaled (1 = as good as naive)", _LABELS)
RECOMMENDED_PER_REPLICA = prometheus_client.Gauge(
    "healthscale_recommended_per_replica",
    "perReplica learned from the latency objective's history (status.capacity.recommendedPerReplica); "
    "no series while there is no recommendation", _LABELS)
RESERVED = prometheus_client.Gauge(
    "healthscale_reserved_replicas",
    "Replicas' worth of node room held by placeholder pods ahead of need (status.reservation); no series "
    "while capacity.nodeProvisioningSeconds is 0", _LABELS)
CYCLE_ERRORS = prometheus_client.Counter(
    "healthscale_cycle_errors", "Cycles that failed, by cause", (*_LABELS, "cause"))
SCALE_ACTIONS = prometheus_client.Counter(
    "healthscale_scale_actions", "Scale or HPA-floor changes made", _LABELS)
CYCLE_SECONDS = prometheus_client.Histogram(
    "healthscale_cycle_seconds", "Time to observe, forecast, plan and apply one ClinicalSLO",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CYCLE_DELAY = prometheus_client.Histogram(
    "healthscale_cycle_delay_seconds",
    "How long after its due time (last cycle + forecast.step) a ClinicalSLO was re-planned; "
    "a growing tail means the operator is not keeping up",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing (as the CLI says)
        return "unknown"


BUILD_INFO = prometheus_client.Gauge(
    "healthscale_build_info", "Always 1; the labels say which healthscale, Python and Kopf this replica runs",
    ("version", "python", "kopf"))
BUILD_INFO.labels(_version("healthscale"), platform.python_version(), _version("kopf")).set(1)


def record(namespace: str, name: str, result: cycle.Result) -> None:
    decision = result.decision
    if decision is None:
        return
    DESIRED.labels(namespace, name).set(decision.desired_replicas)
    CURRENT.labels(namespace, name).set(decision.current_replicas)
    demand = result.status.current_demand
    if demand is not None:
        DEMAND.labels(namespace, name).set(float(demand))
    if decision.forecast_peak is not None:
        FORECAST_PEAK.labels(namespace, name).set(decision.forecast_peak)
    for reason in REASONS:
        REASON.labels(namespace, name, reason).set(1.0 if str(decision.reason) == reason else 0.0)
    FORECASTING.labels(namespace, name).set(0.0 if decision.no_forecast is not None else 1.0)
    error = result.status.forecast_error
    if error is not None:
        FORECAST_ERROR.labels(namespace, name).set(float(error))
    budget = result.status.error_budget_remaining
    if budget is not None:
        BUDGET.labels(namespace, name).set(float(budget))
    _record_objectives(namespace, name, result.status.objectives)
    learned = result.status.capacity.recommended_per_replica if result.status.capacity is not None else None
    if learned is not None:
        RECOMMENDED_PER_REPLICA.labels(namespace, name).set(learned)
    elif (namespace, name) in _series(RECOMMENDED_PER_REPLICA, namespace, name):
        RECOMMENDED_PER_REPLICA.remove(namespace, name)  # "no recommendation" is no series, never 0
    if result.scaled:
        SCALE_ACTIONS.labels(namespace, name).inc()


def record_reservation(namespace: str, name: str, outcome: room.Outcome) -> None:
    if outcome.status is not None:
        RESERVED.labels(namespace, name).set(outcome.reserved)
    elif (namespace, name) in _series(RESERVED, namespace, name):
        RESERVED.remove(namespace, name)  # warm-up off: no series, not 0


def _record_objectives(namespace: str, name: str, objectives: clinicalslo.ObjectivesStatus | None) -> None:
    """Each objective's compliance, budget and burn rates; the series of an objective or window no
    longer measured (removed from the spec, unreadable this cycle) are removed, not left stale."""
    values: dict[prometheus_client.Gauge, dict[tuple[str, ...], float]] = {COMPLIANCE: {}, OBJECTIVE_BUDGET: {},
                                                                           BURN_RATE: {}}
    for objective in slo.OBJECTIVES:
        item = getattr(objectives, objective, None) if objectives is not None else None
        if item is None:
            continue
        if item.compliance is not None:
            values[COMPLIANCE][(namespace, name, objective)] = item.compliance
        if item.error_budget_remaining is not None:
            values[OBJECTIVE_BUDGET][(namespace, name, objective)] = item.error_budget_remaining
        for window, rate in item.burn_rates.items():
            values[BURN_RATE][(namespace, name, objective, window)] = rate
    for gauge, wanted in values.items():
        for labels in _series(gauge, namespace, name) - wanted.keys():
            gauge.remove(*labels)
        for labels, value in wanted.items():
            gauge.labels(*labels).set(float(value))


def _series(gauge: prometheus_client.Gauge, namespace: str, name: str) -> set[tuple[str, ...]]:
    """The label values of the gauge's series of one ClinicalSLO, as collected."""
    names = ("namespace", "clinicalslo", "objective", "window")
    found = set()
    for family in gauge.collect():
        for sample in family.samples:
            if sample.labels.get("namespace") == namespace and sample.labels.get("clinicalslo") == name:
                found.add(tuple(sample.labels[key] for key in names if key in sample.labels))
    return found


def _defined() -> list[prometheus_client.metrics.MetricWrapperBase]:
    """Every metric this module defines: found, not listed, so that a metric added later is
    forgotten with the others without anyone remembering to add it here."""
    return [value for value in globals().values() if isinstance(value, prometheus_client.metrics.MetricWrapperBase)]


def forget(namespace: str, name: str) -> None:
    """Drop every series of a ClinicalSLO that is gone (deleted, or released by the sweeper), from
    every metric labelled with namespace and clinicalslo whatever its other labels (cause, reason,
    region, objective...), so that dashboards show no stale values and the operator keeps nothing
    per deleted object."""
    wanted = {"namespace": namespace, "clinicalslo": name}
    for metric in _defined():
        # Only metrics with a series of this object are touched: remove_by_labels refuses a metric
        # without both labels, and collected samples tell, through public API, which ones have them.
        if any(all(sample.labels.get(key) == value for key, value in wanted.items())
               for family in metric.collect() for sample in family.samples):
            metric.remove_by_labels(wanted)
    _SHORTFALL_REGIONS.pop((namespace, name), None)


# Data residency. Region labels are the policy's own values (configuration), never workload data.
TARGET_VIOLATIONS = prometheus_client.Gauge(
    "healthscale_residency_target_violations",
    "A ClinicalSLO target's pods running on nodes outside its allowed regions (or unlabelled)", _LABELS)
NAMESPACE_VIOLATIONS = prometheus_client.Gauge(
    "healthscale_residency_violations",
    "Patient-data pods of a namespace enforcing residency that run outside its allowed regions (or on "
    "unlabelled nodes), by data class; every pod counts, ClinicalSLO target or not (the namespace audit)",
    ("namespace", "data_class"))
AUDIT_RUNS = prometheus_client.Counter(
    "healthscale_residency_audits", "Passes of the namespace residency audit (on the active replica)")
RESIDENCY_COMPLIANT = prometheus_client.Gauge(
    "healthscale_residency_compliant", "1 when the template requires the allowed regions and every pod runs there",
    _LABELS)
SHORTFALL_REPLICAS = prometheus_client.Gauge(
    "healthscale_residency_shortfall_replicas",
    "Replicas pending for lack of room in the allowed regions, by allowed region waited for", (*_LABELS, "region"))
EVICTIONS = prometheus_client.Counter(
    "healthscale_residency_evictions", "Pods evicted for running outside the allowed regions", _LABELS)
ADMISSIONS = prometheus_client.Counter(
    "healthscale_residency_admissions", "Admission decisions on pods in enforced namespaces (allowed, denied, error)",
    ("namespace", "result"))
ADMISSION_SECONDS = prometheus_client.Histogram(
    "healthscale_admission_duration_seconds",
    "Time the webhook took to answer one AdmissionReview, from its request read to its answer written",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
WEBHOOK_CERTIFICATE_EXPIRY = prometheus_client.Gauge(
    "healthscale_webhook_certificate_expiry_timestamp_seconds",
    "When the certificate this replica's webhook serves expires (Unix time); renewed at two thirds of its life")
_SHORTFALL_REGIONS: dict[tuple[str, str], set[str]] = {}


def record_residency(namespace: str, name: str, outcome: residency.Outcome) -> None:
    if outcome.status is None:
        forget_residency(namespace, name)
        return
    TARGET_VIOLATIONS.labels(namespace, name).set(len(outcome.violations))
    RESIDENCY_COMPLIANT.labels(namespace, name).set(1.0 if outcome.status.compliant else 0.0)
    regions = set(outcome.status.regions)
    short = outcome.shortfall
    for region in regions | _SHORTFALL_REGIONS.get((namespace, name), set()):
        if region in regions:
            SHORTFALL_REPLICAS.labels(namespace, name, region).set(
                short.replicas if short is not None and region in short.regions else 0)
        else:
            SHORTFALL_REPLICAS.remove(namespace, name, region)
    _SHORTFALL_REGIONS[(namespace, name)] = regions
    if outcome.evicted:
        EVICTIONS.labels(namespace, name).inc(len(outcome.evicted))


def forget_residency(namespace: str, name: str) -> None:
    for metric in (TARGET_VIOLATIONS, RESIDENCY_COMPLIANT, EVICTIONS):
        try:
            metric.remove(namespace, name)
        except KeyError:
            pass
    for region in _SHORTFALL_REGIONS.pop((namespace, name), set()):
        try:
            SHORTFALL_REPLICAS.remove(namespace, name, region)
        except KeyError:
            pass


_AUDITED: set[tuple[str, str]] = set()


def record_audit(report: audit.Report | None) -> None:
    """The namespace audit's counts; None (this replica is not the active one) clears them, so that
    only the replica that audits exports them."""
    current: set[tuple[str, str]] = set()
    if report is not None:
        AUDIT_RUNS.inc()
        for item in report.namespaces:
            for data_class, count in item.counts().items():
                NAMESPACE_VIOLATIONS.labels(item.namespace, data_class).set(count)
                current.add((item.namespace, data_class))
    for gone in _AUDITED - current:
        try:
            NAMESPACE_VIOLATIONS.remove(*gone)
        except KeyError:
            pass
    _AUDITED.clear()
    _AUDITED.update(current)


DEFERRED = prometheus_client.Gauge(
    "healthscale_deferred_workloads",
    "Objects a SurgeSchedule's spec.defer holds deferred now (shrunk, suspended or paused)", ("namespace", "schedule"))


def record_deferrals(counts: dict[tuple[str, str], int]) -> None:
    """Set each schedule's count and drop the series of schedules that defer nothing any more."""
    for labels in {tuple(sample.labels.values()) for metric in DEFERRED.collect() for sample in metric.samples} \
            - set(counts):
        DEFERRED.remove(*labels)
    for (namespace, schedule), count in counts.items():
        DEFERRED.labels(namespace, schedule).set(count)
