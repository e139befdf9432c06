"""The kinds healthscale acts on, in two tables: the workloads it scales (``WORKLOADS``: how the API
reads each one, scales it and patches its pod template), and the autoscaler objects whose floor it
raises instead when one scales the workload (``FLOORS``: HPAs, KEDA ScaledObjects; how to list and
patch them, which field is the floor, how to find the workload they scale).

Adding a kind is one entry here, its name in ``clinicalslo.TargetRef.kind`` (a workload) or in
``clinicalslo.Original`` (a floor), and its RBAC (the chart's ``_rbac.tpl`` and ``tests/chart``'s
``CLIENT_CALLS``); ``tests/chart/test_target_kinds.py`` checks that they agree. Floor owners are not
targets: they are found by the workload they scale (``adapters.kube.Workloads``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kubernetes

from healthscale import ports


@dataclasses.dataclass(frozen=True)
class WorkloadKind:
    kind: str
    resource: str
    """The API resource (apps/v1), as RBAC names it: ``deployments``."""
    read: str
    """The ``AppsV1Api`` method that reads one object."""
    patch: str
    """... that patches it (residency writes its pod template's node affinity)."""
    patch_scale: str
    """... that patches its scale subresource (``spec.replicas``)."""

    def method(self, api: kubernetes.client.AppsV1Api, name: str) -> Callable[..., Any]:
        found: Callable[..., Any] = getattr(api, name)
        return found


WORKLOADS: dict[str, WorkloadKind] = {entry.kind: entry for entry in (
    WorkloadKind("Deployment", "deployments", "read_namespaced_deployment", "patch_namespaced_deployment",
                 "patch_namespaced_deployment_scale"),
    WorkloadKind("StatefulSet", "statefulsets", "read_namespaced_stateful_set", "patch_namespaced_stateful_set",
                 "patch_namespaced_stateful_set_scale"),
)}


def names() -> str:
    """``Deployments and StatefulSets``, for messages."""
    return " and ".join(f"{kind}s" for kind in WORKLOADS)


@dataclasses.dataclass(frozen=True)
class FloorKind:
    """An autoscaler object whose floor healthscale raises instead of scaling the workload itself.

    Found by the workload it scales (``spec.scaleTargetRef``); healthscale writes one field of it
    (``field``, a merge patch carrying the object's uid) and puts the recorded value back."""

    kind: str
    group: str
    version: str
    resource: str
    """The API resource, as RBAC names it: ``horizontalpodautoscalers``."""
    field: ports.Field
    """The ``spec`` field healthscale raises: the floor."""
    ceiling: str
    """The ``spec`` field that bounds it: the floor is never written above it."""
    default_floor: int
    """The floor when the field is absent (the API's or the controller's default)."""
    default_ceiling: int | None
    """The ceiling when absent; None: the API requires it."""
    default_target_kind: str
    """``scaleTargetRef.kind`` when absent; empty: the API requires it."""
    api: str
    """The ``kubernetes.client`` class of the calls below."""
    list: str
    """The method that lists them in a namespace (by ``field_selector`` for one by name)."""
    patch: str
    """... that patches one."""
    option: str | None = None
    """The operator option that turns the kind on (``--keda``); None: always on."""
    pause_annotations: tuple[str, ...] = ()
    """Annotations with which the object's owner pauses its scaling: healthscale then leaves it."""

    @property
    def custom(self) -> bool:
        """A custom resource: the generic calls take its group, version and plural as arguments."""
        return self.api == "CustomObjectsApi"

    def method(self, api: Any, name: str) -> Callable[..., Any]:
        found: Callable[..., Any] = getattr(api, name)
        return found


HPA = "HorizontalPodAutoscaler"
SCALED_OBJECT = "ScaledObject"

FLOORS: dict[str, FloorKind] = {entry.kind: entry for entry in (
    # First: KEDA makes an HPA for each ScaledObject (keda-hpa-<name>) and reconciles it back to
    # the ScaledObject's minReplicaCount, so the ScaledObject's floor is the one to raise.
    FloorKind(SCALED_OBJECT, "keda.sh", "v1alpha1", "scaledobjects", "minReplicaCount", "maxReplicaCount",
              default_floor=0, default_ceiling=100, default_target_kind="Deployment",
              api="CustomObjectsApi", list="list_namespaced_custom_object", patch="patch_namespaced_custom_object",
              option="keda", pause_annotations=("autoscaling.keda.sh/paused-replicas", "autoscaling.keda.sh/paused")),
    FloorKind(HPA, "autoscaling", "v2", "horizontalpodautoscalers", "minReplicas", "maxReplicas",
              default_floor=1, default_ceiling=None, default_target_kind="",
              api="AutoscalingV2Api", list="list_namespaced_horizontal_pod_autoscaler",
              patch="patch_namespaced_horizontal_pod_autoscaler"),
)}
"""In the order a workload's floor owner is looked for: the first kind with an object scaling it."""


def floor_names() -> str:
    """``minReplicaCount of ScaledObjects, minReplicas of HorizontalPodAutoscalers``, for messages."""
    return ", ".join(f"{entry.field} of {entry.kind}s" for entry in FLOORS.values())


@dataclasses.dataclass(frozen=True)
class DeferrableKind:
    """A kind ``spec.defer`` acts on (``domain.deferral.KINDS`` says what deferring it means): how
    the API lists, reads and patches it. Every call is the generic custom-objects one, by group,
    version and plural, so that one code path serves built-in and custom kinds alike."""

    kind: str
    group: str
    version: str
    resource: str
    """The API resource, as RBAC names it."""
    option: str | None = None
    """The operator option that turns the kind on (``--keda``); None: always on."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


DEFERRABLES: dict[str, DeferrableKind] = {entry.kind: entry for entry in (
    DeferrableKind("Deployment", "apps", "v1", "deployments"),
    DeferrableKind("StatefulSet", "apps", "v1", "statefulsets"),
    DeferrableKind("CronJob", "batch", "v1", "cronjobs"),
    DeferrableKind("Job", "batch", "v1", "jobs"),
    DeferrableKind(SCALED_OBJECT, "keda.sh", "v1alpha1", "scaledobjects", option="keda"),
)}
"""One entry per kind in ``domain.deferral.KINDS`` (``tests/chart/test_target_kinds.py`` checks both agree)."""
