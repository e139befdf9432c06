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

from healthscale import ports
from healthscale.adapters import kinds, kube
from healthscale.domain import residency, selectors

OWNED_ANNOTATION = "healthscale.io/residency-requirement"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


Template = ports.Template
Eviction = ports.Eviction
"""What an eviction did: ``evicted``, ``blocked`` (a PodDisruptionBudget said no) or ``gone``."""


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


def _kind(kind: str, doing: str) -> kinds.WorkloadKind:
    entry = kinds.WORKLOADS.get(kind)
    if entry is None:
        raise ports.ApiError(f"{doing}: healthscale places {kinds.names()}, not {kind}", retryable=False, status=0)
    return entry


class Placement:
    """Reads and writes what residency needs, in any namespace."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = kube.TIMEOUT) -> None:
        # Every request with a timeout, without urllib3 retries, failing as ports.NotFound/ApiError.
        self._api = kube.Api(api_client, timeout)
        self._apps = kubernetes.client.AppsV1Api(self._api.client)
        self._core = kubernetes.client.CoreV1Api(self._api.client)
        self._admission = kubernetes.client.AdmissionregistrationV1Api(self._api.client)

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def read_template(self, namespace: str, kind: str, name: str) -> Template:
        doing = f"read {kind} {namespace}/{name}"
        entry = _kind(kind, doing)
        raw = self._api.json(doing, entry.method(self._apps, entry.read), name, namespace)
        with kube.errors(doing):
            spec = (raw.get("spec") or {}).get("template", {}).get("spec") or {}
            annotations = (raw.get("metadata") or {}).get("annotations") or {}
            return Template(
                kind=kind, name=name,
                resource_version=str(raw["metadata"]["resourceVersion"]),
                selector=selectors.label_selector((raw.get("spec") or {}).get("selector")) or "",
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
        entry = _kind(template.kind, doing)
        self._api.json(doing, entry.method(self._apps, entry.patch), template.name, namespace, body, field_manager=kube.FIELD_MANAGER,
                       _content_type=STRATEGIC_MERGE)

    def pods(self, namespace: str, selector: str) -> list[residency.Pod]:
        """The pods the selector matches; none for an empty selector (never the whole namespace)."""
        if not selector:
            return []
        doing = f"list pods in {namespace} ({selector})"
        listed = self._api.json(doing, self._core.list_namespaced_pod, namespace, label_selector=selector)
        with kube.errors(doing):
            return [_pod(item) for item in listed.get("items") or []]

    def nodes(self) -> dict[str, dict[str, str]]:
        """Every node's labels, by node name."""
        listed = self._api.json("list nodes", self._core.list_node)
        with kube.errors("list nodes"):
            return {str(item["metadata"]["name"]): dict(item["metadata"].get("labels") or {})
                    for item in listed.get("items") or [] if item.get("metadata")}

    def namespace_metadata(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """A namespace's labels and annotations."""
        found = self._api.json(f"read namespace {name}", self._core.read_namespace, name)
        with kube.errors(f"read namespace {name}"):
            metadata = found.get("metadata") or {}
            return dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {})

    def evict(self, namespace: str, pod: str) -> Eviction:
        """Ask to evict a pod through the Eviction API, which enforces PodDisruptionBudgets."""
        body = kubernetes.client.V1Eviction(
            metadata=kubernetes.client.V1ObjectMeta(name=pod, namespace=namespace))
        try:
            self._api.json(f"evict pod {namespace}/{pod}", self._core.create_namespaced_pod_eviction, pod, namespace,
                           body, field_manager=kube.FIELD_MANAGER)
        except ports.NotFound:
            return "gone"
        except ports.ApiError as error:
            if error.status == 429:
                return "blocked"  # the disruption budget allows no disruption now; try again next cycle
            raise
        return "evicted"

    def apply_webhook_configuration(self, body: dict[str, Any]) -> None:
        """Server-side apply a ValidatingWebhookConfiguration (healthscale owns the whole object)."""
        name = str(body["metadata"]["name"])
        self._api.json(f"apply ValidatingWebhookConfiguration {name}",
                       self._admission.patch_validating_webhook_configuration,
                       name, body, field_manager=kube.FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)
