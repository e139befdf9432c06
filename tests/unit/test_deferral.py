"""domain.deferral: when deferral is in force (surge windows with their lead time, fast burns of
critical ClinicalSLOs with their stabilisation), what it means for each kind, and the writes of
one cycle (defer, keep, restore, leave, drop), table by table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from healthscale.api import surgeschedule
from healthscale.domain import calendar, deferral

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 12, 1, 6, 45, tzinfo=UTC)
"""Inside the lead time (30m) of the 07:00-09:00 rounds surge."""
LABELS = {"healthscale.io/deferrable": "true"}
Value = surgeschedule.DeferredValue
ROUNDS = {"name": "rounds", "cron": "0 7 * * *", "duration": "2h", "leadTime": "30m", "multiplier": 2}


def policy(**overrides: Any) -> surgeschedule.DeferPolicy:
    return surgeschedule.DeferPolicy.model_validate({"selector": {"matchLabels": LABELS}, **overrides})


def cal(*surges: dict[str, Any]) -> calendar.Calendar:
    return calendar.Calendar("UTC", [surgeschedule.Surge.model_validate(surge) for surge in surges or (ROUNDS,)])


def burn(slo: str = "ed", critical: bool = True, burning: bool = True, minutes: int = 10) -> deferral.SloBurn:
    return deferral.SloBurn(slo, critical, burning, dt.timedelta(minutes=minutes))


def at(hours: float) -> dt.datetime:
    return dt.datetime(2026, 12, 1, tzinfo=UTC) + dt.timedelta(hours=hours)


# --- When deferral is in force ------------------------------------------------------------------------

IN_FORCE_CASES: list[tuple[Any, ...]] = [
    # (policy, calendar, burns seen, slos, now, expected (cause, name, until) or None)
    (policy(), cal(), {}, [], at(6.49), None),
    (policy(), cal(), {}, [], at(6.5), ("Surge", "rounds", at(9))),
    (policy(), cal(), {}, [], at(8.99), ("Surge", "rounds", at(9))),
    (policy(), cal(), {}, [], at(9), None),
    (policy(), cal({"name": "a", "start": "2026-12-01T06:00", "end": "2026-12-01T08:00", "minReplicas": 2},
                   {"name": "b", "start": "2026-12-01T08:30", "end": "2026-12-01T10:00", "leadTime": "30m",
                    "minReplicas": 2}), {}, [], at(7), ("Surge", "a", at(10))),
    (policy(duringBurn=True), cal(), {"ed": at(3)}, [burn()], at(3), ("FastBurn", "ed", at(3) + dt.timedelta(minutes=10))),
    (policy(duringBurn=True), cal(), {"ed": at(3)}, [burn(burning=False)], at(3) + dt.timedelta(minutes=9),
     ("FastBurn", "ed", at(3) + dt.timedelta(minutes=10))),
    (policy(duringBurn=True), cal(), {"ed": at(3)}, [burn(burning=False)], at(3) + dt.timedelta(minutes=10), None),
    (policy(duringBurn=True), cal(), {"ed": at(3)}, [burn(minutes=0)], at(3), ("FastBurn", "ed", at(3))),
    (policy(duringBurn=True), cal(), {"ed": at(3)}, [burn(critical=False)], at(3), None),
    (policy(duringBurn=True), cal(), {"gone": at(3)}, [burn()], at(3), None),
    (policy(), cal(), {"ed": at(3)}, [burn()], at(3), None),
    (None, cal(), {}, [], at(7), None),
    (policy(duringBurn=True), cal(), {"ed": at(8.5)}, [burn(minutes=60)], at(8.5),
     ("FastBurn", "ed", at(9.5))),
    (policy(duringBurn=True), cal(), {"ed": at(8.5)}, [burn(minutes=10)], at(8.5), ("Surge", "rounds", at(9))),
]
IN_FORCE_IDS = [
    "a minute before the lead time deferral is not in force",
    "deferral comes into force at start minus leadTime",
    "deferral holds until just before the window ends",
    "deferral ends at the window's end (exclusive)",
    "a window whose lead time opens before the current one ends carries deferral to its end",
    "a critical ClinicalSLO burning fast puts deferral in force for its stabilisation",
    "deferral holds within the stabilisation after the burn was last seen",
    "deferral ends when the stabilisation after the burn has passed",
    "without stabilisation a burn holds only while it is seen",
    "a burn of a ClinicalSLO that is not critical defers nothing",
    "a remembered burn of a ClinicalSLO no longer there defers nothing",
    "without duringBurn a burn defers nothing",
    "without spec.defer nothing is ever in force",
    "with a surge and a longer burn at once the burn is the cause",
    "with a surge and a shorter burn at once the surge is the cause",
]


@pytest.mark.parametrize(("rule", "days", "seen", "slos", "now", "expected"), IN_FORCE_CASES, ids=IN_FORCE_IDS)
def test_deferral_is_in_force(rule: surgeschedule.DeferPolicy | None, days: calendar.Calendar,
                              seen: dict[str, dt.datetime], slos: list[deferral.SloBurn], now: dt.datetime,
                              expected: tuple[str, str, dt.datetime] | None) -> None:
    result = deferral.in_force(rule, days, seen, slos, now)
    assert result.in_force is (expected is not None)
    if expected is None:
        assert result.cause is None and result.why_not
    else:
        assert result.cause is not None
        assert (result.cause.cause.value, result.cause.name, result.cause.until) == expected
        assert result.until == expected[2]


def test_both_causes_are_listed_when_a_surge_and_a_burn_hold_at_once() -> None:
    result = deferral.in_force(policy(duringBurn=True), cal(), {"ed": at(8.5)}, [burn()], at(8.5))
    assert [(reason.cause.value, reason.name) for reason in result.causes] == [("FastBurn", "ed"), ("Surge", "rounds")]


def test_why_deferral_is_not_in_force_names_the_burn_only_with_during_burn() -> None:
    assert "burns fast" in deferral.in_force(policy(duringBurn=True), cal(), {}, [], at(3)).why_not
    assert "burns fast" not in deferral.in_force(policy(), cal(), {}, [], at(3)).why_not
    assert deferral.in_force(None, cal(), {}, [], at(3)).why_not == "spec.defer is unset"


@pytest.mark.parametrize(
    ("seen", "slos", "expected"),
    [
        ({}, [burn()], {"ed": at(3)}),
        ({"ed": at(2.9)}, [burn(burning=False)], {"ed": at(2.9)}),
        ({"ed": at(2.8)}, [burn(burning=False)], {}),
        ({"ed": at(2.9)}, [burn(critical=False)], {}),
        ({"ed": at(2.9)}, [], {}),
        ({"ed": at(2.9)}, [burn()], {"ed": at(3)}),
    ],
    ids=[
        "a burn seen now is remembered at now",
        "a burn seen within its stabilisation is remembered as last seen",
        "a burn past its stabilisation is forgotten",
        "a burn of a ClinicalSLO no longer critical is forgotten",
        "a burn of a ClinicalSLO that is gone is forgotten",
        "a burn seen again moves its last sighting to now",
    ],
)
def test_burns_are_remembered_for_their_stabilisation(seen: dict[str, dt.datetime], slos: list[deferral.SloBurn],
                                                       expected: dict[str, dt.datetime]) -> None:
    assert deferral.remember_burns(seen, slos, at(3)) == expected


# --- The per-kind table ---------------------------------------------------------------------------------


def test_there_is_one_entry_per_kind_and_its_field_is_the_apis() -> None:
    assert set(deferral.KINDS) == set(surgeschedule.FIELDS)
    assert {kind: rule.field for kind, rule in deferral.KINDS.items()} == surgeschedule.FIELDS
    assert all(rule.kind == kind and rule.means and rule.records for kind, rule in deferral.KINDS.items())


@pytest.mark.parametrize(
    ("kind", "replicas", "expected"),
    [
        ("Deployment", 0, Value(replicas=0)),
        ("StatefulSet", 2, Value(replicas=2)),
        ("CronJob", 0, Value(suspend=True)),
        ("Job", 3, Value(suspend=True)),
        ("ScaledObject", 0, Value(paused_replicas="0")),
        ("ScaledObject", 2, Value(paused_replicas="2")),
    ],
    ids=[
        "a Deployment is shrunk to spec.defer.replicas",
        "a StatefulSet is shrunk to spec.defer.replicas",
        "a CronJob is suspended",
        "a Job is suspended whatever spec.defer.replicas says",
        "a ScaledObject is paused at zero by KEDA's annotation",
        "a ScaledObject is paused at spec.defer.replicas",
    ],
)
def test_what_deferred_means_for_each_kind(kind: str, replicas: int, expected: Value) -> None:
    assert deferral.KINDS[kind].deferred(policy(replicas=replicas)) == expected


# --- The plan of one cycle ------------------------------------------------------------------------------


def workload(kind: str = "Deployment", name: str = "reports", uid: str = "u1", **fields: Any) -> deferral.Workload:
    value = {key: fields.pop(key) for key in ("replicas", "suspend", "paused_replicas") if key in fields}
    if not value:
        value = {"Deployment": {"replicas": 4}, "StatefulSet": {"replicas": 4}, "CronJob": {"suspend": False},
                 "Job": {"suspend": False}}.get(kind, {})
    return deferral.Workload(kind, name, uid, Value(**value), fields.pop("labels", LABELS), **fields)


def record(kind: str = "Deployment", name: str = "reports", uid: str = "u1", original: Any = 4, written: Any = 0,
           **fields: Any) -> surgeschedule.DeferredObject:
    field = surgeschedule.FIELDS[kind]
    return surgeschedule.DeferredObject.model_validate({
        "kind": kind, "name": name, "uid": uid, "field": field,
        "original": {} if original is None else {field: original}, "written": {field: written},
        "since": "2026-12-01T06:30:00Z", "until": "2026-12-01T09:00:00Z", "cause": "Surge", "causeName": "rounds",
        **fields,
    })


ON = deferral.Deferral((deferral.Reason(deferral.Cause.SURGE, "rounds", at(9)),))
OFF = deferral.Deferral.off("no surge is within its window or lead time")

PLAN_CASES: list[tuple[Any, ...]] = [
    # (workloads, records, deferral, policy, preview, expected [(action, reason, written value or None)])
    ([workload()], [], ON, policy(), False, [("defer", "Deferred", Value(replicas=0))]),
    ([workload(kind="StatefulSet")], [], ON, policy(replicas=1), False, [("defer", "Deferred", Value(replicas=1))]),
    ([workload(replicas=0)], [], ON, policy(), False, [("leave", "AlreadyAtOrBelow", None)]),
    ([workload(replicas=1)], [], ON, policy(replicas=2), False, [("leave", "AlreadyAtOrBelow", None)]),
    ([workload(kind="CronJob")], [], ON, policy(), False, [("defer", "Deferred", Value(suspend=True))]),
    ([workload(kind="CronJob", suspend=True)], [], ON, policy(), False, [("leave", "AlreadySuspended", None)]),
    ([workload(kind="Job")], [], ON, policy(), False, [("defer", "Deferred", Value(suspend=True))]),
    ([workload(kind="Job", started=True)], [], ON, policy(), False, [("leave", "Running", None)]),
    ([workload(kind="Job", started=True)], [], ON, policy(interruptRunning=True), False,
     [("defer", "Deferred", Value(suspend=True))]),
    ([workload(kind="Job", started=True, finished=True)], [], ON, policy(interruptRunning=True), False,
     [("leave", "Finished", None)]),
    ([workload(kind="ScaledObject")], [], ON, policy(), False, [("defer", "Deferred", Value(paused_replicas="0"))]),
    ([workload(kind="ScaledObject", paused_replicas="1")], [], ON, policy(), False, [("leave", "AlreadyPaused", None)]),
    ([workload(kind="ScaledObject", scaled_replicas=0)], [], ON, policy(), False,
     [("leave", "AlreadyAtOrBelow", None)]),
    ([workload(scaled_by="ScaledObject/reports")], [], ON, policy(), False, [("leave", "ScaledByAutoscaler", None)]),
    ([workload(targeted_by="ed-triage-chart")], [], ON, policy(), False, [("leave", "ClinicalTarget", None)]),
    ([workload(targeted_by="ed-triage-chart")], [], OFF, policy(), False, [("leave", "ClinicalTarget", None)]),
    ([workload(labels={"tier": "batch"})], [], ON, policy(), False, []),
    ([workload()], [], OFF, policy(), False, []),
    ([workload()], [], ON, policy(), True, [("leave", "WouldDefer", None)]),
    ([workload(replicas=0)], [record()], ON, policy(), False, [("keep", "Kept", None)]),
    ([workload(replicas=0)], [record()], OFF, policy(), False, [("restore", "Restored", Value(replicas=4))]),
    ([workload(replicas=0)], [record()], OFF, None, False, [("restore", "Restored", Value(replicas=4))]),
    ([workload(kind="CronJob", suspend=True)], [record(kind="CronJob", original=False, written=True)], OFF, policy(),
     False, [("restore", "Restored", Value(suspend=False))]),
    ([workload(kind="ScaledObject", paused_replicas="0")], [record(kind="ScaledObject", original=None, written="0")],
     OFF, policy(), False, [("restore", "Restored", Value())]),
    ([workload(kind="ScaledObject", paused_replicas="0")], [record(kind="ScaledObject", original="5", written="0")],
     OFF, policy(), False, [("restore", "Restored", Value(paused_replicas="5"))]),
    ([workload(replicas=3)], [record()], ON, policy(), False, [("leave", "ChangedByOthers", None)]),
    ([workload(replicas=3)], [record(overriddenAt="2026-12-01T06:40:00Z")], ON, policy(), False,
     [("leave", "ChangedByOthers", None)]),
    ([workload(replicas=0)], [record(overriddenAt="2026-12-01T06:40:00Z")], OFF, policy(), False,
     [("drop", "ChangedByOthers", None)]),
    ([workload(replicas=3)], [record()], OFF, policy(), False, [("drop", "ChangedByOthers", None)]),
    ([workload(replicas=0, labels={})], [record()], ON, policy(), False, [("restore", "Restored", Value(replicas=4))]),
    ([workload(replicas=0, targeted_by="ed")], [record()], ON, policy(), False,
     [("restore", "Restored", Value(replicas=4))]),
    ([workload(replicas=0, scaled_by="HorizontalPodAutoscaler/reports")], [record()], ON, policy(), False,
     [("drop", "ScaledByAutoscaler", None)]),
    ([], [record()], ON, policy(), False, [("drop", "Gone", None)]),
    ([workload(uid="u2")], [record()], ON, policy(), False,
     [("drop", "Recreated", None), ("defer", "Deferred", Value(replicas=0))]),
    ([workload(replicas=0)], [record()], ON, policy(), True, [("restore", "Restored", Value(replicas=4))]),
    ([workload(replicas=0)], [record()], ON, policy(replicas=1), False, [("defer", "Deferred", Value(replicas=1))]),
    ([workload(replicas=0)], [record()], ON, policy(replicas=4), False, [("restore", "Restored", Value(replicas=4))]),
    ([workload(replicas=0)], [record(), record(original=9)], OFF, policy(), False,
     [("restore", "Restored", Value(replicas=4))]),
]
PLAN_IDS = [
    "a selected Deployment is shrunk to zero while deferral is in force",
    "a selected StatefulSet is shrunk to spec.defer.replicas",
    "a Deployment already at zero is left alone",
    "a Deployment below spec.defer.replicas is never raised",
    "a CronJob is suspended",
    "a CronJob someone else suspended is left alone",
    "a Job that has not started is suspended",
    "a running Job is left running by default",
    "a running Job is suspended with interruptRunning",
    "a finished Job is left alone",
    "a ScaledObject is paused with KEDA's annotation",
    "a ScaledObject someone else paused is left alone",
    "a ScaledObject whose workload is already at zero is left alone",
    "a Deployment scaled by an autoscaler is left to it and reported",
    "a ClinicalSLO's target is never deferred and is reported",
    "a ClinicalSLO's target is reported even out of the window",
    "an object the selector does not select is not considered",
    "nothing is deferred out of the window",
    "preview reports what would be deferred and writes nothing",
    "a deferred object is kept deferred while the window lasts",
    "a deferred Deployment is restored to its recorded replicas when the window ends",
    "removing spec.defer restores what it deferred",
    "a CronJob is unsuspended when the window ends",
    "a ScaledObject's annotation is removed when it had none before",
    "a ScaledObject's own earlier annotation is put back",
    "someone scaling a deferred object by hand wins and is reported",
    "an object someone changed stays left alone for the rest of the window",
    "the record of an object someone changed is dropped when the window ends",
    "an object someone changed is not restored over their change at the window's end",
    "an object whose labels no longer match is restored at once",
    "an object that became a ClinicalSLO's target is restored at once",
    "an object that an autoscaler now scales is left to it and its record dropped",
    "a deleted object's record is dropped",
    "a re-created object's record is dropped and the new object is deferred afresh",
    "switching to preview restores what was deferred",
    "raising spec.defer.replicas mid-window moves the deferred object to it",
    "raising spec.defer.replicas to the original restores the object",
    "a duplicate record of one object restores the first original only",
]


@pytest.mark.parametrize(("workloads", "records", "state", "rule", "preview", "expected"), PLAN_CASES, ids=PLAN_IDS)
def test_the_plan_of_one_cycle(workloads: list[deferral.Workload], records: list[surgeschedule.DeferredObject],
                               state: deferral.Deferral, rule: surgeschedule.DeferPolicy | None, preview: bool,
                               expected: list[tuple[str, str, Value | None]]) -> None:
    plan = deferral.plan(rule, workloads, records, state, NOW, preview=preview)
    found = [(decision.action.value, decision.reason, decision.write.value if decision.write else None)
             for decision in plan.decisions]
    assert found == expected
    for decision in plan.decisions:
        if decision.write is not None:
            assert decision.write.uid == decision.uid, "every write is to the exact object"
        assert decision.message


def test_a_deferral_records_the_original_before_it_is_written() -> None:
    plan = deferral.plan(policy(), [workload(replicas=7)], [], ON, NOW)
    (decision,) = plan.decisions
    assert decision.record is not None and decision.write is not None
    assert decision.record.original == Value(replicas=7)
    assert decision.record.written == decision.write.value == Value(replicas=0)
    assert decision.write.expected == Value(replicas=7)
    assert (decision.record.since, decision.record.until) == ("2026-12-01T06:45:00Z", "2026-12-01T09:00:00Z")
    assert (decision.record.cause, decision.record.cause_name) == ("Surge", "rounds")
    assert plan.records == (decision.record,) and plan.deferred_count == 1
    assert "surge rounds" in decision.message


def test_a_cronjob_without_a_suspend_field_is_recorded_as_not_suspended() -> None:
    (decision,) = deferral.plan(policy(), [workload(kind="CronJob", suspend=None)], [], ON, NOW).decisions
    assert decision.record is not None and decision.record.original == Value(suspend=False)


def test_a_burn_is_named_as_the_cause() -> None:
    burning = deferral.Deferral((deferral.Reason(deferral.Cause.FAST_BURN, "ed-triage-chart", at(7)),))
    (decision,) = deferral.plan(policy(), [workload()], [], burning, NOW).decisions
    assert decision.record is not None and (decision.record.cause, decision.record.cause_name) == (
        "FastBurn", "ed-triage-chart")
    assert "fast burn of ClinicalSLO ed-triage-chart" in decision.message


def test_a_kept_record_keeps_its_since_and_takes_the_new_until() -> None:
    later = deferral.Deferral((deferral.Reason(deferral.Cause.SURGE, "rounds", at(10)),))
    (decision,) = deferral.plan(policy(), [workload(replicas=0)], [record()], later, NOW).decisions
    assert decision.record is not None
    assert (decision.record.since, decision.record.until) == ("2026-12-01T06:30:00Z", "2026-12-01T10:00:00Z")


def test_someone_elses_change_is_marked_so_it_is_not_deferred_again() -> None:
    first = deferral.plan(policy(), [workload(replicas=3)], [record()], ON, NOW)
    (marked,) = first.settled()
    assert marked.overridden_at == "2026-12-01T06:45:00Z" and first.deferred_count == 0
    second = deferral.plan(policy(), [workload(replicas=3)], first.settled(), ON, NOW + dt.timedelta(minutes=5))
    assert second.writes == () and second.settled() == (marked,)
    assert [item.reason for item in second.not_deferred] == ["ChangedByOthers"]


@pytest.mark.parametrize(
    ("records", "state", "rule", "failed", "refused", "expected"),
    [
        ([record()], OFF, policy(), (), (), []),
        ([record()], OFF, policy(), ("u1",), (), [0]),
        ([record()], OFF, policy(), (), ("u1",), [0]),
        ([], ON, policy(), (), (), [0]),
        ([], ON, policy(), ("u1",), (), [0]),
        ([], ON, policy(), (), ("u1",), []),
        ([record()], ON, policy(replicas=1), (), ("u1",), [0]),
        ([record()], ON, policy(replicas=1), (), (), [1]),
    ],
    ids=[
        "a restore that succeeded drops its record",
        "a restore that failed keeps its record for the next cycle",
        "a restore that was refused keeps its record for the next cycle",
        "a deferral that succeeded keeps its record",
        "a deferral without an answer keeps its record, in case it was applied",
        "a first deferral that was refused leaves no record, so the next cycle tries again",
        "a refused move to new spec.defer.replicas keeps the record as it was",
        "a move to new spec.defer.replicas records the new written value",
    ],
)
def test_settled_records_after_the_writes(records: list[surgeschedule.DeferredObject], state: deferral.Deferral,
                                          rule: surgeschedule.DeferPolicy, failed: tuple[str, ...],
                                          refused: tuple[str, ...], expected: list[int]) -> None:
    plan = deferral.plan(rule, [workload(replicas=0 if records else 4)], records, state, NOW)
    assert [item.uid for item in plan.records] == ["u1"], "saved before the write, in case it fails"
    assert [item.written.replicas for item in plan.settled(failed, refused)] == expected


def test_not_deferred_lists_the_refusals_only() -> None:
    plan = deferral.plan(policy(), [workload(name="ehr", uid="a", targeted_by="ed"),
                                    workload(name="idle", uid="b", replicas=0),
                                    workload(kind="Job", name="etl", uid="c", started=True)], [], ON, NOW)
    assert [(item.kind, item.name, item.reason) for item in plan.not_deferred] == [
        ("Deployment", "ehr", "ClinicalTarget"), ("Job", "etl", "Running")]


# --- One cycle of one schedule --------------------------------------------------------------------------


def schedule(**defer: Any) -> surgeschedule.SurgeScheduleSpec:
    return surgeschedule.SurgeScheduleSpec.model_validate(
        {"sloRefs": ["ed"], "surges": [ROUNDS], "defer": {"selector": {"matchLabels": LABELS}, **defer}})


def test_decide_defers_in_the_lead_time_and_restores_after_the_window() -> None:
    spec = schedule()
    first = deferral.decide(spec, None, [], [workload()], NOW)
    assert [write.value for write in first.plan.writes] == [Value(replicas=0)]
    status = surgeschedule.SurgeScheduleStatus(deferred=first.plan.settled())
    after = deferral.decide(spec, status, [], [workload(replicas=0)], at(9))
    assert [write.value for write in after.plan.writes] == [Value(replicas=4)]
    assert after.plan.settled() == () and not after.deferral.in_force


def test_decide_restores_everything_when_the_schedule_is_deleted_mid_window() -> None:
    status = surgeschedule.SurgeScheduleStatus(deferred=(record(),))
    cycle = deferral.decide(schedule(), status, [], [workload(replicas=0)], NOW, deleting=True)
    assert [(write.uid, write.value) for write in cycle.plan.writes] == [("u1", Value(replicas=4))]
    assert "deleted" in cycle.deferral.why_not


def test_decide_remembers_a_burn_across_cycles_through_status() -> None:
    spec = schedule(duringBurn=True)
    first = deferral.decide(spec, None, [burn(burning=True)], [workload()], at(3))
    assert first.deferral.in_force and [item.slo for item in first.fast_burns] == ["ed"]
    status = surgeschedule.SurgeScheduleStatus(deferred=first.plan.settled(), fast_burns=first.fast_burns)
    held = deferral.decide(spec, status, [burn(burning=False)], [workload(replicas=0)], at(3) + dt.timedelta(minutes=9))
    assert held.deferral.in_force and held.plan.writes == ()
    status = surgeschedule.SurgeScheduleStatus(deferred=held.plan.settled(), fast_burns=held.fast_burns)
    ended = deferral.decide(spec, status, [burn(burning=False)], [workload(replicas=0)], at(3) + dt.timedelta(minutes=10))
    assert not ended.deferral.in_force and ended.fast_burns == ()
    assert [write.value for write in ended.plan.writes] == [Value(replicas=4)]


def test_an_unreadable_burn_sighting_is_forgotten_not_fatal() -> None:
    status = surgeschedule.SurgeScheduleStatus(fast_burns=(surgeschedule.FastBurnSeen(slo="ed", last_seen="soon"),))
    cycle = deferral.decide(schedule(duringBurn=True), status, [burn(burning=False)], [], at(3))
    assert not cycle.deferral.in_force and cycle.fast_burns == ()
