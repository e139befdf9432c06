"""Both objectives measured by the reconcile, with a fake Prometheus: availability from errors/total,
latency from a histogram's bucket at the threshold (or latencyGood/total); their status, conditions and
what a fast latency burn does to the plan.

The fake answers each window average ``avg_over_time((INDICATOR)[Ns:res])`` with a fixed rate per
indicator, so every expected number is a ratio worked out by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from healthscale import ports
from healthscale.api import clinicalslo, manifests
from healthscale.domain import slo
from healthscale.service import cycle
from reconcile_fakes import DEMAND, ERRORS, NOW, Harness, slo as slo_resource

HISTOGRAM = 'http_request_duration_seconds_bucket{service="ehr-api"}'
GOOD = 'sum(rate(http_request_duration_seconds_bucket{service="ehr-api", le="1.5"}[5m]))'
ALL = 'sum(rate(http_request_duration_seconds_bucket{service="ehr-api", le="+Inf"}[5m]))'
FAST = 'sum(rate(http_requests_fast_total{service="ehr-api"}[5m]))'
BOUNDARIES = ["0.1", "0.5", "1.5", "5", "+Inf"]
STEP = 300


@dataclasses.dataclass
class SliMetrics:
    """Window averages of each indicator at a fixed rate; the histogram's ``le`` values; a flat demand.

    ``fault`` is raised by every read whose query contains ``fail_on``."""

    rates: dict[str, float]
    boundaries: list[str] = dataclasses.field(default_factory=lambda: list(BOUNDARIES))
    fault: ports.MetricsError | None = None
    fail_on: str = "\0"
    queries: list[str] = dataclasses.field(default_factory=list)
    label_reads: list[tuple[str, str, int, int]] = dataclasses.field(default_factory=list)
    demand: float = 60.0

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        times = np.arange(start, end + 1, step, dtype=np.float64)
        return [(times, np.full(times.shape[0], self.demand))]

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        self.queries.append(query)
        if self.fault is not None and self.fail_on in query:
            raise self.fault
        indicator = query.removeprefix("avg_over_time((").rsplit(")[", 1)[0]
        return [({}, self.rates[indicator])] if indicator in self.rates else []

    def label_values(self, label: str, selector: str, start: int, end: int) -> list[str]:
        self.label_reads.append((label, selector, start, end))
        if self.fault is not None and self.fail_on in selector:
            raise self.fault
        return list(self.boundaries)


def spec(*, histogram: bool = True, errors: bool = True, threshold: float = 1.5,
         latency: bool = True) -> clinicalslo.ClinicalSLOSpec:
    indicators: dict[str, Any] = {"demand": DEMAND}
    if errors:
        indicators["errors"], indicators["total"] = ERRORS, DEMAND
    if latency:
        indicators["latencyHistogram" if histogram else "latencyGood"] = HISTOGRAM if histogram else FAST
        if not histogram:
            indicators["errors"], indicators["total"] = ERRORS, DEMAND
    objectives: dict[str, Any] = {"availability": 99.9, "window": "28d"}
    if latency:
        objectives["latency"] = {"percentile": 95, "thresholdSeconds": threshold}
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": {"name": "chart"},
        "spec": {"journey": "j", "targetRef": {"name": "ehr-api"}, "objectives": objectives,
                 "indicators": indicators, "capacity": {"perReplica": 40, "maxReplicas": 60}},
    }).spec


# 1% errors against 99.9% burns at 10x; 2% slow requests against 95% burns at 0.4x.
HEALTHY = {ERRORS: 0.1, DEMAND: 10.0, GOOD: 9.8, ALL: 10.0, FAST: 9.8}
# 20% of requests under 1.5 s: 80% slow against the 5% allowed burns at 16x on every window.
SLOW = {**HEALTHY, GOOD: 2.0, FAST: 2.0}


def test_both_objectives_are_measured_through_one_path() -> None:
    measured = cycle.measure(SliMetrics(HEALTHY), spec(), cycle.Memory(), NOW, STEP)
    availability, latency = measured[slo.AVAILABILITY].report, measured[slo.LATENCY].report
    assert availability is not None and latency is not None
    assert availability.compliance == pytest.approx(0.99)
    assert availability.rates["1h"] == pytest.approx(10.0)
    assert latency.compliance == pytest.approx(0.98)
    assert latency.rates["5m"] == pytest.approx(0.4)
    assert latency.budget_remaining == pytest.approx(0.6)
    assert measured[slo.LATENCY].bucket == "1.5"


@pytest.mark.parametrize(
    ("histogram", "good", "total"),
    [
        pytest.param(True, GOOD, ALL, id="a histogram reads its bucket at the threshold against its +Inf bucket"),
        pytest.param(False, FAST, DEMAND, id="latencyGood is read against indicators.total"),
    ],
)
def test_the_latency_sli_reads_good_against_all_events(histogram: bool, good: str, total: str) -> None:
    metrics = SliMetrics(SLOW)
    measured = cycle.measure(metrics, spec(histogram=histogram), cycle.Memory(), NOW, STEP)
    report = measured[slo.LATENCY].report
    assert report is not None and report.fast_burn
    assert report.compliance == pytest.approx(0.2)
    windows = {*slo.WINDOW_SECONDS, 28 * 86400}
    for indicator in (good, total):
        read = {query.rsplit(")[", 1)[1].split("s:")[0] for query in metrics.queries
                if query.startswith(f"avg_over_time(({indicator})[")}
        assert read == {str(seconds) for seconds in windows}


@pytest.mark.parametrize(
    ("threshold", "boundaries", "reason", "fragments"),
    [
        pytest.param(1.0, BOUNDARIES, "LatencyBucketMissing",
                     ("thresholdSeconds 1", "its boundaries are 0.1, 0.5, 1.5, 5, +Inf", "add a bucket at 1"),
                     id="a threshold of 1 s between the 0.5 and 1.5 buckets names the threshold and the boundaries"),
        pytest.param(1.5, [], "EmptyResult", (HISTOGRAM, "matched no series"),
                     id="a selector matching no series says so with the selector"),
    ],
)
def test_a_latency_histogram_without_the_bucket_fails_clearly(
        threshold: float, boundaries: list[str], reason: str, fragments: tuple[str, ...]) -> None:
    metrics = SliMetrics(HEALTHY, boundaries=boundaries)
    measured = cycle.measure(metrics, spec(threshold=threshold), cycle.Memory(), NOW, STEP)
    latency = measured[slo.LATENCY]
    assert latency.report is None and latency.reason == reason
    for fragment in fragments:
        assert fragment in latency.message, (fragment, latency.message)
    assert measured[slo.AVAILABILITY].report is not None, "the other objective is still measured"
    found = cycle.objective_condition((), spec(threshold=threshold), latency, 1, NOW)
    assert (found.type, found.status, found.reason) == ("LatencyObjectiveMet", "Unknown", reason)


def test_bucket_boundaries_are_reused_for_a_while_then_read_again() -> None:
    metrics, memory, chosen = SliMetrics(HEALTHY), cycle.Memory(), spec()
    cycle.measure(metrics, chosen, memory, NOW, STEP)
    cycle.measure(metrics, chosen, memory, NOW + slo.MAX_REUSE_SECONDS - 1, STEP)
    assert [read[:2] for read in metrics.label_reads] == [("le", HISTOGRAM)]
    assert metrics.label_reads[0][2:] == (NOW - cycle.BOUNDARY_LOOKBACK, NOW)
    cycle.measure(metrics, chosen, memory, NOW + slo.MAX_REUSE_SECONDS, STEP)
    assert len(metrics.label_reads) == 2


@pytest.mark.parametrize(
    ("fail_on", "failed", "kept"),
    [
        pytest.param("le=", slo.LATENCY, slo.AVAILABILITY,
                     id="a failing latency read leaves availability measured"),
        pytest.param("code=~", slo.AVAILABILITY, slo.LATENCY,
                     id="a failing errors read leaves latency measured"),
    ],
)
def test_one_objective_failing_never_hides_the_other(fail_on: str, failed: str, kept: str) -> None:
    metrics = SliMetrics(HEALTHY, fault=ports.MetricsError("PrometheusUnavailable", "canned"), fail_on=fail_on)
    measured = cycle.measure(metrics, spec(), cycle.Memory(), NOW, STEP)
    assert measured[failed].report is None and measured[failed].reason == "PrometheusUnavailable"
    assert measured[kept].report is not None


def test_a_failed_read_keeps_the_long_windows_already_read() -> None:
    metrics, memory, chosen = SliMetrics(HEALTHY), cycle.Memory(), spec()
    cycle.measure(metrics, chosen, memory, NOW, STEP)
    metrics.fault, metrics.fail_on = ports.MetricsError("PrometheusUnavailable", "canned"), "le="
    cycle.measure(metrics, chosen, memory, NOW + STEP, STEP)
    kept = [query for query in memory.burn_values if "le=" in query and "[2419200s:" in query]
    assert len(kept) == 2, "the 28d averages of the good and all buckets are kept for reuse"


@pytest.mark.parametrize(
    ("rates", "status", "reason", "fragment"),
    [
        pytest.param(HEALTHY, "True", "WithinBudget", "98.000% of events under 1.5s (bucket le=1.5) over 28d "
                     "(objective 95%), 60.0% of the error budget left", id="2% slow against 95% is met within budget"),
        pytest.param(SLOW, "False", "FastBurn", "burning: 1h/5m at 16.0x/16.0x",
                     id="80% slow is not met and burns fast"),
        pytest.param({**HEALTHY, GOOD: 0.0, ALL: 0.0}, "Unknown", "NoEvents", "no events over the last 28d",
                     id="no requests at all is unknown, not met"),
    ],
)
def test_the_latency_condition(rates: dict[str, float], status: str, reason: str, fragment: str) -> None:
    measured = cycle.measure(SliMetrics(rates), spec(), cycle.Memory(), NOW, STEP)
    found = cycle.objective_condition((), spec(), measured[slo.LATENCY], 1, NOW)
    assert (found.type, found.status, found.reason) == ("LatencyObjectiveMet", status, reason)
    assert fragment in (found.message or ""), found.message


def test_the_status_has_each_objective_and_keeps_the_old_fields_for_availability() -> None:
    harness = Harness(resource=slo_resource().model_copy(update={"spec": spec()}), schedules=())
    harness.workloads.deployment("ehr-api", 3)
    harness.metrics = SliMetrics(HEALTHY)  # type: ignore[assignment]
    status = harness.cycle_at(0).status
    assert status.objectives is not None
    availability, latency = status.objectives.availability, status.objectives.latency
    assert availability is not None and latency is not None
    assert (availability.target, latency.target, latency.bucket) == (99.9, 95, "1.5")
    assert latency.compliance == pytest.approx(0.98) and latency.burn_rates["1h"] == pytest.approx(0.4)
    assert status.error_budget_remaining == availability.error_budget_remaining
    assert status.burn_rates == availability.burn_rates
    types = {item.type: item.status for item in status.conditions}
    assert types["AvailabilityObjectiveMet"] == "False" and types["LatencyObjectiveMet"] == "True"
    wire = status.wire()["objectives"]
    assert set(wire) == {"availability", "latency"} and "errorBudgetRemaining" in wire["latency"]


def test_a_fast_latency_burn_holds_scale_down_and_says_per_replica_looks_too_high() -> None:
    harness = Harness(resource=slo_resource().model_copy(update={"spec": spec(errors=False)}), schedules=())
    harness.workloads.deployment("ehr-api", 10)
    harness.metrics = SliMetrics(SLOW, demand=60.0)  # type: ignore[assignment]
    result = harness.cycle_at(0)
    assert result.decision is not None
    assert result.decision.headroom == pytest.approx(0.35), "the latency burn adds a quarter to the headroom"
    assert result.decision.recommended == 3, "60/s planned at +10% and +25% for the burn is 82.5: 3 at 40/replica"
    assert result.decision.desired_replicas == 10
    explanation = result.status.explanation or ""
    assert "scale-down held: error budget burning fast (latency 1h/5m at 16.0x/16.0x" in explanation
    assert ("perReplica looks too high: the latency objective burns fast at 6 per ready replica "
            "(demand 60 over 10 ready), below perReplica 40") in explanation
    assert result.status.objectives is not None and result.status.objectives.availability is None
    assert result.status.error_budget_remaining is None


def test_without_a_latency_objective_nothing_latency_is_read_or_reported() -> None:
    metrics = SliMetrics(HEALTHY)
    measured = cycle.measure(metrics, spec(latency=False), cycle.Memory(), NOW, STEP)
    assert set(measured) == {slo.AVAILABILITY}
    assert metrics.label_reads == [] and not any("le=" in query for query in metrics.queries)
