"""The workload kinds healthscale scales, in one table: how the API reads each one, scales it and
patches its pod template.

Adding a kind is one entry here, its name in ``clinicalslo.TargetRef.kind``, and its RBAC (the
chart's ``_rbac.tpl`` and ``tests/chart``'s ``CLIENT_CALLS``); ``tests/chart/test_target_kinds.py``
checks that the four agree. HPAs are not targets: they are found by the workload they scale
(``adapters.kube.Workloads``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import kubernetes


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
