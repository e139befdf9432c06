"""Data residency for one ClinicalSLO (the admission decision for one Pod is ``service.admission``).

The service owns the order and the safety rules:

- bound first: in a namespace that enforces residency, a ClinicalSLO may only ask for regions the
  namespace allows (its annotation, else the operator's default, both clipped to the cluster-wide
  allow-list); otherwise it is Ready=False, reason RegionsNotAllowed, and neither its template nor
  its replicas are touched (a previous, narrower requirement stays; it is never widened);
- say whether the region label can be trusted (RegionLabelTrusted): a label kubelets may set on
  their own Node proves nothing about where the node is;
- enforce *before* the cycle scales, so that new replicas are created from a template that
  already requires the allowed regions (Preview and dry runs compute, never write);
- audit *after* it: where every pod of the target actually runs (labels can change after
  scheduling and node affinity is IgnoredDuringExecution), with the ResidencyCompliant condition,
  a Warning Event counting the pods per node and region (never naming a pod: pod names can carry
  patient identifiers) and ``status.residency.violations`` with pod, node and region;
- report a ResidencyCapacityShortfall when replicas stay Pending inside the allowed regions; the
  requirement is never relaxed to make room;
- in the opt-in evict mode, evict violating pods through the Eviction API (so PodDisruptionBudgets
  hold), and only once the template guarantees that their replacements land inside the regions.

It returns what the Kopf runtime writes: status fields and conditions, Events, the report.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence

from healthscale import ports
from healthscale.api import clinicalslo, common, surgeschedule
from healthscale.domain import residency
from healthscale.service import cycle, events

DATA_CLASS_LABEL = "healthscale.io/data-class"
"""On a Pod: the kind of data it holds (phi, pii or none). In an enforced namespace only ``none`` exempts a pod."""
OPT_IN_LABEL = "healthscale.io/residency"
OPT_IN_VALUE = "enforced"
"""A namespace labelled ``healthscale.io/residency=enforced`` has its patient-data pods checked."""
ALLOWED_REGIONS_ANNOTATION = "healthscale.io/allowed-regions"
"""On a namespace: ``"eu-west-1,eu-central-1"``; else the operator's --default-allowed-regions."""
DEFAULT_CLASS_ANNOTATION = "healthscale.io/default-data-class"
"""On a namespace: the data class of pods without the data-class label (default ``phi``)."""
WEBHOOK_NAME = "residency.healthscale.io"
COMPLIANT, SHORTFALL, TRUSTED = "ResidencyCompliant", "ResidencyCapacityShortfall", "RegionLabelTrusted"
NOT_ALLOWED = "RegionsNotAllowed"
REPORTED_VIOLATIONS = 20
"""A condition or Event message counts the violating pods on at most this many nodes; the status
lists every pod."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The operator-wide residency settings."""

    region_label: str = residency.DEFAULT_REGION_LABEL
    """The node label read as the region; prefer an admin-only node-restriction.kubernetes.io/ label."""
    default_regions: tuple[str, ...] = ()
    """Allowed regions for opted-in namespaces that do not annotate their own."""
    evict: bool = False
    """Evict pods found outside the allowed regions (respecting PodDisruptionBudgets)."""
    allowed_regions: tuple[str, ...] = ()
    """The cluster-wide allow-list (--allowed-regions): no namespace allows a region outside it.
    Empty: no cluster-wide bound."""


@dataclasses.dataclass(frozen=True)
class NamespacePolicy:
    """What a namespace says about residency."""

    enforced: bool
    """Labelled ``healthscale.io/residency=enforced``."""
    allowed: residency.Allowed
    default_class: str | None = None
    """Its ``healthscale.io/default-data-class`` annotation, if any."""


def namespace_policy(labels: Mapping[str, str], annotations: Mapping[str, str], settings: Settings) -> NamespacePolicy:
    """The namespace's opt-in, allowed regions (clipped to the cluster-wide list) and default class."""
    allowed = residency.allowed_regions(residency.parse_regions(annotations.get(ALLOWED_REGIONS_ANNOTATION)),
                                        settings.default_regions, settings.allowed_regions)
    return NamespacePolicy(labels.get(OPT_IN_LABEL) == OPT_IN_VALUE, allowed,
                           annotations.get(DEFAULT_CLASS_ANNOTATION))


def describe_allowed(namespace: str, allowed: residency.Allowed) -> str:
    """``eu-west-1, eu-central-1 (annotation healthscale.io/allowed-regions of namespace ehr)``."""
    where = {"namespace": f"annotation {ALLOWED_REGIONS_ANNOTATION} of namespace {namespace}",
             "default": "the operator's --default-allowed-regions",
             "none": f"neither namespace {namespace}'s {ALLOWED_REGIONS_ANNOTATION} annotation nor "
                     "--default-allowed-regions is set"}[allowed.source]
    clipped = (f"; {', '.join(allowed.clipped)} dropped: not in the cluster-wide --allowed-regions"
               if allowed.clipped else "")
    regions = ", ".join(allowed.regions) if allowed.regions else "no region"
    return f"{regions} ({where}{clipped})"


def label_trust(label: str) -> tuple[bool, str]:
    """Whether the region label can be trusted, and what to do when it cannot."""
    if residency.kubelet_settable(label):
        example = f"{residency.NODE_RESTRICTION_DOMAIN}/region"
        return False, (f"kubelets can set {label} on their own Node, so a compromised or misconfigured node can "
                       "label itself into an allowed region and attract patient data. Remedy: have your node "
                       f"provisioning label nodes with an admin-only label under {residency.NODE_RESTRICTION_DOMAIN}/ "
                       f"(e.g. {example}), keep the NodeRestriction admission plugin on, and run the operator with "
                       f"--region-label={example} (chart value residency.regionLabel)")
    return True, (f"{label} is a label kubelets cannot set on their own Node (NodeRestriction admission plugin): "
                  "only whoever provisions nodes sets it")


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


def _where(violations: Sequence[residency.Violation]) -> str:
    """``2 on kwok-us-east-1a (us-east-1), 1 on bare (unlabelled)``: by node, never by pod.

    Pod names can carry identifiers (a per-patient Job's pods): they go to status only, never into
    a message that becomes an Event or a log line.
    """
    counts = collections.Counter((item.node, item.region) for item in violations)
    ordered = sorted(counts.items(), key=lambda entry: (-entry[1], entry[0]))
    listed = ", ".join(f"{count} on {node} ({region})" for (node, region), count in ordered[:REPORTED_VIOLATIONS])
    more = f" and {len(ordered) - REPORTED_VIOLATIONS} more node(s)" if len(ordered) > REPORTED_VIOLATIONS else ""
    return f"{listed}{more}"


def _violations_message(violations: Sequence[residency.Violation], policy: residency.Policy) -> str:
    return (f"{len(violations)} pod(s) run outside {', '.join(policy.regions)} (label {policy.label}): "
            f"{_where(violations)}; status.residency.violations lists them")


def trusted_condition(previous_conditions: Sequence[common.Condition], settings: Settings, generation: int | None,
                      now: int) -> common.Condition:
    trusted, message = label_trust(settings.region_label)
    return cycle.condition(previous_conditions, TRUSTED, trusted, "AdminOnlyLabel" if trusted else "KubeletSettableLabel",
                           message, generation, now)


def observe(resource: clinicalslo.ClinicalSLO, enforcement: Enforcement, client: Client, settings: Settings,
            previous_conditions: Sequence[common.Condition], now: int, write: bool,
            namespace_policy_: NamespacePolicy | None = None) -> Outcome:
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
            blocked: list[residency.Violation] = []
            moved: list[residency.Violation] = []
            for violation in violations:
                if violation.pod in terminating:
                    continue
                done = client.evict(namespace, violation.pod)
                if done == "evicted":
                    evicted.append(violation.pod)
                    moved.append(violation)
                elif done == "blocked":
                    blocked.append(violation)
            if moved:
                events.append(cycle.Event("Normal", "ResidencyEvicted",
                                          f"evicted {len(moved)} pod(s) running outside the allowed regions: "
                                          f"{_where(moved)}; their replacements must run in "
                                          f"{', '.join(policy.regions)} (status.residency.evicted names them)"))
            if blocked:
                events.append(cycle.Event("Warning", "ResidencyEvictionBlocked",
                                          f"{len(blocked)} pod(s) outside the allowed regions were not evicted: "
                                          f"{_where(blocked)}; their PodDisruptionBudget allows no disruption now; "
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
    trusted = trusted_condition(previous_conditions, settings, generation, now)
    conditions.append(trusted)
    enforced_namespace = namespace_policy_ is not None and namespace_policy_.enforced
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
        namespace_regions=namespace_policy_.allowed.regions if namespace_policy_ and enforced_namespace else None,
        clipped_regions=namespace_policy_.allowed.clipped if namespace_policy_ and enforced_namespace else (),
        label_trusted=trusted.status == "True",
    )
    return Outcome(status, tuple(conditions), tuple(events), violations, short, tuple(evicted))


def bound(resource: clinicalslo.ClinicalSLO, client: Client,
          settings: Settings) -> tuple[NamespacePolicy | None, str | None]:
    """The namespace's policy (read only when the ClinicalSLO names regions), and why its regions are
    refused when the namespace enforces residency and does not allow them all (None: not refused)."""
    spec = resource.spec
    if spec.residency is None or not spec.residency.regions:
        return None, None
    namespace = resource.metadata.namespace or "default"
    labels, annotations = client.namespace_metadata(namespace)
    found = namespace_policy(labels, annotations, settings)
    if not found.enforced:
        return found, None
    refused = residency.outside(spec.residency.regions, found.allowed.regions)
    if not refused:
        return found, None
    return found, (f"spec.residency.regions lists {', '.join(refused)}, which namespace {namespace} does not allow; "
                   f"it allows {describe_allowed(namespace, found.allowed)}. The pod template is not changed (a "
                   "requirement written earlier stays as it was) and the workload is not scaled until "
                   "spec.residency.regions names only allowed regions")


def _refused(resource: clinicalslo.ClinicalSLO, settings: Settings, found: NamespacePolicy, message: str,
             previous: clinicalslo.ClinicalSLOStatus, now: int) -> tuple[cycle.Result, Outcome]:
    """A ClinicalSLO asking for regions its namespace does not allow: Ready=False, nothing written.

    The Warning Event is posted once per generation (the condition's message says it every cycle).
    """
    generation = resource.metadata.generation
    ready = cycle.condition(previous.conditions, "Ready", False, NOT_ALLOWED, message, generation, now)
    trusted = trusted_condition(previous.conditions, settings, generation, now)
    kept = tuple(item for item in previous.conditions if item.type not in ("Ready", TRUSTED))
    first = not any(item.type == "Ready" and item.reason == NOT_ALLOWED and item.observed_generation == generation
                    for item in previous.conditions)
    spec_residency = resource.spec.residency
    status = clinicalslo.ResidencyStatus(
        compliant=False, label=settings.region_label, regions=spec_residency.regions if spec_residency else (),
        enforced=None, namespace_regions=found.allowed.regions, clipped_regions=found.allowed.clipped,
        label_trusted=trusted.status == "True")
    updated = previous.model_copy(update={
        "conditions": (ready, *kept, trusted), "observed_generation": generation, "residency": status,
        "last_cycle_time": events.timestamp(now)})
    raised = (cycle.Event("Warning", NOT_ALLOWED, message),) if first else ()
    return cycle.Result(updated, raised, None, False), Outcome(status, (ready, trusted), raised)


def run(resource: clinicalslo.ClinicalSLO, now: int, client: Client, settings: Settings,
        previous_status: clinicalslo.ClinicalSLOStatus, dry_run: bool = False) -> Outcome:
    """Bound, enforce, audit and report for one ClinicalSLO, without a scaling cycle."""
    found, refused = bound(resource, client, settings)
    if refused is not None and found is not None:
        return _refused(resource, settings, found, refused, previous_status, now)[1]
    write = _writes(resource, dry_run)
    enforcement = enforce(resource, client, settings, write)
    return observe(resource, enforcement, client, settings, previous_status.conditions, now, write, found)


def run_cycle(resource: clinicalslo.ClinicalSLO, schedules: Sequence[surgeschedule.SurgeSchedule], now: int,
              ports_: cycle.Ports, client: Client, settings: Settings, memory: cycle.Memory,
              previous_status: clinicalslo.ClinicalSLOStatus, dry_run: bool = False) -> tuple[cycle.Result, Outcome]:
    """A whole cycle with residency: bound, enforce, then plan and scale (``cycle.run``), then audit.

    The residency conditions, Events and ``status.residency`` are added to the cycle's result, so
    the runtime writes the status once. A ClinicalSLO whose regions its namespace does not allow
    gets Ready=False (RegionsNotAllowed) and no cycle at all: nothing is written or scaled.
    """
    found, refused = bound(resource, client, settings)
    if refused is not None and found is not None:
        return _refused(resource, settings, found, refused, previous_status, now)
    write = _writes(resource, dry_run)
    enforcement = enforce(resource, client, settings, write)
    result = cycle.run(resource, schedules, now, ports_, memory, previous_status, dry_run)
    outcome = observe(resource, enforcement, client, settings, previous_status.conditions, now, write, found)
    replaced = {item.type for item in outcome.conditions}
    conditions = (*(item for item in result.status.conditions if item.type not in replaced), *outcome.conditions)
    status = result.status.model_copy(update={"conditions": conditions, "residency": outcome.status})
    return dataclasses.replace(result, status=status, events=(*result.events, *outcome.events)), outcome


def disabled(resource: clinicalslo.ClinicalSLO, previous: clinicalslo.ClinicalSLOStatus,
             now: int) -> cycle.Result:
    """A ClinicalSLO with residency, served by an operator running without residency: Ready=False,
    reason ResidencyDisabled, nothing scaled (new replicas could land anywhere)."""
    generation = resource.metadata.generation
    message = ("spec.residency names regions, but the operator runs with --no-residency (chart value "
               "residency.enabled=false), so it can neither restrict the pod template nor audit where pods run; "
               "the workload is not scaled. Turn residency on, or remove spec.residency")
    ready = cycle.condition(previous.conditions, "Ready", False, "ResidencyDisabled", message, generation, now)
    first = not any(item.type == "Ready" and item.reason == "ResidencyDisabled"
                    and item.observed_generation == generation for item in previous.conditions)
    kept = tuple(item for item in previous.conditions if item.type != "Ready")
    updated = previous.model_copy(update={"conditions": (ready, *kept), "observed_generation": generation,
                                          "last_cycle_time": events.timestamp(now)})
    return cycle.Result(updated, (cycle.Event("Warning", "ResidencyDisabled", message),) if first else (), None, False)
