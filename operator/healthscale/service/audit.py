"""The residency audit of whole namespaces: every pod, not only the pods of ClinicalSLO targets.

A namespace labelled ``healthscale.io/residency=enforced`` promises that its patient data runs only
in its allowed regions, whoever created the pods (a Deployment no ClinicalSLO manages, a Job, a
bare pod, a pod admitted before the namespace opted in, or one that bypassed the scheduler with
``spec.nodeName``). Admission checks pods as they are created; node labels change afterwards and
node affinity is IgnoredDuringExecution, so this audit looks at where each pod actually runs:

- the namespaces audited are those that enforce residency and that the operator serves;
- each one's allowed regions are ``service.residency.namespace_policy``'s (annotation, else the
  default, clipped to the cluster-wide allow-list); pods without the data-class label count as the
  namespace's default class (``phi`` unless annotated), only ``none`` is left out;
- a violation is counted per namespace and data class (the runtime exports the counts as
  ``healthscale_residency_violations{namespace,data_class}``) and gets one Warning Event on the
  Pod, reason ``ResidencyViolation``, that names the node's region and the allowed regions. The
  message never names the pod (the Event is *on* the pod; a per-patient Job's pod names can carry
  identifiers, and messages end up in logs and event exporters).

One namespace that cannot be read is reported and skipped; it never stops the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from healthscale import ports
from healthscale.domain import residency
from healthscale.service import residency as policy

VIOLATION = "ResidencyViolation"


Cluster = ports.NamespaceAudit
"""What the audit reads (``adapters.audit.Audit``)."""


@dataclasses.dataclass(frozen=True)
class PodEvent:
    """A Warning Event to post on one pod."""

    namespace: str
    pod: str
    uid: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class NamespaceReport:
    namespace: str
    allowed: residency.Allowed
    violations: tuple[residency.Violation, ...]
    pods: int
    """Pods looked at (all of the namespace's, before leaving out data class none)."""

    def counts(self) -> dict[str, int]:
        """Violations by data class; the patient-data classes are always present (0 when none)."""
        found = {name: 0 for name in residency.DATA_CLASSES}
        for item in self.violations:
            found[item.data_class] = found.get(item.data_class, 0) + 1
        return found


@dataclasses.dataclass(frozen=True)
class Report:
    namespaces: tuple[NamespaceReport, ...]
    failures: tuple[str, ...] = ()
    """One line per namespace (or the node list) that could not be read."""


def message(namespace: str, violation: residency.Violation, label: str, allowed: residency.Allowed) -> str:
    """What the Event on a violating pod says: its node's region and the allowed regions."""
    where = (f"in region {violation.region}" if violation.region != residency.UNLABELLED
             else f"without the {label} label")
    return (f"this {violation.data_class} pod runs on node {violation.node}, {where}, outside the regions "
            f"namespace {namespace} allows: {policy.describe_allowed(namespace, allowed)}")


def audit_namespace(namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str],
                    pods: Sequence[residency.Pod], nodes: Mapping[str, Mapping[str, str]],
                    settings: policy.Settings) -> NamespaceReport:
    found = policy.namespace_policy(labels, annotations, settings)
    violations = residency.audit_namespace(pods, nodes, settings.region_label, found.allowed.regions,
                                           found.default_class)
    return NamespaceReport(namespace, found.allowed, violations, len(pods))


def enforced(cluster: Cluster, serves: Callable[[str], bool]) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """The served namespaces that enforce residency: name -> (labels, annotations)."""
    return {name: meta for name, meta in cluster.enforced_namespaces().items() if serves(name)}


def run(cluster: Cluster, settings: policy.Settings, serves: Callable[[str], bool],
        listed: Mapping[str, tuple[dict[str, str], dict[str, str]]] | None = None) -> Report:
    """Audit every served namespace that enforces residency (``listed``: as ``enforced`` found them).

    Raises ``ports.ApiError``/``ports.NotFound`` only when the namespaces or nodes cannot be listed
    (nothing can be audited then); a namespace whose pods cannot be listed is a failure line.
    """
    namespaces = dict(listed) if listed is not None else enforced(cluster, serves)
    if not namespaces:
        return Report(())
    nodes = cluster.nodes()
    reports: list[NamespaceReport] = []
    failures: list[str] = []
    for namespace in sorted(namespaces):
        labels, annotations = namespaces[namespace]
        try:
            pods = cluster.namespace_pods(namespace)
        except (ports.ApiError, ports.NotFound) as error:
            failures.append(f"namespace {namespace}: {error}")
            continue
        reports.append(audit_namespace(namespace, labels, annotations, pods, nodes, settings))
    return Report(tuple(reports), tuple(failures))


def events(report: Report, settings: policy.Settings) -> list[PodEvent]:
    """A Warning Event for each violating pod."""
    return [PodEvent(item.namespace, violation.pod, violation.uid, VIOLATION,
                     message(item.namespace, violation, settings.region_label, item.allowed))
            for item in report.namespaces for violation in item.violations]
