"""Reconcile invariants over random sequences of cycles and faults (hypothesis, in-memory fakes).

A sequence mixes cycles (minutes apart, across the surge window) with faults: Prometheus errors,
stale or infinite data, refused or timed-out writes, a failing status store, ``targetRef``
renames, HPAs appearing and disappearing, an HPA controller following its floor, Active/Preview/
dry-run switches, restarts, kills between a write and the status write, and re-created targets.
It ends with deletion (``cycle.release``). Invariants:

(a) while a surge floor F is in effect, the target exists and the cycle's writes succeed, the field
    healthscale moves (the HPA's minReplicas, else replicas) is at least min(F, maxReplicas, the
    HPA's maxReplicas) after the cycle;
(b) after a release without API errors, every object that still exists with its original uid has
    its value from before healthscale's first write back (workloads an HPA ever scaled are the
    HPA's to set, and are left out);
(c) no exception escapes ``cycle.run``;
(d) healthscale never writes an HPA's minReplicas below the value its owner set.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from hypothesis import example, given, settings, strategies as st

from healthscale import ports
from reconcile_fakes import HPA, NOW, Harness, at, refused, schedule, slo

# See test_planning_properties.py: import hypothesis' patching module once with its warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

DEPLOYMENT = "Deployment"
LOOKAHEAD = 60 + 300
"""startupSeconds plus one step: a floor is in effect this long before its window opens."""
SURGE_BEGIN, SURGE_END = at(-30), at(150)
"""The schedule's window, 20:00 to 23:00 UTC (NOW is 20:30)."""

Step = tuple[Any, ...]
TICKS = st.tuples(st.just("tick"), st.sampled_from([1, 5, 5, 5, 15, 30, 60]))
FAULTS = st.one_of(
    st.tuples(st.just("metrics"), st.sampled_from(["ok", "PrometheusUnavailable", "InvalidQuery", "BadResponse",
                                                    "infinite", "two series", "stale"])),
    st.tuples(st.just("refuse write"), st.integers(0, 2), st.sampled_from([0, 403, 409, 422, 500])),
    st.just(("refuse records",)),
    st.just(("rename",)),
    st.tuples(st.just("toggle hpa"), st.integers(0, 8), st.integers(1, 40)),
    st.just(("hpa controller",)),
    st.tuples(st.just("mode"), st.sampled_from(["Active", "Preview", "dry-run"])),
    st.just(("restart",)),
    st.just(("kill",)),
    st.tuples(st.just("recreate"), st.integers(0, 30)),
)


@dataclasses.dataclass
class Scenario:
    floor: int
    min_replicas: int
    max_replicas: int
    replicas: tuple[int, int]
    start: int
    """Minutes after NOW of the first cycle."""
    steps: list[Step]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    max_replicas = draw(st.integers(1, 60))
    return Scenario(
        floor=draw(st.integers(1, 40)),
        min_replicas=draw(st.integers(0, min(5, max_replicas))),
        max_replicas=max_replicas,
        replicas=(draw(st.integers(0, 30)), draw(st.integers(0, 30))),
        start=draw(st.sampled_from([-60, -35, 0, 120, 150])),
        # Rounds of a few faults, then a cycle.
        steps=[step for faults, tick in draw(st.lists(st.tuples(st.lists(FAULTS, max_size=2), TICKS), min_size=1,
                                                       max_size=12))
               for step in (*faults, tick)],
    )


@dataclasses.dataclass
class Run:
    """The harness plus what the test knows independently of the product: baselines and HPA history."""

    scenario: Scenario
    harness: Harness = dataclasses.field(default_factory=Harness)
    target: str = "a"
    mode: str = "Active"
    minute: int = 0
    metrics: str = "ok"
    refuse: list[Exception | None] = dataclasses.field(default_factory=list)
    kill: bool = False
    baselines: dict[tuple[str, str, str], int] = dataclasses.field(default_factory=dict)
    """(kind, name, uid) -> the value before healthscale first wrote it."""
    hpa_managed: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    """Workloads (kind, uid) an HPA scaled at some point."""

    def __post_init__(self) -> None:
        self.minute = self.scenario.start
        self.harness.schedules = (schedule(floor=self.scenario.floor),)
        for name, replicas in zip(("a", "b"), self.scenario.replicas):
            self.harness.workloads.deployment(name, replicas)
        workloads = self.harness.workloads
        original_write = workloads.write_field

        def write_field(namespace: str, kind: str, name: str, uid: str, field: ports.Field, value: int) -> None:
            found = workloads.objects.get((kind, name))
            before = found.value if found is not None else None
            original_write(namespace, kind, name, uid, field, value)
            assert found is not None and before is not None
            identity = (kind, name, found.uid)
            self.baselines.setdefault(identity, before)
            if kind == HPA:
                assert value >= self.baselines[identity], (
                    f"(d) HPA {name} minReplicas written to {value}, below its owner's {self.baselines[identity]}")

        workloads.write_field = write_field  # type: ignore[method-assign]

    def resource(self) -> Any:
        return slo(self.target, mode="Preview" if self.mode == "Preview" else "Active",
                   min_replicas=self.scenario.min_replicas, max_replicas=self.scenario.max_replicas)

    def step(self, step: Step) -> None:
        workloads = self.harness.workloads
        kind, *arguments = step
        if kind == "tick":
            self.tick(arguments[0])
        elif kind == "metrics":
            self.metrics = arguments[0]
        elif kind == "refuse write":
            position, status = arguments
            self.refuse = [None] * position + [refused(status)]
        elif kind == "refuse records":
            self.harness.records.fault = refused(503)
        elif kind == "rename":
            self.target = "b" if self.target == "a" else "a"
        elif kind == "toggle hpa":
            hpa = workloads.hpa_of(DEPLOYMENT, self.target)
            if hpa is not None:
                workloads.delete(HPA, hpa.name)
            elif (DEPLOYMENT, self.target) in workloads.objects:
                low, high = sorted(arguments)
                workloads.hpa(f"{self.target}-hpa", low, max(high, 1), target=self.target)
        elif kind == "hpa controller":
            for hpa in [item for item in workloads.objects.values() if item.kind == HPA]:
                assert hpa.target is not None
                scaled = workloads.objects.get(hpa.target)
                if scaled is not None:
                    scaled.value = min(max(scaled.value, hpa.value), hpa.max_replicas)
        elif kind == "mode":
            self.mode = arguments[0]
        elif kind == "restart":
            self.harness.restart()
        elif kind == "kill":
            self.kill = True
        elif kind == "recreate":
            if (DEPLOYMENT, self.target) in workloads.objects:
                workloads.delete(DEPLOYMENT, self.target)
            workloads.deployment(self.target, arguments[0])
        else:
            raise AssertionError(step)

    def tick(self, minutes: int) -> None:
        self.minute += minutes
        now = at(self.minute)
        harness, workloads = self.harness, self.harness.workloads
        metrics = harness.metrics
        metrics.fault = (ports.MetricsError(self.metrics, "canned")  # type: ignore[arg-type]
                         if self.metrics in ("PrometheusUnavailable", "InvalidQuery", "BadResponse") else None)
        metrics.infinite = self.metrics == "infinite"
        metrics.series = 2 if self.metrics == "two series" else 1
        metrics.newest = now - 40 * 60 if self.metrics == "stale" else None
        for hpa in [item for item in workloads.objects.values() if item.kind == HPA]:
            scaled = workloads.objects.get(hpa.target) if hpa.target else None
            if scaled is not None:
                self.hpa_managed.add((scaled.kind, scaled.uid))
        injected = bool(self.refuse) or harness.records.fault is not None
        workloads.refuse = list(self.refuse)
        writes_before = len(workloads.writes)

        result = harness.cycle_at(self.minute, resource=self.resource(), dry_run=self.mode == "dry-run",
                                  status_written=not self.kill)  # (c): nothing may escape

        workloads.refuse, self.refuse, harness.records.fault = [], [], None
        if self.kill:
            self.kill = False
            harness.restart()
        target_now = workloads.objects.get((DEPLOYMENT, self.target))
        in_effect = SURGE_BEGIN - LOOKAHEAD <= now < SURGE_END
        if in_effect and target_now is not None and self.mode == "Active" and not injected:
            scaler = workloads.hpa_of(DEPLOYMENT, self.target)
            floor = min(self.scenario.floor, self.scenario.max_replicas)
            if scaler is not None:
                floor = min(floor, scaler.max_replicas)
            moved = scaler.value if scaler is not None else target_now.value
            assert moved >= floor, (
                f"(a) at minute {self.minute} the surge floor {self.scenario.floor} is in effect but "
                f"{'HPA minReplicas' if scaler else 'replicas'} is {moved}; writes this cycle: "
                f"{workloads.writes[writes_before:]}; events: {[event.message for event in result.events]}")

    def release(self) -> None:
        harness, workloads = self.harness, self.harness.workloads
        workloads.refuse = []
        released = harness.release()
        assert released.unrestored == (), released.unrestored
        for identity, baseline in self.baselines.items():
            kind, name, uid = identity
            found = workloads.objects.get((kind, name))
            if found is None or found.uid != uid or (kind, uid) in self.hpa_managed:
                continue
            assert found.value == baseline, (
                f"(b) {kind} {name} ({uid}) is {found.value} after release, was {baseline} before healthscale; "
                f"originals released: {[item.wire() for item in harness.status.originals]}")


@settings(max_examples=100, deadline=None)
@given(scenarios())
# Found by hypothesis: the HPA goes, the Deployment is re-created (replicas 1), and the old HPA's
# floor (0) must not become the new Deployment's original.
@example(Scenario(floor=1, min_replicas=0, max_replicas=1, replicas=(0, 0), start=-60,
                  steps=[("toggle hpa", 0, 1), ("tick", 1), ("toggle hpa", 0, 1), ("recreate", 1), ("tick", 1)]))
def test_floors_hold_and_release_puts_everything_back_whatever_fails(scenario: Scenario) -> None:
    run = Run(scenario)
    for step in scenario.steps:
        run.step(step)
    run.tick(5)
    run.release()


def test_the_window_constants_match_the_schedule() -> None:
    window = schedule().spec.surges[0]
    assert (window.start, window.end) == ("2026-05-28T20:00", "2026-05-28T23:00")
    assert SURGE_BEGIN == NOW - 30 * 60 and SURGE_END == NOW + 150 * 60
