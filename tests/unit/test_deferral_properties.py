"""domain.deferral invariants over generated namespaces, records and hand edits (hypothesis): nothing
stays deferred after its window, a ClinicalSLO target is never deferred, a value is never raised, and
defer-then-restore gives back exactly what was there, unless someone changed it, whose change wins."""

from __future__ import annotations

import dataclasses
import datetime as dt
import warnings

from hypothesis import given, settings, strategies as st

from healthscale.api import surgeschedule
from healthscale.domain import calendar, deferral

# See test_planning_properties: import hypothesis' patching module once with its DeprecationWarning
# silenced, so that a failing example reports normally under filterwarnings=error.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

EXAMPLES = settings(max_examples=150, deadline=None)
UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
LABELS = {"healthscale.io/deferrable": "true"}
Value = surgeschedule.DeferredValue
ON = deferral.Deferral((deferral.Reason(deferral.Cause.SURGE, "rounds", NOW + dt.timedelta(hours=2)),))
OFF = deferral.Deferral.off("the window ended")
KINDS = sorted(deferral.KINDS)


@st.composite
def values(draw: st.DrawFn, kind: str) -> Value:
    field = surgeschedule.FIELDS[kind]
    if field == "replicas":
        return Value(replicas=draw(st.integers(0, 12)))
    if field == "suspend":
        return Value(suspend=draw(st.sampled_from([None, False, True])))
    return Value(paused_replicas=draw(st.sampled_from([None, None, "0", "3"])))


@st.composite
def namespaces(draw: st.DrawFn) -> list[deferral.Workload]:
    """Objects of every kind with distinct uids and names: selected or not, some ClinicalSLO targets,
    some scaled by an autoscaler, Jobs running or finished."""
    count = draw(st.integers(0, 8))
    found = []
    for index in range(count):
        kind = draw(st.sampled_from(KINDS))
        found.append(deferral.Workload(
            kind, f"w{index}", f"uid-{index}", draw(values(kind)),
            LABELS if draw(st.booleans()) or index == 0 else {"tier": "batch"},
            targeted_by=draw(st.sampled_from([None, None, "ed-triage-chart"])),
            scaled_by=draw(st.sampled_from([None, None, None, "HorizontalPodAutoscaler/x"])) if kind in (
                "Deployment", "StatefulSet") else None,
            scaled_replicas=draw(st.one_of(st.none(), st.integers(0, 5))) if kind == "ScaledObject" else None,
            started=draw(st.booleans()) if kind == "Job" else False,
            finished=draw(st.booleans()) if kind == "Job" else False,
        ))
    return found


policies = st.builds(lambda replicas, interrupt: surgeschedule.DeferPolicy.model_validate(
    {"selector": {"matchLabels": LABELS}, "replicas": replicas, "interruptRunning": interrupt}),
    st.integers(0, 3), st.booleans())


def apply(world: dict[str, deferral.Workload], plan: deferral.Plan) -> None:
    """Perform the plan's writes as the API server would: to the exact object, if it still holds
    the value the plan expected (otherwise the write is refused, as with a test-and-set)."""
    for write in plan.writes:
        current = world.get(write.uid)
        rule = deferral.KINDS[write.kind]
        if current is not None and rule.same(current.current, write.expected):
            world[write.uid] = dataclasses.replace(current, current=write.value)


def read(rule: deferral.KindRule, workload: deferral.Workload) -> object:
    return rule.read(workload.current)


@EXAMPLES
@given(namespaces(), policies, st.booleans())
def test_defer_then_restore_gives_back_exactly_what_was_there(workloads: list[deferral.Workload],
                                                              policy: surgeschedule.DeferPolicy,
                                                              preview: bool) -> None:
    before = {workload.uid: workload for workload in workloads}
    world = dict(before)
    first = deferral.plan(policy, list(world.values()), (), ON, NOW, preview=preview)
    apply(world, first)
    if preview:
        assert first.writes == () and first.records == (), "preview changes nothing"
    second = deferral.plan(policy, list(world.values()), first.settled(), ON, NOW + dt.timedelta(minutes=5),
                           preview=preview)
    apply(world, second)
    assert second.writes == (), "a second cycle in the same window writes nothing"
    last = deferral.plan(policy, list(world.values()), second.settled(), OFF, NOW + dt.timedelta(hours=2))
    apply(world, last)
    assert last.settled() == ()
    for uid, workload in before.items():
        rule = deferral.KINDS[workload.kind]
        assert read(rule, world[uid]) == read(rule, workload), workload


@EXAMPLES
@given(namespaces(), policies, st.data())
def test_someone_elses_change_during_the_window_wins(workloads: list[deferral.Workload],
                                                     policy: surgeschedule.DeferPolicy, data: st.DataObject) -> None:
    world = {workload.uid: workload for workload in workloads}
    first = deferral.plan(policy, list(world.values()), (), ON, NOW)
    apply(world, first)
    changed = {}
    for record in first.settled():
        rule = deferral.KINDS[record.kind]
        edit = data.draw(values(record.kind))
        if data.draw(st.booleans()) and not rule.same(edit, record.written):
            world[record.uid] = dataclasses.replace(world[record.uid], current=edit)
            changed[record.uid] = edit
    middle = deferral.plan(policy, list(world.values()), first.settled(), ON, NOW + dt.timedelta(minutes=5))
    assert not {write.uid for write in middle.writes} & set(changed), "never fight a hand edit"
    apply(world, middle)
    last = deferral.plan(policy, list(world.values()), middle.settled(), OFF, NOW + dt.timedelta(hours=2))
    apply(world, last)
    for uid, edit in changed.items():
        rule = deferral.KINDS[world[uid].kind]
        assert rule.same(world[uid].current, edit)
    assert last.settled() == ()


@st.composite
def recorded(draw: st.DrawFn, workloads: list[deferral.Workload]) -> list[surgeschedule.DeferredObject]:
    """Records of some of the objects (some of them since changed by hand, or gone)."""
    found = []
    for index, workload in enumerate(workloads + [deferral.Workload("Deployment", "gone", "uid-gone", Value())]):
        if not draw(st.booleans()):
            continue
        field = surgeschedule.FIELDS[workload.kind]
        original = draw(values(workload.kind))
        written = deferral.KINDS[workload.kind].deferred(surgeschedule.DeferPolicy.model_validate(
            {"selector": {"matchLabels": LABELS}}))
        if field == "suspend":
            original = Value(suspend=bool(original.suspend))
        if field == "replicas" and original.replicas is None:
            original = Value(replicas=index)
        found.append(surgeschedule.DeferredObject(
            kind=workload.kind, name=workload.name, uid=workload.uid, field=field, original=original, written=written,  # type: ignore[arg-type]
            since="2026-12-01T06:30:00Z", cause="Surge", cause_name="rounds",
            overridden_at=draw(st.sampled_from([None, None, "2026-12-01T06:40:00Z"]))))
    return found


@EXAMPLES
@given(st.data(), namespaces(), st.one_of(st.none(), policies), st.booleans())
def test_nothing_stays_deferred_after_its_window(data: st.DataObject, workloads: list[deferral.Workload],
                                                 policy: surgeschedule.DeferPolicy | None, preview: bool) -> None:
    records = data.draw(recorded(workloads))
    plan = deferral.plan(policy, workloads, records, OFF, NOW, preview=preview)
    assert plan.settled() == ()
    assert {decision.action for decision in plan.decisions} <= {deferral.Action.RESTORE, deferral.Action.DROP,
                                                                deferral.Action.LEAVE}
    restored = {write.uid: write for write in plan.writes}
    for record in records:
        if record.uid in restored:
            assert restored[record.uid].value == record.original, "restore writes the exact recorded original"


@EXAMPLES
@given(st.data(), namespaces(), policies, st.booleans())
def test_a_clinical_target_is_never_deferred_and_no_value_is_raised(
        data: st.DataObject, workloads: list[deferral.Workload], policy: surgeschedule.DeferPolicy,
        preview: bool) -> None:
    plan = deferral.plan(policy, workloads, data.draw(recorded(workloads)), ON, NOW, preview=preview)
    targets = {workload.uid for workload in workloads if workload.targeted_by is not None}
    for decision in plan.decisions:
        if decision.uid in targets:
            assert decision.action not in (deferral.Action.DEFER, deferral.Action.KEEP)
        if decision.action == deferral.Action.DEFER and decision.write and decision.write.field == "replicas":
            # Below what was there before healthscale: a deferral never raises a workload.
            assert decision.record is not None
            deferred, original = decision.write.value.replicas, decision.record.original.replicas
            assert deferred is not None and original is not None and deferred < original
    assert not {record.uid for record in plan.settled() if record.overridden_at is None} & targets
    if preview:
        assert all(decision.action != deferral.Action.DEFER for decision in plan.decisions)


@EXAMPLES
@given(st.integers(0, 24 * 60), st.integers(0, 90), st.integers(1, 240))
def test_deferral_is_in_force_exactly_from_lead_time_to_end(minute: int, lead: int, length: int) -> None:
    surge = surgeschedule.Surge.model_validate({"name": "rounds", "start": "2026-12-01T08:00",
                                                 "end": f"2026-12-01T{8 + length // 60:02d}:{length % 60:02d}",
                                                 "leadTime": f"{lead}m", "minReplicas": 2})
    days = calendar.Calendar("UTC", [surge])
    policy = surgeschedule.DeferPolicy.model_validate({"selector": {"matchLabels": LABELS}})
    now = dt.datetime(2026, 12, 1, tzinfo=UTC) + dt.timedelta(minutes=minute)
    start = dt.datetime(2026, 12, 1, 8, tzinfo=UTC)
    end = start + dt.timedelta(minutes=length)
    result = deferral.in_force(policy, days, {}, [], now)
    assert result.in_force is (start - dt.timedelta(minutes=lead) <= now < end)
    if result.in_force:
        assert result.until == end


OUTCOMES = st.sampled_from(["ok", "ok", "refused", "failed-applied", "failed-lost"])


def faulty_cycle(world: dict[str, deferral.Workload], policy: surgeschedule.DeferPolicy,
                 records: tuple[surgeschedule.DeferredObject, ...], state: deferral.Deferral, now: dt.datetime,
                 data: st.DataObject) -> tuple[surgeschedule.DeferredObject, ...]:
    """One cycle under faults: the operator may be killed after saving the records and before any
    write, and each write may succeed, be refused, or get no answer (applied or not)."""
    plan = deferral.plan(policy, list(world.values()), records, state, now)
    if data.draw(st.booleans().map(lambda killed: killed and bool(plan.writes)), label="killed"):
        return plan.records
    failed, refused = [], []
    for write in plan.writes:
        outcome = data.draw(OUTCOMES, label=f"{write.kind} {write.name}")
        if outcome in ("ok", "failed-applied"):
            current = world[write.uid]
            if deferral.KINDS[write.kind].same(current.current, write.expected):
                world[write.uid] = dataclasses.replace(current, current=write.value)
        if outcome == "refused":
            refused.append(write.uid)
        elif outcome.startswith("failed"):
            failed.append(write.uid)
    return plan.settled(failed, refused)


@EXAMPLES
@given(namespaces(), policies, st.integers(1, 4), st.integers(1, 4), st.data())
def test_under_faults_nothing_stays_deferred_after_its_window_plus_one_cycle(
        workloads: list[deferral.Workload], policy: surgeschedule.DeferPolicy, inside: int, after: int,
        data: st.DataObject) -> None:
    before = {workload.uid: workload for workload in workloads}
    world = dict(before)
    records: tuple[surgeschedule.DeferredObject, ...] = ()
    for cycle in range(inside):
        records = faulty_cycle(world, policy, records, ON, NOW + dt.timedelta(minutes=cycle), data)
    for cycle in range(after):
        records = faulty_cycle(world, policy, records, OFF, NOW + dt.timedelta(hours=2, minutes=cycle), data)
    final = deferral.plan(policy, list(world.values()), records, OFF, NOW + dt.timedelta(hours=3))
    apply(world, final)
    assert final.settled() == ()
    for uid, workload in before.items():
        rule = deferral.KINDS[workload.kind]
        assert rule.same(world[uid].current, workload.current), workload
