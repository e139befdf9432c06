"""The Kubernetes calls of the namespace residency audit (``service.audit.Cluster``) and of its
leader check: enforced namespaces, every pod of a namespace, node labels, Warning Events on pods,
and the Kopf peering object that says which replica is active.

Requests go through ``kube.Api`` (a timeout on each, no retries, failures as the ports' errors).
What a failed request says never names a pod: pod names can carry patient identifiers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any

import kubernetes

from healthscale import ports
from healthscale.adapters import kube
from healthscale.domain import residency

DATA_CLASS_LABEL = "healthscale.io/data-class"
PAGE = 500
"""Pods listed per request, so that a large namespace never arrives in one answer."""
PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


def pod_of(raw: Mapping[str, Any]) -> residency.Pod:
    metadata, spec, status = raw.get("metadata") or {}, raw.get("spec") or {}, raw.get("status") or {}
    labels = metadata.get("labels") or {}
    return residency.Pod(
        name=str(metadata.get("name", "")),
        node=spec.get("nodeName") or None,
        phase=str(status.get("phase") or "Pending"),
        terminating=metadata.get("deletionTimestamp") is not None,
        data_class=labels.get(DATA_CLASS_LABEL),
        uid=str(metadata.get("uid") or ""),
    )


class Audit:
    """Reads for the audit, in any namespace; the Events it posts; the peering it checks."""

    def __init__(self, enforced_selector: str, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = kube.TIMEOUT) -> None:
        self._selector = enforced_selector
        self._api = kube.Api(api_client, timeout)
        self._core = kubernetes.client.CoreV1Api(self._api.client)
        self._custom = kubernetes.client.CustomObjectsApi(self._api.client)
        self._instance = socket.gethostname()

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def enforced_namespaces(self) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        doing = f"list namespaces ({self._selector})"
        listed = self._api.json(doing, self._core.list_namespace, label_selector=self._selector)
        with kube.errors(doing):
            found = {}
            for item in listed.get("items") or []:
                metadata = item.get("metadata") or {}
                if metadata.get("deletionTimestamp"):
                    continue  # going away: its pods are being deleted anyway
                found[str(metadata["name"])] = (dict(metadata.get("labels") or {}),
                                                dict(metadata.get("annotations") or {}))
            return found

    def namespace_pods(self, namespace: str) -> list[residency.Pod]:
        doing = f"list pods in {namespace}"
        pods: list[residency.Pod] = []
        token: str | None = None
        while True:
            options: dict[str, Any] = {"limit": PAGE}
            if token:
                options["_continue"] = token
            listed = self._api.json(doing, self._core.list_namespaced_pod, namespace, **options)
            with kube.errors(doing):
                pods.extend(pod_of(item) for item in listed.get("items") or [])
                token = (listed.get("metadata") or {}).get("continue") or None
            if not token:
                return pods

    def nodes(self) -> dict[str, dict[str, str]]:
        listed = self._api.json("list nodes", self._core.list_node)
        with kube.errors("list nodes"):
            return {str(item["metadata"]["name"]): dict(item["metadata"].get("labels") or {})
                    for item in listed.get("items") or [] if item.get("metadata")}

    def post_pod_event(self, namespace: str, pod: str, uid: str, type_: str, reason: str, message: str) -> None:
        """A core v1 Event on the Pod (``kubectl describe pod`` shows it)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"generateName": "healthscale-residency.", "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace, "uid": uid},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "healthscale"}, "reportingComponent": "healthscale",
            "reportingInstance": self._instance, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._api.json(f"post Event {reason} on a pod in {namespace}", self._core.create_namespaced_event,
                       namespace, body)

    def peers(self, name: str, namespace: str | None) -> dict[str, dict[str, Any]]:
        """The peers in Kopf's peering object (its ``status``: identity -> priority, lastseen,
        lifetime); empty when the object does not exist. ``namespace`` None: the cluster-wide one."""
        selector = f"metadata.name={name}"
        if namespace is None:
            doing = f"list ClusterKopfPeering {name}"
            listed = self._api.json(doing, self._custom.list_cluster_custom_object, PEERING_GROUP, PEERING_VERSION,
                                    "clusterkopfpeerings", field_selector=selector)
        else:
            doing = f"list KopfPeering {namespace}/{name}"
            listed = self._api.json(doing, self._custom.list_namespaced_custom_object, PEERING_GROUP,
                                    PEERING_VERSION, namespace, "kopfpeerings", field_selector=selector)
        with kube.errors(doing):
            for item in listed.get("items") or []:
                status = item.get("status") or {}
                return {str(key): dict(value) for key, value in status.items() if isinstance(value, Mapping)}
            return {}


def _implements_the_port(audit: Audit) -> ports.NamespaceAudit:
    return audit  # never called: mypy checks here that the adapter fits the port
