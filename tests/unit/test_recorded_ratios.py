"""Burn rates read from the recording rules (``healthscale rules``, or the operator's PrometheusRule)
instead of the operator's own subqueries, with a fake Prometheus.

The fake answers the one records selector with recorded error ratios, and every subquery with the
same ratios as rates (``test_cycle_objectives.SliMetrics``), so both paths must give one report.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from healthscale import ports
from healthscale.domain import slo
from healthscale.service import cycle
from reconcile_fakes import ERRORS, NAMESPACE, NOW, SLO_NAME, Harness, slo as slo_resource
from test_cycle_objectives import ALL, GOOD, HEALTHY, STEP, SliMetrics, spec

WINDOWS = (*slo.WINDOW_SECONDS, 28 * 86400)
AVAILABILITY_RATIO = HEALTHY[ERRORS] / 10.0
LATENCY_RATIO = 1 - HEALTHY[GOOD] / HEALTHY[ALL]
RECORDS_OF = (NAMESPACE, SLO_NAME)


def recorded(objective: str, ratio: float, windows: tuple[int, ...] = WINDOWS) -> list[tuple[dict[str, str], float]]:
    return [({"__name__": slo.record_name(seconds), "namespace": NAMESPACE, "clinicalslo": SLO_NAME,
              "objective": objective}, ratio) for seconds in windows]


@dataclasses.dataclass
class RecordingRulesMetrics(SliMetrics):
    """SliMetrics that also holds recorded series for the records selector."""

    records: list[tuple[dict[str, str], float]] = dataclasses.field(default_factory=list)
    records_fault: ports.MetricsError | None = None

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        if query == cycle.records_query(*RECORDS_OF):
            self.queries.append(query)
            if self.records_fault is not None:
                raise self.records_fault
            return list(self.records)
        return super().instant(query)

    def subqueries(self) -> list[str]:
        return [query for query in self.queries if query.startswith("avg_over_time(")]


BOTH = [*recorded(slo.AVAILABILITY, AVAILABILITY_RATIO), *recorded(slo.LATENCY, LATENCY_RATIO)]


def test_recorded_ratios_give_the_report_subqueries_give_with_one_query() -> None:
    metrics = RecordingRulesMetrics(HEALTHY, records=BOTH)
    from_records = cycle.measure(metrics, spec(), cycle.Memory(), NOW, STEP, RECORDS_OF)
    assert metrics.subqueries() == [], "no subquery when every objective is recorded"
    assert metrics.queries == [cycle.records_query(*RECORDS_OF)]
    from_subqueries = cycle.measure(SliMetrics(HEALTHY), spec(), cycle.Memory(), NOW, STEP)
    for objective in (slo.AVAILABILITY, slo.LATENCY):
        ours, theirs = from_records[objective], from_subqueries[objective]
        assert ours.source == cycle.RECORDING_RULES and theirs.source == cycle.SUBQUERIES
        assert ours.report is not None and theirs.report is not None
        assert ours.report.compliance == pytest.approx(theirs.report.compliance)
        assert ours.report.budget_remaining == pytest.approx(theirs.report.budget_remaining)
        assert ours.report.rates == pytest.approx(theirs.report.rates)
        assert ours.bucket == theirs.bucket


def test_the_selector_quotes_the_name_and_namespace_as_promql_strings() -> None:
    assert cycle.records_query('we"ird', "a\\b") == (
        '{__name__=~"healthscale:sli_error:ratio_rate.+", namespace="we\\"ird", clinicalslo="a\\\\b"}')


@pytest.mark.parametrize(
    ("records", "recorded_objectives"),
    [
        pytest.param(recorded(slo.AVAILABILITY, AVAILABILITY_RATIO), {slo.AVAILABILITY},
                     id="an objective without recorded series is read with subqueries"),
        pytest.param([], set(), id="no recorded series at all reads both with subqueries"),
        pytest.param([({**labels, "objective": "throughput"}, value) for labels, value in BOTH], set(),
                     id="series of an objective healthscale does not measure are ignored"),
    ],
)
def test_objectives_fall_back_to_subqueries_one_by_one(records: list[tuple[dict[str, str], float]],
                                                       recorded_objectives: set[str]) -> None:
    metrics = RecordingRulesMetrics(HEALTHY, records=records)
    measured = cycle.measure(metrics, spec(), cycle.Memory(), NOW, STEP, RECORDS_OF)
    assert {name for name, item in measured.items() if item.source == cycle.RECORDING_RULES} == recorded_objectives
    assert all(item.report is not None for item in measured.values())
    read = {objective for objective, indicator in ((slo.AVAILABILITY, ERRORS), (slo.LATENCY, GOOD))
            if any(indicator in query for query in metrics.subqueries())}
    assert read == {slo.AVAILABILITY, slo.LATENCY} - recorded_objectives


def test_no_records_are_looked_for_again_only_after_the_retry_interval() -> None:
    metrics, memory = RecordingRulesMetrics(HEALTHY), cycle.Memory()
    for offset in (0, STEP, cycle.RECORDS_RETRY_SECONDS - 1):
        cycle.measure(metrics, spec(), memory, NOW + offset, STEP, RECORDS_OF)
    assert metrics.queries.count(cycle.records_query(*RECORDS_OF)) == 1
    metrics.records = BOTH
    measured = cycle.measure(metrics, spec(), memory, NOW + cycle.RECORDS_RETRY_SECONDS, STEP, RECORDS_OF)
    assert metrics.queries.count(cycle.records_query(*RECORDS_OF)) == 2
    assert {item.source for item in measured.values()} == {cycle.RECORDING_RULES}


def test_records_that_disappear_send_the_next_cycle_back_to_subqueries() -> None:
    metrics, memory = RecordingRulesMetrics(HEALTHY, records=BOTH), cycle.Memory()
    cycle.measure(metrics, spec(), memory, NOW, STEP, RECORDS_OF)
    metrics.records = []  # the PrometheusRule was deleted: the series went stale
    measured = cycle.measure(metrics, spec(), memory, NOW + STEP, STEP, RECORDS_OF)
    assert {item.source for item in measured.values()} == {cycle.SUBQUERIES}
    assert all(item.report is not None for item in measured.values())


def test_a_failed_records_read_falls_back_to_subqueries() -> None:
    metrics = RecordingRulesMetrics(HEALTHY, records=BOTH,
                                    records_fault=ports.MetricsError("PrometheusUnavailable", "canned"))
    measured = cycle.measure(metrics, spec(), cycle.Memory(), NOW, STEP, RECORDS_OF)
    assert {item.source for item in measured.values()} == {cycle.SUBQUERIES}
    assert all(item.report is not None for item in measured.values())


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        pytest.param(math.nan, False, id="a NaN ratio is no ratio"),
        pytest.param(1.5, False, id="a ratio above one is not a ratio"),
        pytest.param(-0.1, False, id="a negative ratio is not a ratio"),
        pytest.param(0.0, True, id="a ratio of zero is a perfect window"),
    ],
)
def test_only_ratios_between_zero_and_one_are_read(value: float, kept: bool) -> None:
    records = [*recorded(slo.LATENCY, LATENCY_RATIO, (300,)), *recorded(slo.LATENCY, value, (3600,))]
    metrics = RecordingRulesMetrics(HEALTHY, records=records)
    report = cycle.measure(metrics, spec(errors=False), cycle.Memory(), NOW, STEP, RECORDS_OF)[slo.LATENCY].report
    assert report is not None
    assert ("1h" in report.rates and report.rates["1h"] is not None) == kept


def test_a_window_without_a_recorded_ratio_has_no_burn_rate_and_no_alert() -> None:
    # The rules record no ratio for a window without events (total > 0 filters it out).
    short_only = recorded(slo.LATENCY, 0.9, (300,))
    report = cycle.measure(RecordingRulesMetrics(HEALTHY, records=short_only), spec(errors=False), cycle.Memory(),
                           NOW, STEP, RECORDS_OF)[slo.LATENCY].report
    assert report is not None
    assert report.rates == {"5m": pytest.approx(18.0)}
    assert not report.fast_burn, "the 1h window of the page pair has no evidence"
    assert report.compliance is None


def test_the_status_and_condition_say_the_ratios_came_from_the_rules() -> None:
    harness = Harness(resource=slo_resource().model_copy(update={"spec": spec()}), schedules=())
    harness.workloads.deployment("ehr-api", 3)
    harness.metrics = RecordingRulesMetrics(HEALTHY, records=BOTH)  # type: ignore[assignment]
    status = harness.cycle_at(0).status
    assert status.objectives is not None and status.objectives.latency is not None
    assert status.objectives.latency.source == cycle.RECORDING_RULES
    assert status.objectives.latency.burn_rates["1h"] == pytest.approx(0.4)
    latency = next(item for item in status.conditions if item.type == "LatencyObjectiveMet")
    assert (latency.message or "").endswith("(from the recording rules)")
