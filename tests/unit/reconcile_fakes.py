"""In-memory fakes of the reconcile's ports (``healthscale.ports``) and a harness that drives cycles.

Shared by ``test_reconcile_faults.py`` (one test per fault) and ``test_reconcile_properties.py``
(hypothesis sequences of cycles and faults). The harness does what the runtime does between
cycles: it writes each cycle's status (here: keeps it as the next cycle's ``previous``), and on a
restart it starts from a fresh ``cycle.Memory`` and whatever status the API server holds, which
may be only what ``Records.save_originals`` persisted if the operator died before its status write.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from healthscale import ports
from healthscale.api import clinicalslo, manifests, surgeschedule
from healthscale.domain import selectors
from healthscale.service import cycle

NAMESPACE = "ehr"
SLO_NAME = "chart"
NOW = 1_780_000_200
"""2026-05-28T20:30:00Z, a Thursday; inside the example surge window below."""
DEMAND = 'sum(rate(http_requests_total{service="ehr-api"}[5m]))'
ERRORS = 'sum(rate(http_requests_total{service="ehr-api",code=~"5.."}[5m]))'
POD_LOAD = 'sum by (pod) (rate(http_requests_total{service="ehr-api"}[1m]))'
PER_REPLICA = 40.0
HPA = "HorizontalPodAutoscaler"


def at(minutes: float) -> int:
    """The epoch ``minutes`` after NOW."""
    return NOW + int(minutes * 60)


# ------------------------------------------------------------------------------------ builders


def slo(target: str = "ehr-api", *, mode: str = "Active", min_replicas: int = 2, max_replicas: int = 60,
        pod_load: bool = False, burn: bool = False, kind: str = "Deployment") -> clinicalslo.ClinicalSLO:
    """A ClinicalSLO ``chart`` in ``ehr``: 40 requests/s per replica, 10% headroom, 5m steps, a
    2-day history, a 1-hour horizon and the seasonal-naive model (quick to fit)."""
    indicators: dict[str, Any] = {"demand": DEMAND}
    if pod_load:
        indicators["podLoad"] = POD_LOAD
    if burn:
        indicators["errors"], indicators["total"] = ERRORS, DEMAND
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": SLO_NAME, "namespace": NAMESPACE, "generation": 1},
        "spec": {
            "journey": "Open patient chart from ED triage",
            "targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "mode": mode,
            "indicators": indicators,
            "capacity": {"perReplica": PER_REPLICA, "minReplicas": min_replicas, "maxReplicas": max_replicas,
                         "startupSeconds": 60, "headroomPercent": 10},
            "forecast": {"history": "2d", "step": "5m", "horizon": "1h", "model": "seasonal-naive"},
            "scaleDown": {"stabilizationSeconds": 600, "maxStepPercent": 25},
        },
    })


def schedule(name: str = "vaccination-drive", *, floor: int = 20, start: str = "2026-05-28T20:00",
             end: str = "2026-05-28T23:00", timezone: str = "UTC") -> surgeschedule.SurgeSchedule:
    """A SurgeSchedule selecting ``chart`` with one dated surge (in effect at NOW by default)."""
    return manifests.parse(surgeschedule.SurgeSchedule, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "SurgeSchedule",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
        "spec": {"timezone": timezone, "sloRefs": [SLO_NAME],
                 "surges": [{"name": name, "start": start, "end": end, "minReplicas": floor}]},
    })


SURGE_20 = schedule()
"""A surge floor of 20 from 20:00 to 23:00 UTC on 2026-05-28 (NOW is 20:30)."""
SURGE_OVER = at(150 + 10)
"""Ten minutes after the surge (and its lookahead) has ended."""


# ---------------------------------------------------------------------------------------- fakes


class Log(list[str]):
    """Every call any fake received, in order: ``metrics.range``, ``write Deployment/ehr-api``, ..."""


@dataclasses.dataclass
class FakeClock:
    """Seconds for the cycle's time budget; the fakes advance it to play a slow Prometheus."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class FakeMetrics:
    """Prometheus with canned answers: a flat demand ``level`` on every step up to ``newest``.

    ``fault`` is raised by every call (``MetricsError`` as the adapter raises it); ``series``
    copies of the demand series are returned (2 is a query that was not aggregated); ``infinite``
    puts +Inf in the newest sample; ``slow`` seconds pass on ``clock`` during each range read."""

    log: Log
    clock: FakeClock
    level: float = 60.0
    newest: int | None = None
    fault: ports.MetricsError | None = None
    series: int = 1
    infinite: bool = False
    slow: float = 0.0
    loads: dict[str, float] = dataclasses.field(default_factory=dict)

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        self.log.append("metrics.range")
        self.clock.now += self.slow
        if self.fault is not None:
            raise self.fault
        last = end if self.newest is None else min(end, self.newest)
        times = np.arange(start, last + 1, step, dtype=np.float64)
        values = np.full(times.shape[0], self.level)
        if self.infinite and values.size:
            values[-1] = np.inf
        return [(times.copy(), values.copy()) for _ in range(self.series)]

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        self.log.append("metrics.instant")
        if self.fault is not None:
            raise self.fault
        if query == POD_LOAD:
            return [({"pod": pod}, load) for pod, load in self.loads.items()]
        return []  # no burn-rate data: the SLO's error budget is unknown, never an exception


@dataclasses.dataclass
class Object:
    """One Deployment, StatefulSet or HPA: ``value`` is its replicas or, for an HPA, its minReplicas."""

    kind: str
    name: str
    uid: str
    value: int
    selector: dict[str, Any] | None = None
    max_replicas: int = 0
    target: tuple[str, str] | None = None
    """For an HPA: the (kind, name) it scales."""

    @property
    def field(self) -> ports.Field:
        return "minReplicas" if self.kind == HPA else "replicas"


@dataclasses.dataclass(frozen=True)
class Write:
    kind: str
    name: str
    uid: str
    field: str
    value: int


APP_SELECTOR = {"matchLabels": {"app": "ehr-api"}}


@dataclasses.dataclass
class FakeWorkloads:
    """Deployments, StatefulSets and HPAs by name, with uids.

    ``write_field`` honours the uid precondition (``NotFound`` for a re-created object) and the
    API server's HPA validation (422 for minReplicas above maxReplicas); every successful write is
    recorded in ``writes``, in order. ``refuse`` holds errors to raise, one per call, on the next
    write_field calls (None lets that call through); ``refuse_reads`` does the same for ``read``."""

    log: Log
    objects: dict[tuple[str, str], Object] = dataclasses.field(default_factory=dict)
    writes: list[Write] = dataclasses.field(default_factory=list)
    refuse: list[Exception | None] = dataclasses.field(default_factory=list)
    refuse_reads: list[Exception | None] = dataclasses.field(default_factory=list)
    pod_names: tuple[str, ...] = ("ehr-api-0", "ehr-api-1")
    pod_queries: list[str] = dataclasses.field(default_factory=list)
    deletion_costs: list[dict[str, int]] = dataclasses.field(default_factory=list)
    _uids: int = 0

    def _uid(self) -> str:
        self._uids += 1
        return f"uid-{self._uids}"

    # arranging the world
    def deployment(self, name: str, replicas: int, *, kind: str = "Deployment",
                   selector: dict[str, Any] | None = None) -> Object:
        made = Object(kind, name, self._uid(), replicas, copy.deepcopy(APP_SELECTOR if selector is None else selector))
        self.objects[(kind, name)] = made
        return made

    def hpa(self, name: str, min_replicas: int, max_replicas: int = 30, *, target: str = "ehr-api",
            kind: str = "Deployment") -> Object:
        made = Object(HPA, name, self._uid(), min_replicas, max_replicas=max_replicas, target=(kind, target))
        self.objects[(HPA, name)] = made
        return made

    def delete(self, kind: str, name: str) -> None:
        del self.objects[(kind, name)]

    def get(self, kind: str, name: str) -> Object:
        return self.objects[(kind, name)]

    def value(self, kind: str, name: str) -> int:
        return self.objects[(kind, name)].value

    def hpa_of(self, kind: str, name: str) -> Object | None:
        return next((item for item in self.objects.values() if item.kind == HPA and item.target == (kind, name)), None)

    def writes_to(self, kind: str, name: str) -> list[int]:
        return [write.value for write in self.writes if (write.kind, write.name) == (kind, name)]

    # the port
    def read(self, namespace: str, kind: str, name: str) -> ports.Target:
        self.log.append(f"workloads.read {kind}/{name}")
        if self.refuse_reads:
            error = self.refuse_reads.pop(0)
            if error is not None:
                raise error
        found = self.objects.get((kind, name))
        if found is None:
            raise ports.NotFound(f"{kind} {namespace}/{name} not found")
        hpa = self.hpa_of(kind, name)
        return ports.Target(
            kind=kind, name=name, uid=found.uid, replicas=found.value, ready_replicas=found.value,
            selector=selectors.label_selector(found.selector),
            floor=ports.Floor(hpa.name, hpa.uid, hpa.value, hpa.max_replicas) if hpa is not None else None)

    def read_field(self, namespace: str, kind: str, name: str, field: ports.Field) -> ports.Written:
        self.log.append(f"workloads.read_field {kind}/{name}")
        found = self.objects.get((kind, name))
        if found is None:
            raise ports.NotFound(f"{kind} {namespace}/{name} not found")
        return ports.Written(kind, name, found.uid, found.value)

    def write_field(self, namespace: str, kind: str, name: str, uid: str, field: ports.Field, value: int) -> None:
        self.log.append(f"workloads.write {kind}/{name}")
        if self.refuse:
            error = self.refuse.pop(0)
            if error is not None:
                raise error
        found = self.objects.get((kind, name))
        if found is None or (uid and uid != found.uid):
            raise ports.NotFound(f"{kind} {namespace}/{name} with uid {uid} not found")
        assert field == found.field, f"wrote {field} of {kind} {name}"
        if kind == HPA and value > found.max_replicas:
            raise ports.ApiError(f"HTTP 422: minReplicas {value} above maxReplicas {found.max_replicas}",
                                 retryable=False, status=422)
        found.value = value
        self.writes.append(Write(kind, name, found.uid, field, value))

    def pods(self, namespace: str, selector: str) -> list[str]:
        self.log.append("workloads.pods")
        self.pod_queries.append(selector)
        return list(self.pod_names)

    def set_deletion_costs(self, namespace: str, costs: dict[str, int]) -> None:
        self.log.append("workloads.set_deletion_costs")
        self.deletion_costs.append(dict(costs))


@dataclasses.dataclass
class FakeRecords:
    """The ClinicalSLO's persisted ``status.originals``, as the API server holds them.

    ``save_originals`` (the service, before a workload write) and the runtime's status write after
    each cycle (``Harness.cycle_at``) both replace it. ``fault`` is raised by save_originals."""

    log: Log
    saved: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    fault: Exception | None = None
    saves: int = 0

    def save_originals(self, namespace: str, name: str, originals: list[dict[str, Any]]) -> None:
        self.log.append("records.save_originals")
        if self.fault is not None:
            raise self.fault
        assert (namespace, name) == (NAMESPACE, SLO_NAME)
        self.saves += 1
        self.saved = copy.deepcopy(originals)

    def status(self) -> clinicalslo.ClinicalSLOStatus:
        """The status a restarted operator reads back: only the originals are known to be there."""
        return clinicalslo.ClinicalSLOStatus.model_validate({"originals": copy.deepcopy(self.saved)})


# -------------------------------------------------------------------------------------- harness


@dataclasses.dataclass
class Harness:
    """One ClinicalSLO's world and operator: the fakes, the cycle memory and the status written."""

    resource: clinicalslo.ClinicalSLO = dataclasses.field(default_factory=slo)
    schedules: tuple[surgeschedule.SurgeSchedule, ...] = (SURGE_20,)
    log: Log = dataclasses.field(default_factory=Log)
    clock: FakeClock = dataclasses.field(default_factory=FakeClock)
    memory: cycle.Memory = dataclasses.field(default_factory=cycle.Memory)
    status: clinicalslo.ClinicalSLOStatus = dataclasses.field(default_factory=clinicalslo.ClinicalSLOStatus)
    """The status as the API server holds it: the next cycle's ``previous``."""
    results: list[cycle.Result] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = FakeMetrics(self.log, self.clock)
        self.workloads = FakeWorkloads(self.log)
        self.records = FakeRecords(self.log)

    @property
    def ports(self) -> cycle.Ports:
        return cycle.Ports(self.metrics, self.workloads, self.records, self.clock)

    @property
    def result(self) -> cycle.Result:
        return self.results[-1]

    def cycle_at(self, minutes: float = 0, *, resource: clinicalslo.ClinicalSLO | None = None,
                 schedules: tuple[surgeschedule.SurgeSchedule, ...] | None = None, dry_run: bool = False,
                 status_written: bool = True) -> cycle.Result:
        """Run one cycle ``minutes`` after NOW, then write its status (unless the operator dies first)."""
        if resource is not None:
            self.resource = resource
        if schedules is not None:
            self.schedules = schedules
        result = cycle.run(self.resource, self.schedules, at(minutes), self.ports, self.memory, self.status, dry_run)
        self.results.append(result)
        if status_written:
            self.status = result.status
            self.records.saved = [item.wire() for item in result.status.originals]
        return result

    def restart(self) -> None:
        """A new operator process: no memory, and the status the API server holds."""
        self.memory = cycle.Memory()
        self.status = self.records.status()

    def release(self) -> cycle.Release:
        return cycle.release(self.workloads, NAMESPACE, self.status)

    def condition(self, type_: str) -> tuple[str, str] | None:
        found = next((item for item in self.result.status.conditions if item.type == type_), None)
        return (found.status, found.reason) if found is not None else None

    def reasons(self) -> list[str]:
        return [event.reason for event in self.result.events]

    def originals(self) -> list[tuple[str, str, str, int]]:
        return [(item.kind, item.name, item.uid, item.value) for item in self.status.originals]


def refused(status: int) -> ports.ApiError:
    """What the adapter raises for an HTTP status (0: a timeout)."""
    if status == 0:
        return ports.ApiError("read timed out after 10s", retryable=True, status=0)
    return ports.ApiError(f"HTTP {status}", retryable=status in (409, 429) or status >= 500, status=status)


Arrange = Callable[[Harness], None]
