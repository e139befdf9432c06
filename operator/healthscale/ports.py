"""The contracts between the reconcile service and the outside world.

The service (``healthscale.service``) talks to Prometheus and the API server only through the
Protocols here; ``healthscale.runtime`` wires in the adapters (``healthscale.adapters``), and unit
tests wire in in-memory fakes. The adapters raise only the errors defined here, so that every
failure reaching the service has a reason a user can read in status:

- ``MetricsError`` with ``reason`` one of ``METRICS_REASONS``;
- ``NotFound`` for a workload, HPA, ScaledObject or object that is not there;
- ``ApiError`` for anything else the API server refused or did not answer, with ``status`` (HTTP
  code, 0 for a timeout or connection failure) and ``retryable``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from healthscale.domain import deferral, residency

MetricsReason = Literal["PrometheusUnavailable", "InvalidQuery", "BadResponse"]
METRICS_REASONS: tuple[MetricsReason, ...] = ("PrometheusUnavailable", "InvalidQuery", "BadResponse")
"""PrometheusUnavailable: unreachable, timed out, 5xx or circuit open. InvalidQuery: Prometheus
refused the PromQL (400/422) or it returned the wrong shape (not exactly one series where one is
needed, a scalar or string result). BadResponse: a 2xx answer that is not Prometheus' JSON."""


class MetricsError(Exception):
    """A Prometheus read that gave no usable answer, and why."""

    def __init__(self, reason: MetricsReason, message: str) -> None:
        super().__init__(message)
        self.reason: MetricsReason = reason


class NotFound(Exception):
    """The object named does not exist (HTTP 404)."""


class ApiError(Exception):
    """The API server refused or failed a request; ``retryable`` says whether to try again."""

    def __init__(self, message: str, retryable: bool, status: int = 0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        """HTTP status; 0 when the server did not answer (timeout, connection refused)."""


Samples = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""One series: epoch seconds and values (NaN, +Inf and -Inf kept as Prometheus sent them)."""


class Metrics(Protocol):
    """Prometheus, as the service reads it. Every method raises only ``MetricsError``."""

    def range(self, query: str, start: int, end: int, step: int) -> list[Samples]:
        """Every series the query returns over ``[start, end]`` at ``step``."""
        ...

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        """The query's series now: (labels, value)."""
        ...

    def label_values(self, label: str, selector: str, start: int, end: int) -> list[str]:
        """The values ``label`` takes on the series ``selector`` matches within ``[start, end]``
        (e.g. a histogram's bucket boundaries, ``le``)."""
        ...


Field = Literal["replicas", "minReplicas", "minReplicaCount"]
"""The one field healthscale writes on an object: a workload's ``replicas``, or the floor of the
autoscaler that scales it (an HPA's ``minReplicas``, a KEDA ScaledObject's ``minReplicaCount``)."""


@dataclasses.dataclass(frozen=True)
class Floor:
    """The autoscaler object that scales the workload (an HPA or a KEDA ScaledObject): healthscale
    raises its floor instead of the workload's replicas, which are the autoscaler's to set."""

    name: str
    uid: str
    min_replicas: int
    """The floor now (``minReplicas``, ``minReplicaCount``)."""
    max_replicas: int
    """Its ceiling: the floor is never written above it."""
    kind: str = "HorizontalPodAutoscaler"
    field: Field = "minReplicas"
    hands_off: str | None = None
    """Why healthscale must leave this floor as it is (its owner paused it, or another object
    controls it); None: healthscale may raise it."""


@dataclasses.dataclass(frozen=True)
class Target:
    """The workload as it is now."""

    kind: str
    name: str
    uid: str
    replicas: int
    ready_replicas: int
    selector: str | None
    """The workload's own pod selector as a label-selector string (matchLabels and
    matchExpressions); None when it selects nothing healthscale can express, so that no step
    ever lists a whole namespace by mistake."""
    floor: Floor | None
    """The HPA or ScaledObject that scales it, if any."""


@dataclasses.dataclass(frozen=True)
class Written:
    """The value now in one field of one exact object, as returned by a write or a read."""

    kind: str
    name: str
    uid: str
    value: int


class Workloads(Protocol):
    """Deployments, StatefulSets, the HPAs and ScaledObjects that scale them, and their pods. Raises
    ``NotFound`` or ``ApiError`` only."""

    def read(self, namespace: str, kind: str, name: str) -> Target: ...

    def read_field(self, namespace: str, kind: str, name: str, field: Field) -> Written:
        """``replicas`` of a Deployment/StatefulSet or the floor of an HPA/ScaledObject, with its uid."""
        ...

    def write_field(self, namespace: str, kind: str, name: str, uid: str, field: Field, value: int) -> None:
        """Set the field on the object with exactly this uid; a re-created object (another uid)
        is not written (``NotFound``)."""
        ...

    def pods(self, namespace: str, selector: str) -> list[str]: ...

    def set_deletion_costs(self, namespace: str, costs: dict[str, int]) -> None: ...


class Records(Protocol):
    """Where the service writes what it is about to change before it changes it: the
    ClinicalSLO's ``status.originals``, written ahead of the workload write so that an operator
    killed between the two still knows what to restore."""

    def save_originals(self, namespace: str, name: str, originals: list[dict[str, Any]]) -> None: ...


class RuleObjects(Protocol):
    """PrometheusRule objects (Prometheus Operator), healthscale's own. Raises ``ApiError`` only."""

    def available(self) -> bool:
        """False while the API server is known not to serve PrometheusRules (monitoring.coreos.com/v1)."""
        ...

    def apply(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create or update the PrometheusRule ``body`` (healthscale's fields); False when the API
        server serves no PrometheusRules."""
        ...

    def delete(self, namespace: str, name: str) -> None:
        """Delete healthscale's PrometheusRule of that name; one that is not there is no error."""
        ...


@dataclasses.dataclass(frozen=True)
class Room:
    """The placeholder Deployment as the API server answered a write."""

    ready_replicas: int
    failure: str | None = None
    """Why its pods cannot be created (the Deployment's ReplicaFailure condition), if they cannot."""


class Placeholders(Protocol):
    """healthscale's placeholder Deployments (node room, ``service.room``). Raises ``NotFound`` or
    ``ApiError`` only."""

    def pod_spec(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        """The target workload's pod template spec (camelCase)."""
        ...

    def apply(self, namespace: str, body: dict[str, Any]) -> Room:
        """Create or update the Deployment ``body`` (healthscale's fields)."""
        ...

    def delete(self, namespace: str, name: str) -> None:
        """Delete the Deployment of that name; one that is not there is no error."""
        ...


@dataclasses.dataclass(frozen=True)
class Template:
    """The parts of a workload's pod template that residency reads."""

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


class Placement(Protocol):
    """What residency needs from the cluster (``adapters.placement.Placement``)."""

    def read_template(self, namespace: str, kind: str, name: str) -> Template: ...

    def write_required_affinity(self, namespace: str, template: Template, required: dict[str, Any] | None,
                                owned: residency.Policy | None) -> None: ...

    def pods(self, namespace: str, selector: str) -> list[residency.Pod]: ...

    def nodes(self) -> dict[str, dict[str, str]]: ...

    def evict(self, namespace: str, pod: str) -> Eviction: ...

    def namespace_metadata(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """A namespace's labels and annotations (its residency opt-in and allowed regions)."""
        ...


class NamespaceAudit(Protocol):
    """What the namespace residency audit reads (``adapters.audit.Audit``)."""

    def enforced_namespaces(self) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        """Namespaces labelled healthscale.io/residency=enforced: name -> (labels, annotations)."""
        ...

    def namespace_pods(self, namespace: str) -> list[residency.Pod]:
        """Every pod of the namespace, with its data-class label and uid."""
        ...

    def nodes(self) -> dict[str, dict[str, str]]: ...


@dataclasses.dataclass(frozen=True)
class Involved:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


class Deferrables(Protocol):
    """What deferring non-critical work reads and writes (``adapters.deferrables``).

    Reads raise ``ApiError`` (never a partial answer); ``write`` raises ``NotFound`` when the object
    is gone or re-created, and ``ApiError`` with status 409 when the field no longer holds the value
    the plan expected (someone else changed it: nothing was written)."""

    def schedules(self) -> list[dict[str, Any]]:
        """Every SurgeSchedule the operator serves, as JSON."""
        ...

    def clinical_slos(self, namespace: str) -> list[dict[str, Any]]:
        """Every ClinicalSLO in the namespace, as JSON (their spec.targetRef, criticality, mode, status)."""
        ...

    def selected(self, namespace: str, selector: str, kinds: tuple[str, ...]) -> list[deferral.Workload]:
        """The objects of these kinds the label selector matches."""
        ...

    def read(self, namespace: str, kind: str, name: str) -> deferral.Workload | None:
        """One object by name; None when there is none."""
        ...

    def write(self, namespace: str, write: deferral.Write) -> None:
        """Set one field of the object with exactly ``write.uid`` if it still holds ``write.expected``."""
        ...

    def save_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge these (camelCase) fields into the SurgeSchedule's status; NotFound when it is gone."""
        ...

    def set_finalizer(self, namespace: str, name: str, uid: str, present: bool) -> None:
        """Add or remove healthscale's deferral finalizer on the SurgeSchedule with this uid."""
        ...

    def post_event(self, involved: Involved, type_: str, reason: str, message: str) -> None: ...
