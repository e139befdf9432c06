"""Data residency rules: where a journey's pods may run, and whether they can or do run elsewhere.

This module owns four pure decisions, on plain dicts of the Kubernetes shapes (camelCase, as the
API returns them):

- ``merge``: AND the region requirement (``<label> In <regions>``) into every required node
  affinity term of a pod spec, without dropping or rewriting anything else. Required terms are
  ORed by the scheduler, so a requirement added as a term of its own would be a way *around* the
  others; it must go into each of them. Preferred terms are left alone. An empty term matches no
  node, so it is left empty (adding to it would widen the placement).
- ``check``: do a pod's scheduling constraints (``nodeSelector``, required node affinity,
  ``nodeName``) guarantee a node in the allowed regions? If not, the verdict names the constraint
  that is missing, in a sentence a person can act on.
- ``audit``: which running pods are on nodes outside the allowed regions (or unlabelled ones).
- ``shortfall``: how many replicas the scheduler cannot place inside the allowed regions, and where.

And the policy bounds around them:

- ``allowed_regions``: what a namespace allows (its own list, else the operator's default), clipped
  to the cluster-wide allow-list; ``outside`` says which requested regions that leaves out;
- ``kubelet_settable``: whether a kubelet may set a node label on its own Node under the
  NodeRestriction admission plugin (then the label proves nothing about where a node is);
- ``data_class`` and ``audit_namespace``: every patient-data pod of a namespace (unlabelled pods
  count as the namespace's default class), not only a ClinicalSLO's, checked against its regions.

No cluster, no clock: callers pass the objects they read and get decisions back.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from healthscale.api import clinicalslo

DEFAULT_REGION_LABEL = "topology.kubernetes.io/region"
UNLABELLED = "unlabelled"
"""What a report says for a node that has no region label."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """The regions a workload may run in, as values of a (trusted) node label."""

    label: str
    regions: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.label:
            raise ValueError("the region label must not be empty")
        if not self.regions:
            raise ValueError("a residency policy needs at least one region")
        # Keep the order the user wrote, drop duplicates and blanks.
        cleaned = tuple(dict.fromkeys(region.strip() for region in self.regions if region.strip()))
        if not cleaned:
            raise ValueError("a residency policy needs at least one region")
        object.__setattr__(self, "regions", cleaned)

    @classmethod
    def of(cls, spec: clinicalslo.ClinicalSLOSpec, label: str) -> Policy | None:
        """The ClinicalSLO's policy, or None when it names no regions."""
        if spec.residency is None or not spec.residency.regions:
            return None
        return cls(label, spec.residency.regions)

    def requirement(self) -> dict[str, Any]:
        """The node selector requirement this policy adds to each required term."""
        return {"key": self.label, "operator": "In", "values": list(self.regions)}

    def describe(self) -> str:
        return f"{self.label} In ({', '.join(self.regions)})"

    def encode(self) -> str:
        """A stable text form, kept on the workload to remember what healthscale added."""
        return json.dumps({"label": self.label, "regions": list(self.regions)}, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> Policy | None:
        """The inverse of ``encode``; None for a missing or unreadable value."""
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(str(raw["label"]), tuple(str(region) for region in raw["regions"]))
        except (ValueError, KeyError, TypeError):
            return None


def parse_regions(text: str | None) -> tuple[str, ...]:
    """``"eu-west-1, eu-central-1"`` -> ``("eu-west-1", "eu-central-1")``; blanks dropped."""
    if not text:
        return ()
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


# ---------------------------------------------------------------------------------------- merge


def _is_requirement(expression: Mapping[str, Any], policy: Policy) -> bool:
    return (expression.get("key") == policy.label and expression.get("operator") == "In"
            and set(expression.get("values") or ()) == set(policy.regions))


def _is_empty(term: Mapping[str, Any]) -> bool:
    return not term.get("matchExpressions") and not term.get("matchFields")


def _required_terms(affinity: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    required = ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return [dict(term) for term in required.get("nodeSelectorTerms") or []]


def merge(affinity: Mapping[str, Any] | None, policy: Policy | None,
          owned: Policy | None = None) -> dict[str, Any] | None:
    """The pod spec's ``affinity`` with ``policy`` required in every required node affinity term.

    ``owned`` is what healthscale added last time (recorded on the workload): its expression is
    taken out first when the policy changed, so that widening the regions really widens them.
    Nothing else is removed. With ``policy`` None, only the owned expression is taken out (and a
    term that held nothing else, which healthscale created, goes with it).
    Idempotent: merging the result again with the same policy changes nothing.
    """
    result: dict[str, Any] = copy.deepcopy(dict(affinity)) if affinity else {}
    terms = [copy.deepcopy(term) for term in _required_terms(affinity)]
    if owned is not None and owned != policy:
        stripped = []
        for term in terms:
            was_empty = _is_empty(term)
            expressions = [item for item in term.get("matchExpressions") or [] if not _is_requirement(item, owned)]
            term = {**term, "matchExpressions": expressions} if expressions else {
                key: value for key, value in term.items() if key != "matchExpressions"}
            if _is_empty(term) and not was_empty:
                continue  # the term held only what healthscale added: it was healthscale's own
            stripped.append(term)
        terms = stripped
    if policy is not None:
        if not terms:
            terms = [{"matchExpressions": [policy.requirement()]}]
        else:
            merged = []
            for term in terms:
                expressions = list(term.get("matchExpressions") or [])
                if not _is_empty(term) and not any(_is_requirement(item, policy) for item in expressions):
                    term = {**term, "matchExpressions": [*expressions, policy.requirement()]}
                merged.append(term)
            terms = merged
    node_affinity = dict(result.get("nodeAffinity") or {})
    if terms:
        required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
        required["nodeSelectorTerms"] = terms
        node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    else:
        node_affinity.pop("requiredDuringSchedulingIgnoredDuringExecution", None)
    if node_affinity:
        result["nodeAffinity"] = node_affinity
    else:
        result.pop("nodeAffinity", None)
    return result or None


def required_node_affinity(affinity: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Just ``nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`` (what healthscale writes)."""
    value = ((affinity or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    return copy.deepcopy(dict(value)) if value else None


# ---------------------------------------------------------------------------------------- check


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a pod spec keeps the pod inside the allowed regions, and if not, why not."""

    allowed: bool
    message: str


def _term_regions(term: Mapping[str, Any], label: str) -> tuple[set[str] | None, bool]:
    """The regions a term admits (None: any region) and whether it admits only unlabelled nodes."""
    admitted: set[str] | None = None
    excluded: set[str] = set()
    only_unlabelled = False
    for expression in term.get("matchExpressions") or []:
        if expression.get("key") != label:
            continue
        operator = expression.get("operator")
        values = set(expression.get("values") or ())
        if operator == "In":
            admitted = values if admitted is None else admitted & values
        elif operator == "NotIn":
            excluded |= values
        elif operator == "DoesNotExist":
            only_unlabelled = True
    if admitted is not None:
        admitted -= excluded
    return admitted, only_unlabelled


def _listed(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def check(pod_spec: Mapping[str, Any], policy: Policy,
          node_labels: Mapping[str, str] | None = None) -> Verdict:
    """Do the pod's scheduling constraints guarantee a node in ``policy.regions``?

    ``node_labels`` are the labels of ``spec.nodeName`` when the pod names its node (bypassing
    the scheduler); the caller looks them up.
    """
    label, allowed = policy.label, set(policy.regions)
    wanted = f'a required node affinity term "{policy.describe()}" (or nodeSelector {label}: <one of them>)'
    node_name = pod_spec.get("nodeName")
    if node_name and node_labels is not None:
        region = node_labels.get(label)
        if region not in allowed:
            where = f"region {region}" if region else f"no {label} label"
            return Verdict(False, f"spec.nodeName {node_name} has {where}, outside the allowed regions "
                                  f"{', '.join(policy.regions)}")
    selected = (pod_spec.get("nodeSelector") or {}).get(label)
    if selected is not None:
        if selected in allowed:
            return Verdict(True, f"nodeSelector {label}={selected} is an allowed region")
        return Verdict(False, f"nodeSelector {label}={selected} is outside the allowed regions "
                              f"{', '.join(policy.regions)}")
    terms = _required_terms(pod_spec.get("affinity"))
    if not terms:
        return Verdict(False, f"it has neither a nodeSelector on {label} nor a required node affinity, so it "
                              f"could run in any region; add {wanted}")
    problems = []
    for number, term in enumerate(terms, start=1):
        if _is_empty(term):
            continue  # an empty term matches no node
        admitted, only_unlabelled = _term_regions(term, label)
        if only_unlabelled and admitted is None:
            problems.append(f"required node affinity term {number} of {len(terms)} admits only nodes without "
                            f"the {label} label")
        elif admitted is None:
            problems.append(f"required node affinity term {number} of {len(terms)} does not restrict {label} "
                            "(terms are ORed, so each one must)")
        elif admitted - allowed:
            problems.append(f"required node affinity term {number} of {len(terms)} admits {label} "
                            f"{_listed(admitted - allowed)}, outside the allowed regions")
    if problems:
        return Verdict(False, f"{'; '.join(problems)}; add {policy.describe()} to every required term")
    return Verdict(True, f"every required node affinity term restricts {label} to allowed regions")


def scheduling_constraints(pod_spec: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """What ``check`` reads, for telling whether an update changed it."""
    return pod_spec.get("nodeSelector"), pod_spec.get("affinity"), pod_spec.get("nodeName")


# ---------------------------------------------------------------------------------------- audit


@dataclasses.dataclass(frozen=True)
class Pod:
    """A pod as residency sees it: where it runs, or why it does not run yet."""

    name: str
    node: str | None = None
    phase: str = "Pending"
    unschedulable: bool = False
    """PodScheduled=False with reason Unschedulable: the scheduler found no node."""
    scheduler_message: str = ""
    terminating: bool = False
    data_class: str | None = None
    """The pod's ``healthscale.io/data-class`` label; None when it has none."""
    uid: str = ""


@dataclasses.dataclass(frozen=True)
class Violation:
    """A pod running on a node outside the allowed regions."""

    pod: str
    node: str
    region: str
    """The node's region, or ``unlabelled``."""
    data_class: str = ""
    """The pod's data class as the namespace audit counts it (empty in a ClinicalSLO's audit)."""
    uid: str = ""

    def wire(self) -> dict[str, str]:
        return {"pod": self.pod, "node": self.node, "region": self.region}


def audit(pods: Sequence[Pod], nodes: Mapping[str, Mapping[str, str]], policy: Policy) -> tuple[Violation, ...]:
    """Every pod bound to a node whose region label is missing or not allowed (sorted by pod).

    Finished pods (Succeeded, Failed) hold no data any more and are left out. A node that is
    gone counts as unlabelled: nothing proves where the pod ran.
    """
    return _outside_regions(pods, nodes, policy.label, policy.regions, lambda pod: "")


def _outside_regions(pods: Sequence[Pod], nodes: Mapping[str, Mapping[str, str]], label: str,
                     regions: Sequence[str], classify: Callable[[Pod], str]) -> tuple[Violation, ...]:
    found = []
    for pod in pods:
        if not pod.node or pod.phase in ("Succeeded", "Failed"):
            continue
        region = (nodes.get(pod.node) or {}).get(label)
        if region not in regions:
            found.append(Violation(pod.name, pod.node, region or UNLABELLED, classify(pod), pod.uid))
    return tuple(sorted(found, key=lambda item: item.pod))


DATA_CLASSES = ("phi", "pii")
"""The patient-data classes; ``none`` is not patient data."""
NOT_PATIENT_DATA = "none"
UNKNOWN_CLASS = "unknown"
"""How the audit counts a data-class label it does not know: as patient data (fail closed), under
this one name, so that label values a pod author writes never become metric labels."""


def data_class(label: str | None, namespace_default: str | None) -> str:
    """What a pod holds: its data-class label, else the namespace's default class, else ``phi``.

    Only the pod's own explicit ``none`` is not patient data. A namespace default can pick a patient
    class but never ``none``: an exemption for every unlabelled pod would reopen the label bypass, so
    it counts as ``phi``, as does an unknown default. An unknown value on the pod is ``unknown``
    (patient data).
    """
    if label is None or not label.strip():
        default = (namespace_default or "").strip()
        return default if default in DATA_CLASSES else DATA_CLASSES[0]
    value = label.strip()
    return value if value in (*DATA_CLASSES, NOT_PATIENT_DATA) else UNKNOWN_CLASS


def audit_namespace(pods: Sequence[Pod], nodes: Mapping[str, Mapping[str, str]], label: str,
                    regions: Sequence[str], namespace_default: str | None = None) -> tuple[Violation, ...]:
    """Every patient-data pod of a namespace bound to a node outside ``regions`` (sorted by pod).

    Unlike ``audit``, every pod counts, ClinicalSLO target or not: pods without the data-class label
    are the namespace's default class, and only ``none`` is left out. With no regions at all, every
    running patient-data pod is outside them. Each violation carries the pod's data class.
    """
    patient = [pod for pod in pods if data_class(pod.data_class, namespace_default) != NOT_PATIENT_DATA]
    return _outside_regions(patient, nodes, label, regions,
                            lambda pod: data_class(pod.data_class, namespace_default))


# ------------------------------------------------------------------------------------ shortfall


@dataclasses.dataclass(frozen=True)
class Shortfall:
    """Replicas that stay Pending because the allowed regions lack room."""

    replicas: int
    regions: tuple[str, ...]
    """The allowed regions the replicas are waiting for."""
    regions_without_nodes: tuple[str, ...]
    """Allowed regions with no node at all (ready or not)."""
    scheduler_message: str = ""

    def explain(self) -> str:
        empty = (f"; no nodes at all in {', '.join(self.regions_without_nodes)}"
                 if self.regions_without_nodes else "")
        said = f"; scheduler: {self.scheduler_message}" if self.scheduler_message else ""
        return (f"{self.replicas} replica(s) pending: no room in the allowed regions {', '.join(self.regions)}"
                f"{empty}{said}. Residency is not relaxed: add capacity in these regions")

    def wire(self) -> dict[str, Any]:
        return {"replicas": self.replicas, "regions": list(self.regions),
                "regionsWithoutNodes": list(self.regions_without_nodes)}


def shortfall(pods: Sequence[Pod], nodes: Mapping[str, Mapping[str, str]], policy: Policy) -> Shortfall | None:
    """How many of the target's replicas the scheduler could not place inside the allowed regions.

    Only pods the scheduler has already declared unschedulable count; a pod created a moment ago
    has not been tried yet. None when nothing is short.
    """
    waiting = [pod for pod in pods if pod.node is None and pod.unschedulable and not pod.terminating
               and pod.phase == "Pending"]
    if not waiting:
        return None
    present = {labels.get(policy.label) for labels in nodes.values()}
    message = next((pod.scheduler_message for pod in waiting if pod.scheduler_message), "")
    return Shortfall(
        replicas=len(waiting),
        regions=policy.regions,
        regions_without_nodes=tuple(region for region in policy.regions if region not in present),
        scheduler_message=message,
    )


# ------------------------------------------------------------------------------ allowed regions


@dataclasses.dataclass(frozen=True)
class Allowed:
    """The regions a namespace allows, bounded by the cluster-wide allow-list."""

    regions: tuple[str, ...]
    source: str
    """``namespace`` (its own list), ``default`` (the operator's default) or ``none`` (neither is set)."""
    clipped: tuple[str, ...] = ()
    """Regions the namespace or the default listed that the cluster-wide allow-list does not have."""


def allowed_regions(namespace: Sequence[str], default: Sequence[str], cluster: Sequence[str]) -> Allowed:
    """The namespace's own regions, else the default, within ``cluster`` (empty: no cluster bound).

    A region outside the cluster-wide list is dropped (``clipped``), never allowed: the namespace
    annotation is written by whoever administers the namespace, the allow-list by whoever runs the
    operator. Listed order is kept, duplicates go.
    """
    listed = tuple(dict.fromkeys(region for region in namespace if region))
    source = "namespace"
    if not listed:
        listed, source = tuple(dict.fromkeys(region for region in default if region)), "default"
    if not listed:
        return Allowed((), "none")
    if not cluster:
        return Allowed(listed, source)
    bounds = set(cluster)
    return Allowed(tuple(region for region in listed if region in bounds), source,
                   tuple(region for region in listed if region not in bounds))


def outside(requested: Sequence[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """The requested regions that are not allowed, in the requested order."""
    permitted = set(allowed)
    return tuple(dict.fromkeys(region for region in requested if region not in permitted))


# ---------------------------------------------------------------------------- trusted labels

NODE_RESTRICTION_DOMAIN = "node-restriction.kubernetes.io"
"""Labels under this domain (or a subdomain) are never settable by kubelets (NodeRestriction)."""
KUBELET_LABELS = frozenset({
    "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region", "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})
"""The kubernetes.io labels a kubelet may set on its own Node (k8s.io/kubelet/pkg/apis, kubeletLabels)."""
KUBELET_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
"""Label domains a kubelet may set on its own Node (kubeletLabelNamespaces)."""
KUBERNETES_DOMAINS = ("kubernetes.io", "k8s.io")


def _in_domain(prefix: str, domain: str) -> bool:
    return prefix == domain or prefix.endswith("." + domain)


def kubelet_settable(label: str) -> bool:
    """May a kubelet set ``label`` on its own Node object when NodeRestriction is on?

    The admission plugin's rule (plugin/pkg/admission/noderestriction, getForbiddenLabels): labels
    under node-restriction.kubernetes.io are forbidden; labels under kubernetes.io or k8s.io are
    forbidden unless kubelets are meant to set them (the list above, topology.kubernetes.io/region
    among them); every other label (any custom domain, or none) is allowed.
    """
    prefix = label.split("/", 1)[0] if "/" in label else ""
    if _in_domain(prefix, NODE_RESTRICTION_DOMAIN):
        return False
    if any(_in_domain(prefix, domain) for domain in KUBERNETES_DOMAINS):
        return label in KUBELET_LABELS or any(_in_domain(prefix, domain) for domain in KUBELET_DOMAINS)
    return True
