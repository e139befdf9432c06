"""The residency admission decision for one Pod, the AdmissionReview around it, and the webhook's
configuration.

In a namespace labelled ``healthscale.io/residency=enforced`` every pod is patient data unless it
says otherwise: a pod without the ``healthscale.io/data-class`` label holds the namespace's
default class (annotation ``healthscale.io/default-data-class``; ``phi`` when absent), and a label
value other than phi, pii or none counts as patient data (``domain.residency.data_class``, which
the namespace audit uses too). Only ``none`` exempts a pod. Allowed regions are the namespace's,
else the operator's default, within the cluster-wide allow-list (``residency.namespace_policy``).

- CREATE: the pod's scheduling constraints must keep it in the namespace's allowed regions
  (``domain.residency.check``; a pod that names its node, in ``spec.nodeName`` or, as DaemonSet
  pods do, in a required term's ``matchFields``, is checked against that node's region).
- UPDATE: scheduling constraints cannot change on a running pod, but labels can. A change of
  data class (adding the label, changing it, removing ``none``) or of the constraints is checked
  against where the pod already runs: a bound pod's node must be in an allowed region, an unbound
  pod's constraints must keep it there. An update that changes neither is left to the audit, as is
  a pod being deleted.

Nothing here reads the cluster: the caller passes the namespace and a node lookup (from the
webhook's watch-fed caches). Messages name the namespace, the data class and what is missing,
never the pod: its name (a Job's, say) can carry a patient identifier, and the message ends up in
the controller's FailedCreate Event.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from healthscale.api import clinicalslo
from healthscale.domain import residency as rules
from healthscale.service import residency

EXEMPT = rules.NOT_PATIENT_DATA
PATH = "/residency"
"""Where the webhook server answers AdmissionReviews."""
TIMEOUT_SECONDS = 5
"""How long the API server waits for an answer; the webhook answers from memory."""

NodeLabels = Callable[[str], Mapping[str, str] | None]


@dataclasses.dataclass(frozen=True)
class Namespace:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]

    @property
    def enforced(self) -> bool:
        return self.labels.get(residency.OPT_IN_LABEL) == residency.OPT_IN_VALUE


@dataclasses.dataclass(frozen=True)
class Request:
    """The parts of an AdmissionReview request the decision reads."""

    uid: str
    operation: str
    namespace: str
    pod: Mapping[str, Any]
    old_pod: Mapping[str, Any] | None = None
    resource: str = "pods"
    subresource: str = ""


@dataclasses.dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str
    """For the API server (and the pod's author): what is missing and how to fix it."""
    data_class: str = ""
    """phi, pii, none or unknown; empty when the request is not about a pod's data."""
    missing: str = ""
    """For the operator's log: the missing constraint, in words with no pod data in them."""


def _labels(pod: Mapping[str, Any] | None) -> Mapping[str, str]:
    return ((pod or {}).get("metadata") or {}).get("labels") or {}


def data_class(pod_labels: Mapping[str, str], namespace: Namespace) -> str:
    """phi, pii, none or unknown (``domain.residency.data_class``, as the namespace audit counts it)."""
    return rules.data_class(pod_labels.get(residency.DATA_CLASS_LABEL),
                            namespace.annotations.get(residency.DEFAULT_CLASS_ANNOTATION))


def _how(pod_labels: Mapping[str, str], namespace: Namespace, kind: str) -> str:
    value = pod_labels.get(residency.DATA_CLASS_LABEL)
    if value is None:
        return (f"no {residency.DATA_CLASS_LABEL} label, so the namespace's default {kind} applies; label it "
                f"{residency.DATA_CLASS_LABEL}=none if it holds no patient data")
    if kind == rules.UNKNOWN_CLASS:
        return f"{residency.DATA_CLASS_LABEL} is not phi, pii or none, so it is treated as patient data"
    return ""


def _missing(spec: Mapping[str, Any], label: str, bound: bool) -> str:
    """The constraint that is missing, in fixed words (what the operator logs)."""
    if bound:
        return "a node in an allowed region"
    if spec.get("nodeName"):
        return "spec.nodeName on a node in an allowed region"
    if label in (spec.get("nodeSelector") or {}):
        return f"a nodeSelector {label} with an allowed region"
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if not affinity:
        return f"a nodeSelector or required node affinity on {label}"
    return f"{label} In (allowed regions) in every required node affinity term"


def _named_nodes(spec: Mapping[str, Any], policy: rules.Policy,
                 node_labels: NodeLabels) -> tuple[Mapping[str, Any], rules.Verdict | None]:
    """Required terms that name their nodes (``matchFields`` metadata.name In ...), as the
    DaemonSet controller writes them: such a term keeps the pod in the allowed regions when every
    node it names is in one. Returns the spec with those terms also requiring the regions (so
    ``check`` judges the rest), or a refusal naming the nodes that are not."""
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = list(required.get("nodeSelectorTerms") or [])
    rewritten, outside = [], []
    for number, term in enumerate(terms, start=1):
        names = next((list(field.get("values") or []) for field in term.get("matchFields") or []
                      if field.get("key") == "metadata.name" and field.get("operator") == "In"), None)
        if names is None:
            rewritten.append(term)
            continue
        elsewhere = [name for name in names if (node_labels(name) or {}).get(policy.label) not in policy.regions]
        if elsewhere:
            outside.append(f"required node affinity term {number} of {len(terms)} names node(s) "
                           f"{', '.join(elsewhere)}, not in an allowed region")
        rewritten.append({**term, "matchExpressions": [*(term.get("matchExpressions") or []), policy.requirement()]})
    if outside:
        return spec, rules.Verdict(False, "; ".join(outside))
    if rewritten == terms:
        return spec, None
    affinity = dict(spec.get("affinity") or {})
    affinity["nodeAffinity"] = {**(affinity.get("nodeAffinity") or {}),
                                "requiredDuringSchedulingIgnoredDuringExecution": {**required,
                                                                                   "nodeSelectorTerms": rewritten}}
    return {**spec, "affinity": affinity}, None


def decide(request: Request, namespace: Namespace | None, node_labels: NodeLabels,
           settings: residency.Settings) -> Decision:
    """May this pod be created (or updated) in this namespace?"""
    if request.resource != "pods" or request.subresource:
        return Decision(True, "not a pod")
    if request.operation not in ("CREATE", "UPDATE"):
        return Decision(True, f"{request.operation} is not checked")
    name = request.namespace
    if not name:
        return Decision(False, "healthscale cannot tell the pod's namespace, so cannot check its residency",
                        missing="a namespace")
    if namespace is None:
        return Decision(False, f"healthscale does not know namespace {name} yet; try again in a moment",
                        missing="a namespace the webhook knows")
    if not namespace.enforced:
        return Decision(True, f"namespace {name} does not enforce residency")
    labels = _labels(request.pod)
    kind = data_class(labels, namespace)
    if kind == EXEMPT:
        return Decision(True, "labelled as holding no patient data", kind)
    spec = request.pod.get("spec") or {}
    old = request.old_pod
    if request.operation == "UPDATE" and old is not None:
        if ((old.get("metadata") or {}).get("deletionTimestamp")
                or (request.pod.get("metadata") or {}).get("deletionTimestamp")):
            return Decision(True, "the pod is being deleted", kind)
        if data_class(_labels(old), namespace) == kind and \
                rules.scheduling_constraints(old.get("spec") or {}) == rules.scheduling_constraints(spec):
            return Decision(True, "neither the data class nor the scheduling constraints changed", kind)
    allowed = residency.namespace_policy(namespace.labels, namespace.annotations, settings).allowed
    regions = allowed.regions
    how = _how(labels, namespace, kind)
    subject = f"{kind} data ({how})" if how else f"{kind} data"
    if not regions:
        return Decision(False, f"a pod holding {subject} in namespace {name}: the namespace enforces residency but "
                               f"allows no region: {residency.describe_allowed(name, allowed)}. Annotate the "
                               f'namespace with {residency.ALLOWED_REGIONS_ANNOTATION}: "region-a,region-b" or start '
                               "the operator with --default-allowed-regions", kind, "allowed regions for the namespace")
    policy = rules.Policy(settings.region_label, regions)
    node = str(spec.get("nodeName") or "")
    bound = request.operation == "UPDATE" and bool(node)
    if bound:
        # Already placed: its constraints no longer matter, its node's region does.
        region = (node_labels(node) or {}).get(policy.label)
        if region in policy.regions:
            return Decision(True, f"its node {node} is in an allowed region", kind)
        where = f"region {region}" if region else f"no {policy.label} label"
        verdict = rules.Verdict(False, f"it runs on node {node}, which has {where}; a running pod cannot take a "
                                       "data class whose regions exclude its node")
    else:
        spec, pinned = _named_nodes(spec, policy, node_labels)
        verdict = pinned or rules.check(spec, policy, (node_labels(node) or {}) if node else None)
        if verdict.allowed:
            return Decision(True, verdict.message, kind)
    return Decision(False, f"a pod holding {subject} in namespace {name} must stay in {', '.join(policy.regions)}: "
                           f"{verdict.message}", kind, _missing(spec, policy.label, bound))


# ------------------------------------------------------------------------------- AdmissionReview


def parse(review: Any) -> Request:
    """The request of an ``admission.k8s.io/v1`` AdmissionReview; ValueError when it is none."""
    if not isinstance(review, Mapping) or review.get("kind") != "AdmissionReview":
        raise ValueError("expected an AdmissionReview")
    request = review.get("request")
    if not isinstance(request, Mapping) or not request.get("uid"):
        raise ValueError("the AdmissionReview has no request uid")
    pod = request.get("object")
    old = request.get("oldObject")
    return Request(
        uid=str(request["uid"]),
        operation=str(request.get("operation") or ""),
        namespace=str(request.get("namespace") or ((pod or {}).get("metadata") or {}).get("namespace") or ""),
        pod=pod if isinstance(pod, Mapping) else {},
        old_pod=old if isinstance(old, Mapping) else None,
        resource=str((request.get("resource") or {}).get("resource") or ""),
        subresource=str(request.get("subResource") or ""),
    )


def response(uid: str, decision: Decision) -> dict[str, Any]:
    """The AdmissionReview the API server gets back."""
    answer: dict[str, Any] = {"uid": uid, "allowed": decision.allowed}
    if not decision.allowed:
        answer["status"] = {"code": 403, "reason": "Forbidden", "message": decision.message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}


# ------------------------------------------------------------------------------- configuration

# The API server calls the webhook only for creations and for updates that change a label or a
# scheduling constraint: any other update is allowed by ``decide`` anyway, and skipping it keeps
# pods' routine updates (a Job's finalizer removal, a controller adopting a pod) working while
# no replica answers.
RELEVANT_UPDATE = (
    "request.operation != 'UPDATE'"
    " || object.metadata.?labels.orValue({}) != oldObject.metadata.?labels.orValue({})"
    " || object.spec.?nodeSelector.orValue({}) != oldObject.spec.?nodeSelector.orValue({})"
    " || object.spec.?affinity != oldObject.spec.?affinity"
)


_NAMESPACE_PATTERN = re.compile(r"!?[a-z0-9*?-]+")


def served_namespaces(patterns: tuple[str, ...]) -> str | None:
    """A CEL match condition true for the namespaces an operator serves (its ``--namespace`` globs).

    An operator limited to some namespaces judges only those, so two installations never answer
    (or, while one is down, refuse) for each other. Patterns are Kopf's: ``*`` and ``?`` globs,
    ``!`` excludes. None when the operator serves every namespace.
    """
    if not patterns:
        return None
    for pattern in patterns:
        if not _NAMESPACE_PATTERN.fullmatch(pattern):
            raise ValueError(f"--namespace {pattern!r}: use namespace names with * and ? globs (and ! to exclude)")
    # Namespace names hold only [a-z0-9-], so a glob becomes RE2 without any escaping.
    def matches(glob: str) -> str:
        return f"request.namespace.matches('^{glob.replace('*', '.*').replace('?', '.')}$')"
    included = [matches(p) for p in patterns if not p.startswith("!")] or ["true"]
    excluded = [matches(p[1:]) for p in patterns if p.startswith("!")]
    condition = "(" + " || ".join(included) + ")"
    return condition + "".join(f" && !{rule}" for rule in excluded)


def configuration(name: str, *, url: str | None = None, service: tuple[str, str, int] | None = None,
                  ca_bundle: str | None = None, namespaces: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: every pod in enforced namespaces but those labelled none.

    ``failurePolicy: Fail``: when no replica answers, pods in enforced namespaces are not created
    unchecked; nothing outside them depends on the webhook. The client is either a ``url`` or a
    ``service`` (namespace, name, port), which reaches every ready replica. Without ``ca_bundle``
    the field is left to whoever else sets it (cert-manager's CA injector). An operator limited to
    ``namespaces`` judges only those, so two installations never answer for each other.
    """
    conditions = [{"name": "creation-or-relevant-update", "expression": RELEVANT_UPDATE}]
    served = served_namespaces(namespaces)
    if served is not None:
        conditions.append({"name": "served-namespaces", "expression": served})
    client: dict[str, Any]
    if service is not None:
        namespace, service_name, port = service
        client = {"service": {"namespace": namespace, "name": service_name, "port": port, "path": PATH}}
    elif url is not None:
        client = {"url": url}
    else:
        raise ValueError("the webhook needs a url or a service")
    if ca_bundle:
        client["caBundle"] = ca_bundle
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "healthscale"}},
        "webhooks": [{
            "name": residency.WEBHOOK_NAME,
            "clientConfig": client,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                       "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}],
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "sideEffects": "None",
            "timeoutSeconds": TIMEOUT_SECONDS,
            "admissionReviewVersions": ["v1"],
            "namespaceSelector": {"matchLabels": {residency.OPT_IN_LABEL: residency.OPT_IN_VALUE}},
            # NotIn matches pods without the label too: unlabelled pods are the namespace's default class.
            "objectSelector": {"matchExpressions": [
                {"key": residency.DATA_CLASS_LABEL, "operator": "NotIn", "values": [EXEMPT]}]},
            "matchConditions": conditions,
        }],
    }
