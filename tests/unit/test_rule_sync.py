"""The operator's PrometheusRule per ClinicalSLO (``service.rule_sync``) with a fake RuleObjects port:
applied once per change, re-applied hourly, deleted when nothing is measured, owned by the
ClinicalSLO, and a refused write is a condition and a Warning, never a failed cycle."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from healthscale import ports
from healthscale.api import clinicalslo, manifests
from healthscale.service import cycle, rule_sync

NOW = 1_780_000_200


@dataclasses.dataclass
class FakeRuleObjects:
    served: bool = True
    fault: ports.ApiError | None = None
    applied: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deleted: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def available(self) -> bool:
        return self.served

    def apply(self, namespace: str, body: dict[str, Any]) -> bool:
        if self.fault is not None:
            raise self.fault
        if not self.served:
            return False
        self.applied.append(body)
        return True

    def delete(self, namespace: str, name: str) -> None:
        if self.fault is not None:
            raise self.fault
        self.deleted.append((namespace, name))


def resource(*, errors: bool = True, latency: bool = True, threshold: float = 1.5) -> clinicalslo.ClinicalSLO:
    indicators: dict[str, Any] = {"demand": "sum(rate(requests_total[5m]))"}
    objectives: dict[str, Any] = {"availability": 99.9}
    if errors:
        indicators |= {"errors": 'sum(rate(requests_total{code=~"5.."}[5m]))', "total": "sum(rate(requests_total[5m]))"}
    if latency:
        indicators["latencyHistogram"] = "request_seconds_bucket"
        objectives["latency"] = {"percentile": 95, "thresholdSeconds": threshold}
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": "triage", "namespace": "ed", "uid": "1234-abcd", "generation": 3},
        "spec": {"journey": "ED triage", "targetRef": {"name": "ehr-api"}, "objectives": objectives,
                 "indicators": indicators, "capacity": {"perReplica": 10, "maxReplicas": 20}},
    })


def status(bucket: str | None = None) -> clinicalslo.ClinicalSLOStatus:
    latency = clinicalslo.ObjectiveStatus(target=95, bucket=bucket) if bucket else None
    return clinicalslo.ClinicalSLOStatus(objectives=clinicalslo.ObjectivesStatus(latency=latency))


def test_the_rule_is_owned_by_the_clinicalslo_and_carries_both_objectives() -> None:
    port = FakeRuleObjects()
    outcome = rule_sync.sync(port, resource(), status(), cycle.Memory(), (), NOW)
    [body] = port.applied
    assert body["kind"] == "PrometheusRule" and body["metadata"]["name"] == "triage"
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
                                                    "name": "triage", "uid": "1234-abcd", "controller": True}]
    assert {group["name"] for group in body["spec"]["groups"]} >= {"healthscale-ed-triage-availability",
                                                                  "healthscale-ed-triage-latency"}
    assert outcome.condition is not None and (outcome.condition.status, outcome.condition.reason) == ("True", "Applied")
    assert outcome.condition.message == "PrometheusRule triage: 16 recording rules and 4 alerts"
    assert [(event.type, event.reason) for event in outcome.events] == [("Normal", "RulesApplied")]


def test_the_latency_rules_read_the_bucket_the_reconcile_found() -> None:
    port = FakeRuleObjects()
    rule_sync.sync(port, resource(), status(bucket="1.50"), cycle.Memory(), (), NOW)
    text = str(port.applied[0])
    assert 'le="1.50"' in text and 'le="1.5"' not in text


@pytest.mark.parametrize(
    ("offset", "edited", "applies"),
    [
        pytest.param(60, False, 1, id="an unchanged rule is not applied again within the hour"),
        pytest.param(rule_sync.REAPPLY_SECONDS, False, 2, id="an unchanged rule is applied again after an hour"),
        pytest.param(60, True, 2, id="an edited objective is applied at once"),
    ],
)
def test_when_the_rule_is_applied_again(offset: int, edited: bool, applies: int) -> None:
    port, memory = FakeRuleObjects(), cycle.Memory()
    first = rule_sync.sync(port, resource(), status(), memory, (), NOW)
    assert first.condition is not None
    again = rule_sync.sync(port, resource(threshold=2.5 if edited else 1.5), status(), memory, (first.condition,),
                           NOW + offset)
    assert len(port.applied) == applies
    assert again.condition is not None and again.condition.status == "True"
    assert again.condition.last_transition_time == first.condition.last_transition_time
    assert [event.reason for event in again.events] == (["RulesApplied"] if edited else [])


def test_a_cluster_without_prometheus_rules_gets_nothing_and_no_condition() -> None:
    port, memory = FakeRuleObjects(served=False), cycle.Memory()
    outcome = rule_sync.sync(port, resource(), status(), memory, (), NOW)
    assert outcome == rule_sync.Outcome(None) and port.applied == [] and memory.rules_applied is None


def test_removing_every_objective_deletes_the_rule_it_applied() -> None:
    port, memory = FakeRuleObjects(), cycle.Memory()
    rule_sync.sync(port, resource(), status(), memory, (), NOW)
    outcome = rule_sync.sync(port, resource(errors=False, latency=False), status(), memory, (), NOW + 60)
    assert port.deleted == [("ed", "triage")] and memory.rules_applied is None
    assert outcome.condition is None, "nothing measured: no condition about rules"
    assert [(event.type, event.reason) for event in outcome.events] == [("Normal", "RulesDeleted")]
    again = rule_sync.sync(port, resource(errors=False, latency=False), status(), memory, (), NOW + 120)
    assert again == rule_sync.Outcome(None)
    assert len(port.deleted) == 1, "nothing applied since: nothing to delete"


def test_a_clinicalslo_measuring_nothing_gets_neither_rules_nor_a_condition() -> None:
    port = FakeRuleObjects()
    outcome = rule_sync.sync(port, resource(errors=False, latency=False), status(), cycle.Memory(), (), NOW)
    assert outcome == rule_sync.Outcome(None) and port.applied == [] and port.deleted == []


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(ports.ApiError("forbidden: prometheusrules", retryable=False, status=403),
                     id="a forbidden write (RBAC without the feature) is reported"),
        pytest.param(ports.ApiError("timed out", retryable=True, status=0), id="a timeout is reported and retried"),
    ],
)
def test_a_refused_write_is_a_condition_and_a_warning_and_is_tried_again(fault: ports.ApiError) -> None:
    port, memory = FakeRuleObjects(fault=fault), cycle.Memory()
    outcome = rule_sync.sync(port, resource(), status(), memory, (), NOW)
    assert outcome.condition is not None
    assert (outcome.condition.status, outcome.condition.reason) == ("False", "ApiError")
    assert str(fault) in (outcome.condition.message or "")
    assert [(event.type, event.reason) for event in outcome.events] == [("Warning", "RulesNotApplied")]
    assert memory.rules_applied is None
    port.fault = None
    rule_sync.sync(port, resource(), status(), memory, (), NOW + 20)
    assert len(port.applied) == 1, "the next cycle applies it"


def test_a_bucket_that_is_not_the_threshold_is_named() -> None:
    outcome = rule_sync.sync(FakeRuleObjects(), resource(), status(bucket="5"), cycle.Memory(), (), NOW)
    assert outcome.condition is not None and outcome.condition.reason == "InvalidRules"
    assert "le='5'" in (outcome.condition.message or "")
