"""An in-memory fake of ``ports.Deferrables`` and builders of the bodies the API server returns, for
``test_deferral_service.py``.

The fake plays the API server for one namespace: one SurgeSchedule (its status merged as a JSON
merge patch, its finalizers), the ClinicalSLOs and the deferrable objects. ``calls`` records every
call in order (``save``, ``write Deployment/reports replicas=0``, ``finalizer +``, ...) so that
tests can assert the order that makes deferral safe to interrupt. Faults are injected per call.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

from healthscale import ports
from healthscale.api import surgeschedule
from healthscale.domain import deferral

UTC = dt.timezone.utc
NAMESPACE = "ehr"
SCHEDULE = "flu-clinic"
SCHEDULE_UID = "schedule-uid-1"
SURGE = "flu-clinic-day"
LABELS = {"healthscale.io/deferrable": "true"}
Value = surgeschedule.DeferredValue

NOW = dt.datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
"""Inside the 1h lead time of the 08:00-12:00 surge (so deferral is in force)."""
LATER = NOW + dt.timedelta(minutes=30)
"""Still inside the window."""
AFTER = dt.datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
"""The window's end (exclusive): deferral is no longer in force."""
BEFORE = dt.datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
"""Hours before the lead time opens."""


def stamp(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------ builders


def schedule_body(*, defer: dict[str, Any] | None = None, with_defer: bool = True,
                  status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A SurgeSchedule as the API server returns it: one dated surge 08:00-12:00 UTC with a 1h lead
    time, selecting ClinicalSLO ``ed-triage``, deferring what carries ``LABELS`` (by default)."""
    spec: dict[str, Any] = {
        "timezone": "UTC",
        "sloRefs": ["ed-triage"],
        "surges": [{"name": SURGE, "start": "2026-12-01T08:00", "end": "2026-12-01T12:00", "leadTime": "1h",
                    "minReplicas": 6}],
    }
    if with_defer:
        spec["defer"] = defer if defer is not None else {"selector": {"matchLabels": dict(LABELS)}}
    return {
        "apiVersion": "healthscale.io/v1alpha1",
        "kind": "SurgeSchedule",
        "metadata": {"name": SCHEDULE, "namespace": NAMESPACE, "uid": SCHEDULE_UID, "generation": 1,
                     "resourceVersion": "100"},
        "spec": spec,
        "status": status if status is not None else {},
    }


def slo_body(name: str = "ed-triage", *, target: str = "ehr-api", kind: str = "Deployment",
             mode: str = "Active", criticality: str = "standard", valid: bool = True,
             conditions: list[dict[str, Any]] | None = None,
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A ClinicalSLO as the API server returns it; ``valid=False`` leaves out spec.indicators and
    spec.capacity (a spec the operator cannot parse, whose targetRef still names a target)."""
    spec: dict[str, Any] = {
        "journey": "Open patient chart from ED triage",
        "criticality": criticality,
        "targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
        "mode": mode,
        "scaleDown": {"stabilizationSeconds": 600},
    }
    if valid:
        spec["indicators"] = {"demand": 'sum(rate(http_requests_total{service="ehr-api"}[5m]))'}
        spec["capacity"] = {"perReplica": 40, "minReplicas": 2, "maxReplicas": 60}
    return {
        "apiVersion": "healthscale.io/v1alpha1",
        "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"slo-{name}", "generation": 1,
                     "labels": labels or {}},
        "spec": spec,
        "status": {"conditions": conditions or []},
    }


def burning(condition: str = "LatencyObjectiveMet", reason: str = "FastBurn") -> list[dict[str, Any]]:
    """Conditions of a ClinicalSLO whose objective burns its error budget fast."""
    return [{"type": condition, "status": "False", "reason": reason, "message": "burn-rate pair fires"}]


def workload(kind: str = "Deployment", name: str = "reports", uid: str = "", *, labels: dict[str, str] | None = None,
             **fields: Any) -> deferral.Workload:
    """An object as ``Deferrables.selected`` returns it (a Deployment at 4 replicas by default)."""
    value: dict[str, Any] = {key: fields.pop(key) for key in ("replicas", "suspend", "paused_replicas")
                             if key in fields}
    if not value:
        defaults: dict[str, dict[str, Any]] = {"Deployment": {"replicas": 4}, "StatefulSet": {"replicas": 4},
                                               "CronJob": {"suspend": False}, "Job": {"suspend": False}}
        value = defaults.get(kind, {})
    return deferral.Workload(kind, name, uid or f"uid-{kind.lower()}-{name}", Value(**value),
                             dict(LABELS if labels is None else labels), **fields)


def refused(status: int) -> ports.ApiError:
    """What the adapter raises for an HTTP status (0: no answer)."""
    if status == 0:
        return ports.ApiError("write timed out after 10s", retryable=True, status=0)
    return ports.ApiError(f"HTTP {status}", retryable=status in (409, 429) or status >= 500, status=status)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386): None removes a key, objects merge, everything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


# ---------------------------------------------------------------------------------------- the fake


@dataclasses.dataclass
class FakeDeferrables:
    """The API server of one namespace, as ``ports.Deferrables`` sees it.

    Faults: ``read_faults`` maps a read (``clinical_slos``, ``selected``, ``read``) to the error it
    raises; ``save_faults`` and ``finalizer_faults`` are consumed one per call (None lets that call
    through); ``write_faults`` maps an object's name to errors consumed one per write of it.
    ``write`` honours the uid precondition (``NotFound``) and the test-and-set (409)."""

    schedule: dict[str, Any] = dataclasses.field(default_factory=schedule_body)
    objects: dict[tuple[str, str], deferral.Workload] = dataclasses.field(default_factory=dict)
    slos: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    calls: list[str] = dataclasses.field(default_factory=list)
    saves: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Every status merge patch that was accepted, in order."""
    writes: list[tuple[str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    """Every write that was applied: (kind, name, the field's wire value)."""
    read_faults: dict[str, Exception] = dataclasses.field(default_factory=dict)
    save_faults: list[Exception | None] = dataclasses.field(default_factory=list)
    write_faults: dict[str, list[Exception | None]] = dataclasses.field(default_factory=dict)
    finalizer_faults: list[Exception | None] = dataclasses.field(default_factory=list)

    # arranging the world
    def add(self, *items: deferral.Workload) -> None:
        for item in items:
            self.objects[(item.kind, item.name)] = item

    def set(self, kind: str, name: str, **changes: Any) -> None:
        """Change an object as someone else would (its value, labels, ...)."""
        found = self.objects[(kind, name)]
        if "value" in changes:
            changes["current"] = changes.pop("value")
        self.objects[(kind, name)] = dataclasses.replace(found, **changes)

    def value(self, kind: str, name: str) -> Value:
        return self.objects[(kind, name)].current

    def delete_schedule(self) -> None:
        self.schedule["metadata"]["deletionTimestamp"] = "2026-12-01T07:40:00Z"

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.schedule.setdefault("status", {})
        return status

    @property
    def finalizers(self) -> list[str]:
        return list(self.schedule["metadata"].get("finalizers") or [])

    def body(self) -> dict[str, Any]:
        """The SurgeSchedule as the next cycle reads it."""
        return copy.deepcopy(self.schedule)

    def effects(self) -> list[str]:
        """The calls that change something (saves, writes, finalizer changes), in order."""
        return [call for call in self.calls if call.split(" ")[0] in ("save", "write", "finalizer")]

    def _read(self, call: str) -> None:
        self.calls.append(call)
        fault = self.read_faults.get(call.split(" ")[0])
        if fault is not None:
            raise fault

    # the port
    def schedules(self) -> list[dict[str, Any]]:
        self.calls.append("schedules")
        return [self.body()]

    def clinical_slos(self, namespace: str) -> list[dict[str, Any]]:
        assert namespace == NAMESPACE
        self._read("clinical_slos")
        return copy.deepcopy(self.slos)

    def selected(self, namespace: str, selector: str, kinds: tuple[str, ...]) -> list[deferral.Workload]:
        assert namespace == NAMESPACE
        self._read(f"selected {selector}")
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [item for item in self.objects.values()
                if item.kind in kinds and all(item.labels.get(key) == value for key, value in wanted.items())]

    def read(self, namespace: str, kind: str, name: str) -> deferral.Workload | None:
        assert namespace == NAMESPACE
        self._read(f"read {kind}/{name}")
        return self.objects.get((kind, name))

    def write(self, namespace: str, write: deferral.Write) -> None:
        assert namespace == NAMESPACE
        shown = write.value.wire().get(write.field)
        self.calls.append(f"write {write.kind}/{write.name} {write.field}={shown}")
        faults = self.write_faults.get(write.name)
        if faults:
            fault = faults.pop(0)
            if fault is not None:
                raise fault
        found = self.objects.get((write.kind, write.name))
        if found is None or found.uid != write.uid:
            raise ports.NotFound(f"{write.kind} {namespace}/{write.name} with uid {write.uid} not found")
        rule = deferral.KINDS[write.kind]
        if not rule.same(found.current, write.expected):
            raise ports.ApiError(f"HTTP 409: {write.field} is not {write.expected.wire()}", retryable=True, status=409)
        self.objects[(write.kind, write.name)] = dataclasses.replace(found, current=write.value)
        self.writes.append((write.kind, write.name, write.value.wire()))

    def save_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        assert (namespace, name) == (NAMESPACE, SCHEDULE)
        self.calls.append("save")
        if self.save_faults:
            fault = self.save_faults.pop(0)
            if fault is not None:
                raise fault
        self.saves.append(copy.deepcopy(status))
        _merge(self.status, status)

    def set_finalizer(self, namespace: str, name: str, uid: str, present: bool) -> None:
        assert (namespace, name, uid) == (NAMESPACE, SCHEDULE, SCHEDULE_UID)
        self.calls.append("finalizer +" if present else "finalizer -")
        if self.finalizer_faults:
            fault = self.finalizer_faults.pop(0)
            if fault is not None:
                raise fault
        metadata = self.schedule["metadata"]
        kept = [item for item in metadata.get("finalizers") or [] if item != "healthscale.io/restore-deferred"]
        metadata["finalizers"] = kept + ["healthscale.io/restore-deferred"] if present else kept

    def post_event(self, involved: ports.Involved, type_: str, reason: str, message: str) -> None:
        self.calls.append(f"event {reason}")
