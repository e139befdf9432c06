"""The placeholder Deployment that holds node room for a ClinicalSLO (``domain.warmup``).

Its pods ask the scheduler for exactly what one of the target's pods asks for, where the target's
pods may go: the same resource requests (the larger of the containers' sum and any init
container, as the scheduler counts them), node selector, node affinity, tolerations and topology
spread. Residency is added on top from the ClinicalSLO itself, so room never appears outside the
allowed regions even before the target's template carries the requirement. They run at a negative
priority, so a real replica preempts one at once, and they carry none of the target's labels: no
Service sends them traffic and no controller of the target counts them. Pod affinity and
anti-affinity are left out (their selectors name the target's pods, not the placeholders).

Pure: the target's pod template spec in, the Deployment body (camelCase) out.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Mapping
from typing import Any

from healthscale.domain import residency

SUFFIX = "-room"
NAME_LIMIT = 63
"""Kept to a label value's length: the name is also the placeholders' ``healthscale.io/room-for`` label."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "healthscale", "app.kubernetes.io/component": "node-room"}
ROOM_FOR = "healthscale.io/room-for"
CONTAINER = "room"
COPIED = ("nodeSelector", "tolerations")
"""Pod spec fields copied as they are."""


def name(clinicalslo: str) -> str:
    """``<clinicalslo>-room``; a long name is shortened with a digest so that it stays unique."""
    full = f"{clinicalslo}{SUFFIX}"
    if len(full) <= NAME_LIMIT:
        return full
    digest = hashlib.sha256(clinicalslo.encode()).hexdigest()[:8]
    return f"{clinicalslo[:NAME_LIMIT - len(SUFFIX) - 9].rstrip('-.')}-{digest}{SUFFIX}"


def requests(pod_spec: Mapping[str, Any]) -> dict[str, str]:
    """What one pod asks the scheduler for, resource by resource. Containers' requests add up; an
    init container asking for more of one resource than all containers together sets it (the
    scheduler's rule). A single request is kept as written. ValueError for an unreadable quantity."""
    sums: dict[str, list[str]] = {}
    for container in pod_spec.get("containers") or []:
        for resource, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            sums.setdefault(str(resource), []).append(str(quantity))
    result = {resource: _add(quantities) for resource, quantities in sums.items()}
    for container in pod_spec.get("initContainers") or []:
        for resource, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
            current = result.get(str(resource))
            if current is None or parse(str(quantity)) > parse(current):
                result[str(resource)] = str(quantity)
    return result


_SUFFIXES = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}


def parse(quantity: str) -> float:
    """A Kubernetes quantity as a number (``500m`` -> 0.5, ``1Gi`` -> 1073741824); ValueError if unreadable."""
    text = quantity.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(text)


def _add(quantities: list[str]) -> str:
    """The sum of quantities: whole units when it is whole (bytes: ``402653184``), else milli-units
    rounded up (``1500m``), so that a placeholder never asks for less than the pod it stands for."""
    if len(quantities) == 1:
        return quantities[0]
    total = sum(parse(quantity) for quantity in quantities)
    if abs(total - round(total)) < 1e-9:
        return str(round(total))
    return f"{math.ceil(round(total * 1000, 6))}m"


def _spread(constraints: Any, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """The target's topology spread, counting placeholders among themselves."""
    spread = []
    for constraint in constraints or []:
        copied = {key: copy.deepcopy(value) for key, value in dict(constraint).items()
                  if key not in ("labelSelector", "matchLabelKeys")}
        copied["labelSelector"] = {"matchLabels": dict(labels)}
        spread.append(copied)
    return spread


def deployment(clinicalslo: str, clinicalslo_uid: str, target_pod_spec: Mapping[str, Any], replicas: int,
               image: str, priority_class: str, regions: residency.Policy | None) -> dict[str, Any]:
    """The placeholder Deployment for ``clinicalslo`` with ``replicas`` pods, owned by it."""
    deployment_name = name(clinicalslo)
    labels = {**MANAGED_BY, ROOM_FOR: deployment_name}
    pod: dict[str, Any] = {
        "priorityClassName": priority_class,
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "runAsGroup": 65535,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
            "resources": {"requests": requests(target_pod_spec)},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }],
    }
    for field in COPIED:
        if target_pod_spec.get(field):
            pod[field] = copy.deepcopy(target_pod_spec[field])
    target_node_affinity = (target_pod_spec.get("affinity") or {}).get("nodeAffinity")
    merged = residency.merge({"nodeAffinity": target_node_affinity} if target_node_affinity else None, regions)
    if merged:
        pod["affinity"] = {"nodeAffinity": merged["nodeAffinity"]}
    spread = _spread(target_pod_spec.get("topologySpreadConstraints"), labels)
    if spread:
        pod["topologySpreadConstraints"] = spread
    metadata: dict[str, Any] = {"name": deployment_name, "labels": dict(labels)}
    if clinicalslo_uid:
        metadata["ownerReferences"] = [{
            "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "name": clinicalslo,
            "uid": clinicalslo_uid, "controller": True, "blockOwnerDeletion": False}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            # Placeholders are interchangeable: replace them all at once, never surge extra room.
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
