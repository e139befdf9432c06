"""The operator's own metrics (``runtime.metrics``): series of a ClinicalSLO that is gone are removed
from every metric that carries its namespace and name, whatever other labels it has, and no other
object's series; ``healthscale_build_info`` says what runs. Also the handler's guard for a cycle
still running when its ClinicalSLO is deleted. (Residency metrics: test_residency.py; the sweeper
forgetting what it releases: test_release.py.)
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import types
from collections.abc import Iterator

import kopf
import prometheus_client
import pytest

from healthscale.api import clinicalslo
from healthscale.domain import residency
from healthscale.runtime import handlers, metrics
from healthscale.service import cycle
from healthscale.service import residency as service
from reconcile_fakes import Harness, slo

OBJECTS = (("ehr", "chart"), ("ehr", "other"), ("radiology", "chart"))
"""The object forgotten, one in the same namespace and one of the same name elsewhere."""
PER_CLINICALSLO = {
    "healthscale_desired_replicas", "healthscale_current_replicas", "healthscale_current_demand",
    "healthscale_forecast_peak_demand", "healthscale_decision_reason", "healthscale_forecast_available",
    "healthscale_error_budget_remaining", "healthscale_forecast_error", "healthscale_cycle_errors",
    "healthscale_scale_actions", "healthscale_residency_target_violations", "healthscale_residency_compliant",
    "healthscale_residency_shortfall_replicas", "healthscale_residency_evictions",
}
"""Every family a cycle, its residency step and a failure set for one ClinicalSLO (at least)."""
RESIDENCY = service.Outcome(
    status=clinicalslo.ResidencyStatus(compliant=False, regions=("eu-west-1", "ap-south-1")),
    conditions=(), events=(),
    violations=(residency.Violation("p1", "kwok-us-east-1a", "us-east-1"),),
    shortfall=residency.Shortfall(2, ("ap-south-1",), ("ap-south-1",)),
    evicted=("p1",))


@pytest.fixture(scope="module")
def result() -> cycle.Result:
    """A real cycle's result, with every field a metric reads set."""
    harness = Harness(resource=slo(burn=True))
    harness.workloads.deployment("ehr-api", 3)
    found = harness.cycle_at(0)
    assert found.decision is not None and found.decision.forecast_peak is not None
    status = found.status.model_copy(update={"current_demand": 60.0, "forecast_error": 0.8,
                                             "error_budget_remaining": 0.5})
    return dataclasses.replace(found, status=status, scaled=True)


def record_everything(namespace: str, name: str, result: cycle.Result) -> None:
    """What the handlers record for one ClinicalSLO: its cycle, residency step and a failed cycle."""
    metrics.record(namespace, name, result)
    metrics.record_residency(namespace, name, RESIDENCY)
    metrics.CYCLE_ERRORS.labels(namespace, name, "PrometheusUnavailable").inc()


def families_with(namespace: str, name: str) -> set[str]:
    """The metric families the operator exports (its /metrics) with a series of this ClinicalSLO."""
    return {family.name for family in prometheus_client.REGISTRY.collect() for sample in family.samples
            if sample.labels.get("namespace") == namespace and sample.labels.get("clinicalslo") == name}


@pytest.fixture
def recorded(result: cycle.Result) -> Iterator[None]:
    for namespace, name in OBJECTS:
        record_everything(namespace, name, result)
    yield
    for namespace, name in OBJECTS:
        metrics.forget(namespace, name)


@pytest.mark.usefixtures("recorded")
def test_forgetting_a_clinicalslo_removes_every_series_it_had_and_no_other_objects() -> None:
    before = {key: families_with(*key) for key in OBJECTS}
    for key in OBJECTS:
        assert PER_CLINICALSLO <= before[key], f"{key}: {PER_CLINICALSLO - before[key]} not recorded"
    metrics.forget("ehr", "chart")
    assert families_with("ehr", "chart") == set()
    assert {key: families_with(*key) for key in OBJECTS[1:]} == {key: before[key] for key in OBJECTS[1:]}


@pytest.mark.usefixtures("recorded")
def test_forgetting_an_object_without_series_changes_nothing() -> None:
    before = {key: families_with(*key) for key in OBJECTS}
    metrics.forget("ehr", "never-recorded")
    metrics.forget("ehr", "never-recorded")
    assert {key: families_with(*key) for key in OBJECTS} == before


def test_a_metric_added_to_the_module_later_is_forgotten_too(monkeypatch: pytest.MonkeyPatch) -> None:
    later = prometheus_client.Gauge("healthscale_test_objective_compliance", "test", ("namespace", "clinicalslo",
                                                                                     "objective"), registry=None)
    per_namespace = prometheus_client.Counter("healthscale_test_admissions", "test", ("namespace", "result"),
                                              registry=None)
    monkeypatch.setattr(metrics, "LATER", later, raising=False)
    monkeypatch.setattr(metrics, "PER_NAMESPACE", per_namespace, raising=False)
    for objective in ("latency", "availability"):
        later.labels("ehr", "chart", objective).set(0.99)
        later.labels("ehr", "other", objective).set(0.98)
    per_namespace.labels("ehr", "allowed").inc()
    metrics.forget("ehr", "chart")
    left = [sample.labels for family in later.collect() for sample in family.samples]
    assert sorted(item["objective"] for item in left) == ["availability", "latency"]
    assert {item["clinicalslo"] for item in left} == {"other"}
    assert [sample.value for family in per_namespace.collect() for sample in family.samples
            if sample.name.endswith("_total")] == [1.0], "a namespace's own series is no ClinicalSLO's"


def test_build_info_says_which_healthscale_python_and_kopf_run() -> None:
    samples = [sample for family in prometheus_client.REGISTRY.collect() for sample in family.samples
               if sample.name == "healthscale_build_info"]
    assert [(sample.labels, sample.value) for sample in samples] == [({
        "version": importlib.metadata.version("healthscale"), "python": platform.python_version(),
        "kopf": importlib.metadata.version("kopf")}, 1.0)]


STOPS = {
    "a cycle that ran while its ClinicalSLO was deleted forgets what it recorded":
        (kopf.DaemonStoppingReason.RESOURCE_DELETED, True),
    "a cycle stopped because the operator pauses (another replica took over) keeps its series":
        (kopf.DaemonStoppingReason.OPERATOR_PAUSING, False),
    "a cycle of a ClinicalSLO that was not stopped keeps its series":
        (None, False),
}


@pytest.mark.parametrize(("reason", "forgotten"), STOPS.values(), ids=STOPS.keys())
@pytest.mark.usefixtures("recorded")
def test_a_cycle_finishing_after_its_clinicalslo_was_deleted_does_not_bring_its_series_back(
        reason: kopf.DaemonStoppingReason | None, forgotten: bool) -> None:
    harness = Harness()
    runtime = handlers.Runtime(harness.ports, kube=None)  # type: ignore[arg-type]  # the guard never uses it
    runtime.memories[("ehr", "chart")] = cycle.Memory()
    handlers._forget_if_deleted(runtime, ("ehr", "chart"), types.SimpleNamespace(reason=reason))
    assert (families_with("ehr", "chart") == set()) is forgotten
    assert (("ehr", "chart") not in runtime.memories) is forgotten
    assert PER_CLINICALSLO <= families_with("ehr", "other")
