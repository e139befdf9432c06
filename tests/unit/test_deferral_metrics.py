"""``healthscale_deferred_workloads{namespace,schedule}`` (``runtime.metrics.record_deferrals``): one
series per SurgeSchedule the deferral loop was given, set to its count; a schedule no longer given
(spec.defer removed, the schedule deleted) loses its series, and no other schedule does."""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
import pytest

from healthscale.runtime import metrics

FAMILY = "healthscale_deferred_workloads"


def series() -> dict[tuple[str, str], float]:
    return {(sample.labels["namespace"], sample.labels["schedule"]): sample.value
            for family in prometheus_client.REGISTRY.collect() if family.name == FAMILY
            for sample in family.samples}


@pytest.fixture(autouse=True)
def empty() -> Iterator[None]:
    metrics.record_deferrals({})
    yield
    metrics.record_deferrals({})


CASES = [
    # (the counts of one cycle, then of the next, the series after the next)
    ({("ehr", "flu-clinic"): 3}, {("ehr", "flu-clinic"): 1}, {("ehr", "flu-clinic"): 1.0}),
    ({("ehr", "flu-clinic"): 3, ("ehr", "night-shift"): 2}, {("ehr", "night-shift"): 2},
     {("ehr", "night-shift"): 2.0}),
    ({("ehr", "flu-clinic"): 3, ("radiology", "flu-clinic"): 1}, {("radiology", "flu-clinic"): 0},
     {("radiology", "flu-clinic"): 0.0}),
    ({("ehr", "flu-clinic"): 3}, {}, {}),
    ({}, {("ehr", "flu-clinic"): 0, ("telehealth", "rounds"): 4},
     {("ehr", "flu-clinic"): 0.0, ("telehealth", "rounds"): 4.0}),
]
IDS = [
    "a schedule's count is replaced by the next cycle's",
    "a schedule no longer given loses its series and the other in its namespace keeps its own",
    "a schedule of the same name in another namespace keeps its series at zero",
    "no schedule given removes every series",
    "schedules given for the first time get one series each, zero included",
]


@pytest.mark.parametrize(("first", "second", "expected"), CASES, ids=IDS)
def test_one_series_per_schedule_given_and_none_for_the_others(
        first: dict[tuple[str, str], int], second: dict[tuple[str, str], int],
        expected: dict[tuple[str, str], float]) -> None:
    metrics.record_deferrals(first)
    assert series() == {key: float(value) for key, value in first.items()}
    metrics.record_deferrals(second)
    assert series() == expected
