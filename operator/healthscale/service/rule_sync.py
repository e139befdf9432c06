"""The operator's PrometheusRule per ClinicalSLO: the recording rules and burn-rate alerts that
``healthscale rules`` prints (``service.rules``), kept in the cluster when it serves PrometheusRules
(Prometheus Operator), owned by the ClinicalSLO so that deleting it deletes them (garbage collection).

Applied when what the rules say changes (a digest of the object), and again every
``REAPPLY_SECONDS`` to undo a hand edit or deletion. A latencyHistogram's rules read the bucket the
reconcile found at the threshold (``status.objectives.latency.bucket``), so a boundary Prometheus
prints as "1.5" or "1.50" is matched as it is. Failures are a ``RulesApplied`` condition and an
Event; they never cost the cycle anything (the reconcile reads burn rates with its own subqueries
until the recorded series exist: ``cycle.read_records``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from healthscale import ports
from healthscale.api import clinicalslo, common
from healthscale.service import cycle, events, rules

Port = ports.RuleObjects
CONDITION = "RulesApplied"
REAPPLY_SECONDS = 3600


@dataclasses.dataclass(frozen=True)
class Outcome:
    condition: common.Condition | None
    """None when the cluster serves no PrometheusRules: nothing to say."""
    events: tuple[events.Event, ...] = ()


def desired(resource: clinicalslo.ClinicalSLO, status: clinicalslo.ClinicalSLOStatus) -> dict[str, Any] | None:
    """The PrometheusRule for the ClinicalSLO as measured this cycle; None when it measures nothing."""
    latency = status.objectives.latency if status.objectives is not None else None
    groups = rules.groups(resource, latency.bucket if latency is not None else None)
    if not groups:
        return None
    body = rules.prometheus_rule(resource, groups)
    if resource.metadata.uid:
        body["metadata"]["ownerReferences"] = [{
            "apiVersion": f"{common.GROUP}/{common.VERSION}", "kind": "ClinicalSLO",
            "name": resource.metadata.name, "uid": resource.metadata.uid, "controller": True}]
    return body


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _counts(body: dict[str, Any]) -> tuple[int, int]:
    found = [rule for group in body["spec"]["groups"] for rule in group["rules"]]
    return sum("record" in rule for rule in found), sum("alert" in rule for rule in found)


def sync(port: Port, resource: clinicalslo.ClinicalSLO, status: clinicalslo.ClinicalSLOStatus,
         memory: cycle.Memory, previous: Sequence[common.Condition], now: int) -> Outcome:
    """Apply (or delete) the ClinicalSLO's PrometheusRule when it changed or is due again."""
    namespace, name, generation = resource.metadata.namespace, resource.metadata.name, resource.metadata.generation
    try:
        if not port.available():
            return Outcome(None)
        try:
            body = desired(resource, status)
        except ValueError as error:  # the latency bucket is not the threshold (the models let it through)
            return Outcome(events.condition(previous, CONDITION, False, "InvalidRules", str(error), generation, now))
        if body is None:  # nothing measured: no rules, and no condition about them
            if memory.rules_applied is not None:
                port.delete(namespace, name)
                memory.rules_applied = None
                return Outcome(None, (events.Event(
                    "Normal", "RulesDeleted", f"PrometheusRule {name} deleted: no objective is measured any more"),))
            return Outcome(None)
        digest = _digest(body)
        earlier = memory.rules_applied
        recorded, alerts = _counts(body)
        message = f"PrometheusRule {name}: {recorded} recording rules and {alerts} alerts"
        if earlier is not None and earlier[0] == digest and now - earlier[1] < REAPPLY_SECONDS:
            return Outcome(events.condition(previous, CONDITION, True, "Applied", message, generation, now))
        if not port.apply(namespace, body):
            return Outcome(None)
        memory.rules_applied = (digest, now)
        changed = earlier is None or earlier[0] != digest
        return Outcome(events.condition(previous, CONDITION, True, "Applied", message, generation, now),
                       (events.Event("Normal", "RulesApplied", message),) if changed else ())
    except ports.ApiError as error:
        message = f"PrometheusRule {name} not applied: {error}"
        return Outcome(events.condition(previous, CONDITION, False, "ApiError", message, generation, now),
                       (events.Event("Warning", "RulesNotApplied", message),))
