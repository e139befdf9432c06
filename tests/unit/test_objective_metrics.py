"""Each objective's metrics (``runtime.metrics``): compliance, error budget and burn rate per window,
labelled by objective; series of an objective or window no longer measured are removed, and
``forget`` removes them all with the ClinicalSLO. (Forgetting in general: test_operator_metrics.py.)
"""

from __future__ import annotations

import dataclasses

import prometheus_client
import pytest

from healthscale.api import clinicalslo
from healthscale.runtime import metrics
from healthscale.service import cycle
from reconcile_fakes import Harness, slo

NAMESPACE, NAME = "objective-metrics", "chart"
FAMILIES = ("healthscale_objective_compliance", "healthscale_objective_error_budget_remaining",
            "healthscale_objective_burn_rate")


def objective(compliance: float, budget: float, rates: dict[str, float]) -> clinicalslo.ObjectiveStatus:
    return clinicalslo.ObjectiveStatus(target=95, compliance=compliance, error_budget_remaining=budget,
                                       burn_rates=rates)


@pytest.fixture(scope="module")
def result() -> cycle.Result:
    harness = Harness(resource=slo())
    harness.workloads.deployment("ehr-api", 3)
    return harness.cycle_at(0)


def with_objectives(result: cycle.Result, objectives: clinicalslo.ObjectivesStatus | None) -> cycle.Result:
    return dataclasses.replace(result, status=result.status.model_copy(update={"objectives": objectives}))


def series() -> dict[tuple[str, ...], float]:
    """This test's ClinicalSLO's objective series: (family, objective[, window]) -> value."""
    found = {}
    for family in prometheus_client.REGISTRY.collect():
        if family.name not in FAMILIES:
            continue
        for sample in family.samples:
            if sample.labels.get("namespace") == NAMESPACE and sample.labels.get("clinicalslo") == NAME:
                labels = (sample.labels["objective"], *([sample.labels["window"]] if "window" in sample.labels else []))
                found[(family.name, *labels)] = sample.value
    return found


def test_each_objective_is_exported_and_a_window_no_longer_measured_is_removed(result: cycle.Result) -> None:
    both = clinicalslo.ObjectivesStatus(availability=objective(0.999, 0.25, {"1h": 0.75, "5m": 2.0}),
                                        latency=objective(0.9, -1.0, {"1h": 2.0}))
    metrics.record(NAMESPACE, NAME, with_objectives(result, both))
    assert series() == {
        ("healthscale_objective_compliance", "availability"): 0.999,
        ("healthscale_objective_compliance", "latency"): 0.9,
        ("healthscale_objective_error_budget_remaining", "availability"): 0.25,
        ("healthscale_objective_error_budget_remaining", "latency"): -1.0,
        ("healthscale_objective_burn_rate", "availability", "1h"): 0.75,
        ("healthscale_objective_burn_rate", "availability", "5m"): 2.0,
        ("healthscale_objective_burn_rate", "latency", "1h"): 2.0,
    }

    # The latency objective is removed from the spec and the 5m window read nothing this cycle.
    only = clinicalslo.ObjectivesStatus(availability=objective(0.998, 0.5, {"1h": 1.5}))
    metrics.record(NAMESPACE, NAME, with_objectives(result, only))
    assert series() == {
        ("healthscale_objective_compliance", "availability"): 0.998,
        ("healthscale_objective_error_budget_remaining", "availability"): 0.5,
        ("healthscale_objective_burn_rate", "availability", "1h"): 1.5,
    }

    metrics.record(NAMESPACE, NAME, with_objectives(result, None))
    assert series() == {}


def test_forget_removes_every_objective_series(result: cycle.Result) -> None:
    both = clinicalslo.ObjectivesStatus(availability=objective(0.999, 0.25, {"1h": 0.75}),
                                        latency=objective(0.9, -1.0, {"1h": 2.0}))
    metrics.record(NAMESPACE, NAME, with_objectives(result, both))
    assert len(series()) == 6
    metrics.forget(NAMESPACE, NAME)
    assert series() == {}
