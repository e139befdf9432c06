"""The Kubernetes API calls behind data residency: pod templates, pods, nodes, evictions, webhooks.

How healthscale writes the region requirement into a workload's pod template, and why this way:
``nodeSelectorTerms`` and each term's ``matchExpressions`` are *atomic* lists in the API schema,
so no client can own a single expression inside them. Server-side apply would therefore take
ownership of the whole ``requiredDuringSchedulingIgnoredDuringExecution`` block (after a forced
conflict with whoever applied it), and a later apply without it would delete the user's terms
too. So healthscale reads the template, computes the merged block itself
(``domain.residency.merge``: the user's terms kept, the region requirement ANDed into each) and
writes exactly that one field with a strategic-merge patch, field manager ``healthscale``, guarded
by the object's ``resourceVersion`` (a concurrent edit makes it a 409 and the merge is redone on
fresh data). Preferred terms, pod (anti-)affinity and everything else in the template are not in
the patch. The requirement it added is recorded in the workload's annotation
``healthscale.io/residency-requirement`` so that changing the regions later removes exactly that
expression and nothing the user wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import kubernetes

from healthscale.adapters import kube
from healthscale.domain import residency

OWNED_ANNOTATION = "healthscale.io/residency-requirement"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


@dataclasses.dataclass(frozen=True)
class Template:
    """The parts of a workload residency reads."""

    kind: str
    name: str
    resource_version: str
    selector: str
    """The workload's pod selector in label-selector syntax."""
    pod_spec: dict[str, Any]
    """``nodeSelector``, ``affinity`` and ``nodeName`` of the pod template (camelCase)."""
    owned: residency.Policy | None
    """The requirement healthscale added last time (from the annotation)."""


Eviction = Literal["evicted", "blocked", "gone"]
"""What an eviction did: ``evicted``, ``blocked`` (a PodDisruptionBudget said no) or ``gone``."""


def selector_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector (camelCase dict) in the ``key=value,key in (a,b)`` syntax of list calls."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _pod(raw: Mapping[str, Any]) -> residency.Pod:
    metadata, spec, status = raw.get("metadata") or {}, raw.get("spec") or {}, raw.get("status") or {}
    scheduled: Mapping[str, Any] = next(
        (item for item in status.get("conditions") or [] if item.get("type") == "PodScheduled"), {})
    return residency.Pod(
        name=str(metadata.get("name", "")),
        node=spec.get("nodeName") or None,
        phase=str(status.get("phase") or "Pending"),
        unschedulable=scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable",
        scheduler_message=str(scheduled.get("message") or ""),
        terminating=metadata.get("deletionTimestamp") is not None,
    )


class Placement:
    """Reads and writes what residency needs, in any namespace."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self._client = api_client or kubernetes.client.ApiClient()
        self._apps = kubernetes.client.AppsV1Api(self._client)
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._admission = kubernetes.client.AdmissionregistrationV1Api(self._client)

    def _plain(self, model: Any) -> Any:
        """A client model as the API's camelCase JSON."""
        return self._client.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]

    def read_template(self, namespace: str, kind: str, name: str) -> Template:
        raw = kube.read_workload(self._apps, namespace, kind, name)
        spec = (raw.get("spec") or {}).get("template", {}).get("spec") or {}
        annotations = (raw.get("metadata") or {}).get("annotations") or {}
        return Template(
            kind=kind, name=name,
            resource_version=str(raw["metadata"]["resourceVersion"]),
            selector=selector_string((raw.get("spec") or {}).get("selector") or {}),
            pod_spec={key: spec[key] for key in ("nodeSelector", "affinity", "nodeName") if key in spec},
            owned=residency.Policy.decode(annotations.get(OWNED_ANNOTATION)),
        )

    def write_required_affinity(self, namespace: str, template: Template, required: dict[str, Any] | None,
                                owned: residency.Policy | None) -> None:
        """Set the template's required node affinity (None removes it) and record what healthscale owns.

        A strategic-merge patch of that one field, conditional on the resourceVersion read.
        """
        body = {
            "metadata": {"resourceVersion": template.resource_version,
                         "annotations": {OWNED_ANNOTATION: owned.encode() if owned else None}},
            "spec": {"template": {"spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": required}}}}},
        }
        doing = f"require {owned.describe() if owned else 'no region'} in {template.kind} {namespace}/{template.name}"
        try:
            if template.kind == "StatefulSet":
                self._apps.patch_namespaced_stateful_set(template.name, namespace, body, field_manager=kube.FIELD_MANAGER,
                                                         _content_type=STRATEGIC_MERGE)
            else:
                self._apps.patch_namespaced_deployment(template.name, namespace, body, field_manager=kube.FIELD_MANAGER,
                                                       _content_type=STRATEGIC_MERGE)
        except kubernetes.client.ApiException as error:
            raise kube._error(error, doing) from error

    def pods(self, namespace: str, selector: str) -> list[residency.Pod]:
        try:
            listed = self._core.list_namespaced_pod(namespace, label_selector=selector)
        except kubernetes.client.ApiException as error:
            raise kube._error(error, f"list pods in {namespace}") from error
        return [_pod(self._plain(item)) for item in listed.items]

    def nodes(self) -> dict[str, dict[str, str]]:
        """Every node's labels, by node name."""
        try:
            listed = self._core.list_node()
        except kubernetes.client.ApiException as error:
            raise kube._error(error, "list nodes") from error
        return {kube._name(node): dict(node.metadata.labels or {}) for node in listed.items if node.metadata}

    def node_labels(self, name: str) -> dict[str, str] | None:
        try:
            node = self._core.read_node(name)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise kube._error(error, f"read node {name}") from error
        return dict(node.metadata.labels or {}) if node.metadata else {}

    def namespace_metadata(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """A namespace's labels and annotations."""
        try:
            found = self._core.read_namespace(name)
        except kubernetes.client.ApiException as error:
            raise kube._error(error, f"read namespace {name}") from error
        metadata = found.metadata
        return dict(metadata.labels or {}) if metadata else {}, dict(metadata.annotations or {}) if metadata else {}

    def evict(self, namespace: str, pod: str) -> Eviction:
        """Ask to evict a pod through the Eviction API, which enforces PodDisruptionBudgets."""
        body = kubernetes.client.V1Eviction(
            metadata=kubernetes.client.V1ObjectMeta(name=pod, namespace=namespace))
        try:
            self._core.create_namespaced_pod_eviction(pod, namespace, body, field_manager=kube.FIELD_MANAGER)
        except kubernetes.client.ApiException as error:
            if error.status == 429:
                return "blocked"  # the disruption budget allows no disruption now; try again next cycle
            if error.status == 404:
                return "gone"
            raise kube._error(error, f"evict pod {namespace}/{pod}") from error
        return "evicted"

    def apply_webhook_configuration(self, body: dict[str, Any]) -> None:
        """Server-side apply a ValidatingWebhookConfiguration (healthscale owns the whole object)."""
        name = str(body["metadata"]["name"])
        try:
            self._admission.patch_validating_webhook_configuration(
                name, body, field_manager=kube.FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)
        except kubernetes.client.ApiException as error:
            raise kube._error(error, f"apply ValidatingWebhookConfiguration {name}") from error
