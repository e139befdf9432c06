"""Reads and scales a ClinicalSLO's target workload through the Kubernetes API.

The only module (besides Kopf itself) that talks to the API server. Writes use the field manager
``healthscale`` and touch one field each: the scale subresource's ``spec.replicas``, an HPA's
``spec.minReplicas``, or a pod's ``controller.kubernetes.io/pod-deletion-cost`` annotation.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import kubernetes

FIELD_MANAGER = "healthscale"
HPA_CACHE_SECONDS = 10.0
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


class TargetNotFound(Exception):
    """The workload named by targetRef does not exist (yet)."""


class ApiError(Exception):
    """The API server refused or failed a request; ``retryable`` says whether to try again."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclasses.dataclass(frozen=True)
class Hpa:
    """A HorizontalPodAutoscaler that targets the workload."""

    name: str
    min_replicas: int
    max_replicas: int


@dataclasses.dataclass(frozen=True)
class Target:
    """The workload as it is now."""

    kind: str
    name: str
    replicas: int
    ready_replicas: int
    selector: str
    hpa: Hpa | None


def load_config() -> None:
    """In a pod, its ServiceAccount; elsewhere the kubeconfig named by KUBECONFIG (or ~/.kube/config)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def _name(item: Any) -> str:
    return str(item.metadata.name) if item.metadata is not None else ""


def _error(error: kubernetes.client.ApiException, doing: str) -> Exception:
    if error.status == 404:
        return TargetNotFound(f"{doing}: not found")
    retryable = error.status in (409, 429) or (error.status or 0) >= 500
    return ApiError(f"{doing}: HTTP {error.status} {error.reason}", retryable)


def read_workload(apps: kubernetes.client.AppsV1Api, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """A Deployment or StatefulSet as the API's JSON (camelCase dicts).

    Read raw rather than as client models: building the models costs more CPU than the request
    itself, and every ClinicalSLO reads its target each cycle.
    """
    response: Any  # urllib3's response: the body is parsed here, not by the client's models
    try:
        if kind == "StatefulSet":
            response = apps.read_namespaced_stateful_set(name, namespace, _preload_content=False)
        else:
            response = apps.read_namespaced_deployment(name, namespace, _preload_content=False)
    except kubernetes.client.ApiException as error:
        raise _error(error, f"read {kind} {namespace}/{name}") from error
    workload: dict[str, Any] = json.loads(response.data)
    return workload


class Workloads:
    """Deployments and StatefulSets, their HPAs and pods, in any namespace."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None) -> None:
        self._apps = kubernetes.client.AppsV1Api(api_client)
        self._autoscaling = kubernetes.client.AutoscalingV2Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        # HPAs per namespace, listed at most every HPA_CACHE_SECONDS: one list serves every
        # ClinicalSLO of the namespace instead of one list per ClinicalSLO per cycle.
        self._hpas: dict[str, tuple[float, list[Any]]] = {}
        self._hpas_lock = threading.Lock()

    def read(self, namespace: str, kind: str, name: str) -> Target:
        workload = read_workload(self._apps, namespace, kind, name)
        spec, status = workload.get("spec") or {}, workload.get("status") or {}
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        return Target(
            kind=kind, name=name,
            replicas=int(spec["replicas"] if spec.get("replicas") is not None else 1),
            ready_replicas=int(status.get("readyReplicas") or 0),
            selector=",".join(f"{key}={value}" for key, value in sorted(labels.items())),
            hpa=self._hpa_for(namespace, kind, name),
        )

    def _hpa_list(self, namespace: str) -> list[Any]:
        now = time.monotonic()
        with self._hpas_lock:
            cached = self._hpas.get(namespace)
        if cached is not None and now - cached[0] < HPA_CACHE_SECONDS:
            return cached[1]
        try:
            listed = self._autoscaling.list_namespaced_horizontal_pod_autoscaler(namespace).items
        except kubernetes.client.ApiException as error:
            raise _error(error, f"list HPAs in {namespace}") from error
        with self._hpas_lock:
            self._hpas[namespace] = (now, listed)
        return listed

    def _hpa_for(self, namespace: str, kind: str, name: str) -> Hpa | None:
        for hpa in self._hpa_list(namespace):
            reference = hpa.spec.scale_target_ref
            if reference.kind == kind and reference.name == name:
                return Hpa(_name(hpa), int(hpa.spec.min_replicas or 1), int(hpa.spec.max_replicas))
        return None

    def scale(self, namespace: str, kind: str, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource."""
        body = {"spec": {"replicas": replicas}}
        try:
            if kind == "StatefulSet":
                self._apps.patch_namespaced_stateful_set_scale(name, namespace, body, field_manager=FIELD_MANAGER)
            else:
                self._apps.patch_namespaced_deployment_scale(name, namespace, body, field_manager=FIELD_MANAGER)
        except kubernetes.client.ApiException as error:
            raise _error(error, f"scale {kind} {namespace}/{name} to {replicas}") from error

    def set_hpa_floor(self, namespace: str, hpa: str, min_replicas: int) -> None:
        """Raise or lower an HPA's minReplicas; reactive scaling above it stays the HPA's."""
        try:
            self._autoscaling.patch_namespaced_horizontal_pod_autoscaler(
                hpa, namespace, {"spec": {"minReplicas": min_replicas}}, field_manager=FIELD_MANAGER)
            with self._hpas_lock:
                self._hpas.pop(namespace, None)  # our own write must show in the next read
        except kubernetes.client.ApiException as error:
            raise _error(error, f"set minReplicas of HPA {namespace}/{hpa} to {min_replicas}") from error

    def set_deletion_costs(self, namespace: str, costs: dict[str, int]) -> None:
        """Annotate pods so that the ReplicaSet removes the lowest cost (least loaded) first."""
        for pod, cost in costs.items():
            body = {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
            try:
                self._core.patch_namespaced_pod(pod, namespace, body, field_manager=FIELD_MANAGER)
            except kubernetes.client.ApiException as error:
                if error.status == 404:
                    continue  # the pod went away meanwhile; nothing to protect
                raise _error(error, f"annotate pod {namespace}/{pod}") from error

    def set_schedule_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Write a SurgeSchedule's status (its next windows)."""
        try:
            self._custom.patch_namespaced_custom_object_status(
                "healthscale.io", "v1alpha1", namespace, "surgeschedules", name, {"status": status},
                field_manager=FIELD_MANAGER)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return  # deleted meanwhile
            raise _error(error, f"write status of SurgeSchedule {namespace}/{name}") from error

    def pods(self, namespace: str, selector: str) -> list[str]:
        try:
            listed = self._core.list_namespaced_pod(namespace, label_selector=selector)
        except kubernetes.client.ApiException as error:
            raise _error(error, f"list pods in {namespace}") from error
        return [_name(pod) for pod in listed.items if pod.metadata is not None and pod.metadata.deletion_timestamp is None]
