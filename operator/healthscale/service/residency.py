"""Data residency for one ClinicalSLO, and the admission decision for one patient-data Pod.

The service owns the order and the safety rules:

- enforce *before* the cycle scales, so that new replicas are created from a template that
  already requires the allowed regions (Preview and dry runs compute, never write);
- audit *after* it: where every pod of the target actually runs (labels can change after
  scheduling and node affinity is IgnoredDuringExecution), with the ResidencyCompliant condition,
  a Warning Event and a report of pod, node and region;
- report a ResidencyCapacityShortfall when replicas stay Pending inside the allowed regions; the
  requirement is never relaxed to make room;
- in the opt-in evict mode, evict violating pods through the Eviction API (so PodDisruptionBudgets
  hold), and only once the template guarantees that their replacements land inside the regions.

It returns what the Kopf runtime writes: status fields and conditions, Events, the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from healthscale import ports
from healthscale.api import clinicalslo, common, surgeschedule
from healthscale.domain import residency
from healthscale.service import cycle

DATA_CLASS_LABEL = "healthscale.io/data-class"
"""On a Pod: the kind of data it holds (phi, pii or none). The webhook checks labelled pods only."""
OPT_IN_LABEL = "healthscale.io/residency"
OPT_IN_VALUE = "enforced"
"""A namespace labelled ``healthscale.io/residency=enforced`` has its patient-data pods checked."""
ALLOWED_REGIONS_ANNOTATION = "healthscale.io/allowed-regions"
"""On a namespace: ``"eu-west-1,eu-central-1"``; else the operator's --default-allowed-regions."""
WEBHOOK_NAME = "residency.healthscale.io"
COMPLIANT, SHORTFALL = "ResidencyCompliant", "ResidencyCapacityShortfall"
REPORTED_VIOLATIONS = 20
"""A condition message lists at most this many violations; the status lists all of them."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The operator-wide residency settings."""

    region_label: str = residency.DEFAULT_REGION_LABEL
    """The node label read as the region; prefer an admin-only node-restriction.kubernetes.io/ label."""
    default_regions: tuple[str, ...] = ()
    """Allowed regions for opted-in namespaces that do not annotate their own."""
    evict: bool = False
    """Evict pods found outside the allowed regions (respecting PodDisruptionBudgets)."""


Client = ports.Placement
"""What residency needs from the cluster (``adapters.placement.Placement``)."""


@dataclasses.dataclass(frozen=True)
class Enforcement:
    """What ``enforce`` found and did to the target's pod template."""

    policy: residency.Policy | None
    template: ports.Template
    guarantee: residency.Verdict | None
    """Whether the template (as written, or as found when not written) keeps pods in the regions."""
    written: bool
    pending_write: bool
    """The template lacks the requirement and this cycle did not write it (Preview or dry run)."""
    events: tuple[cycle.Event, ...] = ()


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One cycle's residency result for a ClinicalSLO."""

    status: clinicalslo.ResidencyStatus | None
    """``status.residency``; None when the ClinicalSLO names no regions."""
    conditions: tuple[common.Condition, ...]
    events: tuple[cycle.Event, ...]
    violations: tuple[residency.Violation, ...] = ()
    shortfall: residency.Shortfall | None = None
    evicted: tuple[str, ...] = ()

    def report(self) -> list[dict[str, str]]:
        """Pod, node and region of every pod running outside the allowed regions."""
        return [violation.wire() for violation in self.violations]


def _writes(resource: clinicalslo.ClinicalSLO, dry_run: bool) -> bool:
    return resource.spec.mode == clinicalslo.Mode.ACTIVE and not dry_run


def enforce(resource: clinicalslo.ClinicalSLO, client: Client, settings: Settings, write: bool) -> Enforcement:
    """Make the target's pod template require the allowed regions (merged, never overwritten)."""
    spec = resource.spec
    namespace = resource.metadata.namespace or "default"
    policy = residency.Policy.of(spec, settings.region_label)
    for attempt in range(2):
        template = client.read_template(namespace, spec.target_ref.kind, spec.target_ref.name)
        before = template.pod_spec.get("affinity")
        merged = residency.merge(before, policy, template.owned)
        required = residency.required_node_affinity(merged)
        needed = required != residency.required_node_affinity(before) or template.owned != policy
        if not needed or not write:
            guarantee = residency.check(template.pod_spec, policy) if policy else None
            return Enforcement(policy, template, guarantee, written=False, pending_write=needed)
        try:
            client.write_required_affinity(namespace, template, required, policy)
        except ports.ApiError as error:
            if error.retryable and attempt == 0:
                continue  # most likely a concurrent edit (409): merge again on what is there now
            raise
        after = {**template.pod_spec, "affinity": merged}
        terms = len((required or {}).get("nodeSelectorTerms") or [])
        if policy is None:
            event = cycle.Event("Normal", "ResidencyRequirementRemoved",
                                f"{template.kind} {template.name}: removed the region requirement healthscale had "
                                f"added ({template.owned.describe() if template.owned else 'none'}); other terms kept")
        else:
            event = cycle.Event("Normal", "ResidencyEnforced",
                                f"{template.kind} {template.name}: pod template now requires {policy.describe()} "
                                f"in each of its {terms} required node affinity term(s)")
        guarantee = residency.check(after, policy) if policy else None
        return Enforcement(policy, template, guarantee, written=True, pending_write=False, events=(event,))
    raise AssertionError("unreachable: the second attempt returns or raises")


def _violations_message(violations: Sequence[residency.Violation], policy: residency.Policy) -> str:
    listed = ", ".join(f"{item.pod} on {item.node} ({item.region})" for item in violations[:REPORTED_VIOLATIONS])
    more = f" and {len(violations) - REPORTED_VIOLATIONS} more" if len(violations) > REPORTED_VIOLATIONS else ""
    return (f"{len(violations)} pod(s) run outside {', '.join(policy.regions)} "
            f"(label {policy.label}): {listed}{more}")


def observe(resource: clinicalslo.ClinicalSLO, enforcement: Enforcement, client: Client, settings: Settings,
            previous_conditions: Sequence[common.Condition], now: int, write: bool) -> Outcome:
    """Audit where the target's pods run, report any shortfall, and evict in evict mode."""
    policy = enforcement.policy
    events = list(enforcement.events)
    if policy is None:
        return Outcome(None, (), tuple(events))
    namespace = resource.metadata.namespace or "default"
    generation = resource.metadata.generation
    pods = client.pods(namespace, enforcement.template.selector)
    nodes = client.nodes()
    violations = residency.audit(pods, nodes, policy)
    guaranteed = enforcement.guarantee is not None and enforcement.guarantee.allowed

    evicted: list[str] = []
    if violations and settings.evict and write:
        terminating = {pod.name for pod in pods if pod.terminating}
        if not guaranteed:
            events.append(cycle.Event("Warning", "ResidencyEvictionHeld",
                                      "not evicting: the pod template does not yet keep replacements inside "
                                      f"{', '.join(policy.regions)}"))
        else:
            for violation in violations:
                if violation.pod in terminating:
                    continue
                done = client.evict(namespace, violation.pod)
                if done == "evicted":
                    evicted.append(violation.pod)
                    events.append(cycle.Event("Normal", "ResidencyEvicted",
                                              f"evicted {violation.pod} from {violation.node} ({violation.region}); "
                                              f"its replacement must run in {', '.join(policy.regions)}"))
                elif done == "blocked":
                    events.append(cycle.Event("Warning", "ResidencyEvictionBlocked",
                                              f"{violation.pod} on {violation.node} ({violation.region}) was not "
                                              "evicted: its PodDisruptionBudget allows no disruption now; "
                                              "retrying next cycle"))

    short = residency.shortfall(pods, nodes, policy)
    conditions = []
    if violations:
        message = _violations_message(violations, policy)
        conditions.append(cycle.condition(previous_conditions, COMPLIANT, False, "PodsOutsideRegions", message,
                                          generation, now))
        events.append(cycle.Event("Warning", "ResidencyViolation", message))
    elif not guaranteed:
        why = enforcement.guarantee.message if enforcement.guarantee else "no residency policy"
        note = " (Preview or dry run: the requirement is not written)" if enforcement.pending_write else ""
        conditions.append(cycle.condition(previous_conditions, COMPLIANT, False, "TemplateNotRestricted",
                                          f"the pod template does not keep pods in the allowed regions{note}: {why}",
                                          generation, now))
    else:
        running = sum(1 for pod in pods if pod.node)
        conditions.append(cycle.condition(previous_conditions, COMPLIANT, True, "PodsInAllowedRegions",
                                          f"{running} scheduled pod(s), all in {', '.join(policy.regions)}; the pod "
                                          f"template requires {policy.describe()}", generation, now))
    if short is not None:
        conditions.append(cycle.condition(previous_conditions, SHORTFALL, True, "AllowedRegionsFull", short.explain(),
                                          generation, now))
        events.append(cycle.Event("Warning", SHORTFALL, short.explain()))
    else:
        conditions.append(cycle.condition(previous_conditions, SHORTFALL, False, "NoPendingReplicas",
                                          "no replica is pending for lack of room in the allowed regions",
                                          generation, now))
    status = clinicalslo.ResidencyStatus(
        compliant=not violations and guaranteed,
        label=policy.label,
        regions=policy.regions,
        enforced=guaranteed,
        violations=tuple(clinicalslo.ResidencyViolation(pod=item.pod, node=item.node, region=item.region)
                         for item in violations),
        shortfall=clinicalslo.ResidencyShortfall(replicas=short.replicas, regions=short.regions,
                                                regions_without_nodes=short.regions_without_nodes) if short else None,
        evicted=tuple(evicted),
    )
    return Outcome(status, tuple(conditions), tuple(events), violations, short, tuple(evicted))


def run(resource: clinicalslo.ClinicalSLO, now: int, client: Client, settings: Settings,
        previous_status: clinicalslo.ClinicalSLOStatus, dry_run: bool = False) -> Outcome:
    """Enforce, audit and report for one ClinicalSLO, without a scaling cycle."""
    write = _writes(resource, dry_run)
    enforcement = enforce(resource, client, settings, write)
    return observe(resource, enforcement, client, settings, previous_status.conditions, now, write)


def run_cycle(resource: clinicalslo.ClinicalSLO, schedules: Sequence[surgeschedule.SurgeSchedule], now: int,
              ports_: cycle.Ports, client: Client, settings: Settings, memory: cycle.Memory,
              previous_status: clinicalslo.ClinicalSLOStatus, dry_run: bool = False) -> tuple[cycle.Result, Outcome]:
    """A whole cycle with residency: enforce, then plan and scale (``cycle.run``), then audit.

    The residency conditions, Events and ``status.residency`` are added to the cycle's result, so
    the runtime writes the status once.
    """
    write = _writes(resource, dry_run)
    enforcement = enforce(resource, client, settings, write)
    result = cycle.run(resource, schedules, now, ports_, memory, previous_status, dry_run)
    outcome = observe(resource, enforcement, client, settings, previous_status.conditions, now, write)
    status = result.status.model_copy(update={"conditions": (*result.status.conditions, *outcome.conditions),
                                              "residency": outcome.status})
    return dataclasses.replace(result, status=status, events=(*result.events, *outcome.events)), outcome


# ------------------------------------------------------------------------------------ admission


def admit(pod: Mapping[str, Any], old_pod: Mapping[str, Any] | None, namespace: str,
          namespace_labels: Mapping[str, str], namespace_annotations: Mapping[str, str], settings: Settings,
          node_labels: Mapping[str, str] | None = None) -> residency.Verdict:
    """May this Pod be created (or updated) in an opted-in namespace?

    Pods without the data-class label, or labelled ``none``, are not patient data. An update that
    leaves the scheduling constraints as they were is allowed (a running pod is the audit's job).
    A namespace that opts in without naming regions, with no default either, admits no patient data.
    """
    metadata = pod.get("metadata") or {}
    data_class = (metadata.get("labels") or {}).get(DATA_CLASS_LABEL)
    if data_class is None or data_class == clinicalslo.DataClass.NONE:
        return residency.Verdict(True, "not labelled as patient data")
    if namespace_labels.get(OPT_IN_LABEL) != OPT_IN_VALUE:
        return residency.Verdict(True, f"namespace {namespace} does not enforce residency")
    spec = pod.get("spec") or {}
    if old_pod is not None and residency.scheduling_constraints(old_pod.get("spec") or {}) == \
            residency.scheduling_constraints(spec):
        return residency.Verdict(True, "scheduling constraints unchanged")
    name = metadata.get("name") or f"{metadata.get('generateName', '')}<generated>"
    regions = residency.parse_regions(namespace_annotations.get(ALLOWED_REGIONS_ANNOTATION)) or settings.default_regions
    if not regions:
        return residency.Verdict(False, f"pod {name} holds {data_class} data and namespace {namespace} enforces "
                                        f"residency, but no allowed regions are set: annotate the namespace with "
                                        f'{ALLOWED_REGIONS_ANNOTATION}: "region-a,region-b" or start the operator with '
                                        "--default-allowed-regions")
    verdict = residency.check(spec, residency.Policy(settings.region_label, regions), node_labels)
    if verdict.allowed:
        return verdict
    return residency.Verdict(False, f"pod {name} holds {data_class} data and namespace {namespace} allows only "
                                    f"{', '.join(regions)}: {verdict.message}")


def webhook_configuration(name: str, url: str, ca_bundle: str | None) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration for patient-data Pods in opted-in namespaces.

    ``failurePolicy: Fail``: when the webhook cannot answer, patient-data pods in opted-in
    namespaces are not created unchecked. Nothing else in the cluster depends on it.
    """
    client_config: dict[str, Any] = {"url": url}
    if ca_bundle:
        client_config["caBundle"] = ca_bundle
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "healthscale"}},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": client_config,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": 10,
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": {OPT_IN_LABEL: OPT_IN_VALUE}},
            "objectSelector": {"matchExpressions": [{"key": DATA_CLASS_LABEL, "operator": "Exists"}]},
        }],
    }
