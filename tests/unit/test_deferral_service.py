"""service.deferral.Deferrer against an in-memory API server (``deferral_fakes.FakeDeferrables``):
the order that makes deferral safe to interrupt (finalizer, records, writes, settled records,
finalizer off), each kind, ClinicalSLO targets, someone else's change, preview, faults, deletion,
spec.defer removed, and deferral during a fast burn."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from deferral_fakes import (AFTER, BEFORE, LABELS, LATER, NAMESPACE, NOW, SCHEDULE, SCHEDULE_UID, SURGE,
                            FakeDeferrables, Value, burning, refused, schedule_body, slo_body, stamp, workload)

from healthscale import ports
from healthscale.domain import deferral
from healthscale.service import deferral as service

KINDS = ("Deployment", "StatefulSet", "CronJob", "Job", "ScaledObject")
SCHEDULE_INVOLVED = ports.Involved("healthscale.io/v1alpha1", "SurgeSchedule", NAMESPACE, SCHEDULE, SCHEDULE_UID)
LISTING = ["clinical_slos", "selected healthscale.io/deferrable=true"]


def world(*items: deferral.Workload, slos: tuple[dict[str, Any], ...] = (), dry_run: bool = False,
          **schedule: Any) -> tuple[FakeDeferrables, service.Deferrer]:
    fake = FakeDeferrables(schedule=schedule_body(**schedule), slos=list(slos))
    fake.add(*items)
    return fake, service.Deferrer(fake, KINDS, dry_run=dry_run)


def run(fake: FakeDeferrables, deferrer: service.Deferrer, now: Any) -> service.Outcome:
    """One cycle over the schedule as the API server holds it now."""
    fake.calls.clear()
    return deferrer.one(fake.body(), now)


def reasons(outcome: service.Outcome) -> list[tuple[str, str]]:
    return [(event.type, event.reason) for event in outcome.events]


def deferred(fake: FakeDeferrables) -> list[dict[str, Any]]:
    return list(fake.status.get("deferred") or [])


def held(fake: FakeDeferrables) -> bool:
    return service.FINALIZER in fake.finalizers


# --- Deferring and restoring ------------------------------------------------------------------------------


def test_inside_the_window_a_deployment_is_shrunk_after_its_finalizer_and_its_record() -> None:
    fake, deferrer = world(workload(replicas=4))
    outcome = run(fake, deferrer, NOW)

    # The records settle as saved (the write succeeded), so there is no second save.
    assert fake.calls == [*LISTING, "finalizer +", "save", "write Deployment/reports replicas=0"]
    first = fake.saves[0]
    assert first["deferred"] == [{
        "kind": "Deployment", "name": "reports", "uid": "uid-deployment-reports", "field": "replicas",
        "original": {"replicas": 4}, "written": {"replicas": 0}, "since": stamp(NOW),
        "until": "2026-12-01T12:00:00Z", "cause": "Surge", "causeName": SURGE}]
    assert fake.value("Deployment", "reports") == Value(replicas=0)
    assert held(fake)
    assert fake.status["deferredCount"] == 1
    assert fake.status["deferral"] == f"in force until 2026-12-01T12:00:00Z: surge {SURGE}"
    assert outcome.deferred == 1 and not outcome.problems and not outcome.released
    (event,) = outcome.events
    assert (event.type, event.reason) == ("Normal", "Deferred")
    assert SURGE in event.message
    assert event.on == (SCHEDULE_INVOLVED, ports.Involved("apps/v1", "Deployment", NAMESPACE, "reports",
                                                          "uid-deployment-reports"))


def test_mid_window_a_deferred_deployment_is_kept_without_writing() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    outcome = run(fake, deferrer, LATER)
    assert [call for call in fake.calls if call.startswith(("write", "finalizer"))] == []
    assert outcome.deferred == 1 and outcome.events == ()
    assert len(deferred(fake)) == 1 and held(fake)


def test_after_the_window_the_deployment_is_restored_and_the_finalizer_removed() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    outcome = run(fake, deferrer, AFTER)

    assert fake.calls == [*LISTING, "save", "write Deployment/reports replicas=4", "save", "finalizer -"]
    assert fake.saves[-2]["deferred"][0]["original"] == {"replicas": 4}, "the record stays until the restore is done"
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert deferred(fake) == [] and not held(fake)
    assert fake.status["deferredCount"] == 0
    assert fake.status["deferral"].startswith("not in force")
    assert outcome.released and outcome.deferred == 0
    (event,) = outcome.events
    assert (event.type, event.reason) == ("Normal", "Restored")
    assert f"surge {SURGE}" in event.message
    assert event.on[1].name == "reports"


@pytest.mark.parametrize(("replicas", "now_at", "after"), [(2, 2, 4), (4, 4, 4), (9, 4, 4)], ids=[
    "spec.defer.replicas raised mid-window moves the deferred value and still restores the original",
    "spec.defer.replicas raised to the original mid-window restores it at once",
    "spec.defer.replicas raised above the original mid-window restores the original, never more",
])
def test_an_edited_defer_replicas_mid_window(replicas: int, now_at: int, after: int) -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.schedule["spec"]["defer"]["replicas"] = replicas
    run(fake, deferrer, LATER)
    assert fake.value("Deployment", "reports") == Value(replicas=now_at)
    run(fake, deferrer, AFTER)
    assert fake.value("Deployment", "reports") == Value(replicas=after)
    assert deferred(fake) == [] and not held(fake)


def test_before_the_lead_time_nothing_is_written_and_no_finalizer_is_added() -> None:
    fake, deferrer = world(workload(replicas=4))
    outcome = run(fake, deferrer, BEFORE)
    assert fake.effects() == ["save"], "one save: the deferral summary; an unchanged status is not saved again"
    assert fake.writes == [] and not held(fake)
    assert outcome.deferred == 0 and outcome.events == ()
    assert fake.status["deferral"] == "not in force: no surge is within its window or lead time"


KIND_CASES: list[tuple[Any, ...]] = [
    # (workload, spec.defer, value written at NOW (None: left alone), notDeferred reason)
    (workload(replicas=4), {}, Value(replicas=0), None),
    (workload("StatefulSet", "warehouse", replicas=3), {"replicas": 1}, Value(replicas=1), None),
    (workload("CronJob", "nightly-export"), {}, Value(suspend=True), None),
    (workload("Job", "reindex"), {}, Value(suspend=True), None),
    (workload("Job", "reindex", started=True), {}, None, "Running"),
    (workload("Job", "reindex", started=True), {"interruptRunning": True}, Value(suspend=True), None),
    (workload("ScaledObject", "imaging", scaled_replicas=5, scales="Deployment/imaging"), {},
     Value(paused_replicas="0"), None),
    (workload("ScaledObject", "imaging", scaled_replicas=5, scales="Deployment/imaging"), {"replicas": 2},
     Value(paused_replicas="2"), None),
]
KIND_IDS = [
    "a Deployment is shrunk to spec.defer.replicas and restored to its replicas",
    "a StatefulSet is shrunk to spec.defer.replicas and restored to its replicas",
    "a CronJob is suspended and unsuspended",
    "a Job that has not started is suspended and unsuspended",
    "a Job that has started is left running and reported",
    "a Job that has started is suspended with interruptRunning",
    "a ScaledObject gets the paused-replicas annotation and loses it again",
    "a ScaledObject is paused at spec.defer.replicas",
]


@pytest.mark.parametrize(("item", "policy", "written", "reported"), KIND_CASES, ids=KIND_IDS)
def test_each_kind_is_deferred_then_put_back_exactly(item: deferral.Workload, policy: dict[str, Any],
                                                     written: Value | None, reported: str | None) -> None:
    fake, deferrer = world(item, defer={"selector": {"matchLabels": dict(LABELS)}, **policy})
    run(fake, deferrer, NOW)
    if written is None:
        assert fake.writes == [] and deferred(fake) == [] and not held(fake)
        assert [entry["reason"] for entry in fake.status["notDeferred"]] == [reported]
        return
    assert fake.value(item.kind, item.name) == written
    assert deferred(fake)[0]["original"] == item.current.wire()
    run(fake, deferrer, AFTER)
    assert fake.value(item.kind, item.name) == item.current
    assert deferred(fake) == [] and not held(fake)


def test_a_scaled_object_restored_to_no_annotation_writes_the_annotation_unset() -> None:
    fake, deferrer = world(workload("ScaledObject", "imaging", scaled_replicas=5))
    run(fake, deferrer, NOW)
    assert deferred(fake)[0]["original"] == {}
    run(fake, deferrer, AFTER)
    assert fake.writes[-1] == ("ScaledObject", "imaging", {})
    assert fake.value("ScaledObject", "imaging").paused_replicas is None


# --- ClinicalSLO targets -----------------------------------------------------------------------------------

PROTECTED_CASES: list[tuple[Any, ...]] = [
    # (the selected object, the ClinicalSLO)
    (workload(name="ehr-api"), slo_body(target="ehr-api")),
    (workload(name="ehr-api"), slo_body(target="ehr-api", valid=False)),
    (workload("StatefulSet", "ehr-db"), slo_body(target="ehr-db", kind="StatefulSet")),
    (workload("ScaledObject", "ehr-api-scaler", scaled_replicas=5, scales="Deployment/ehr-api"),
     slo_body(target="ehr-api")),
]
PROTECTED_IDS = [
    "a Deployment a ClinicalSLO targets is never written and is reported",
    "a Deployment targeted by a ClinicalSLO whose spec is invalid is still protected",
    "a StatefulSet a ClinicalSLO targets is never written",
    "a ScaledObject scaling a ClinicalSLO's target is never paused",
]


@pytest.mark.parametrize(("item", "slo"), PROTECTED_CASES, ids=PROTECTED_IDS)
def test_a_clinical_slo_target_is_never_deferred(item: deferral.Workload, slo: dict[str, Any]) -> None:
    fake, deferrer = world(item, workload(name="reports"), slos=(slo,))
    first = run(fake, deferrer, NOW)
    second = run(fake, deferrer, LATER)

    assert [write[1] for write in fake.writes] == ["reports"]
    assert fake.value(item.kind, item.name) == item.current
    assert [(entry["kind"], entry["name"], entry["reason"]) for entry in fake.status["notDeferred"]] == [
        (item.kind, item.name, "ClinicalTarget")]
    assert "ed-triage" in fake.status["notDeferred"][0]["message"]
    assert reasons(first).count(("Normal", "ClinicalTarget")) == 1
    assert ("Normal", "ClinicalTarget") not in reasons(second), "a repeating reason is posted once"


def test_a_deferred_deployment_that_becomes_a_clinical_slo_target_is_restored_at_once() -> None:
    fake, deferrer = world(workload(name="ehr-api"))
    run(fake, deferrer, NOW)
    assert fake.value("Deployment", "ehr-api") == Value(replicas=0)
    fake.slos = [slo_body(target="ehr-api")]
    outcome = run(fake, deferrer, LATER)
    assert fake.value("Deployment", "ehr-api") == Value(replicas=4)
    assert ("Normal", "Restored") in reasons(outcome)
    assert deferred(fake) == [] and not held(fake)


# --- Someone else's change wins ----------------------------------------------------------------------------


def test_a_deployment_scaled_by_hand_mid_window_keeps_their_value_and_is_never_written_again() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.set("Deployment", "reports", value=Value(replicas=2))

    mid = run(fake, deferrer, LATER)
    assert [call for call in fake.calls if call.startswith("write")] == []
    assert reasons(mid) == [("Normal", "ChangedByOthers")]
    assert deferred(fake)[0]["overriddenAt"] == stamp(LATER), "kept, marked, so it is not deferred again"
    assert mid.deferred == 0 and fake.status["deferredCount"] == 0
    assert [entry["reason"] for entry in fake.status["notDeferred"]] == ["ChangedByOthers"]

    again = run(fake, deferrer, LATER.replace(minute=10))
    assert [call for call in fake.calls if call.startswith("write")] == []
    assert ("Normal", "ChangedByOthers") not in reasons(again), "posted once, not every cycle"

    after = run(fake, deferrer, AFTER)
    assert [call for call in fake.calls if call.startswith("write")] == []
    assert fake.value("Deployment", "reports") == Value(replicas=2)
    assert reasons(after) == [("Normal", "ChangedByOthers")]
    assert deferred(fake) == [] and not held(fake) and after.released


def test_a_change_between_the_read_and_the_restore_is_refused_by_the_test_and_set_and_kept() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    original_write = fake.write

    def change_first(namespace: str, write: deferral.Write) -> None:
        fake.set("Deployment", "reports", value=Value(replicas=7))  # someone scaled it just now
        original_write(namespace, write)

    fake.write = change_first  # type: ignore[method-assign]
    run(fake, deferrer, AFTER)
    assert fake.value("Deployment", "reports") == Value(replicas=7)
    assert len(deferred(fake)) == 1, "a refused restore keeps its record"
    fake.write = original_write  # type: ignore[method-assign]
    outcome = run(fake, deferrer, AFTER.replace(minute=1))
    assert [call for call in fake.calls if call.startswith("write")] == []
    assert ("Normal", "ChangedByOthers") in reasons(outcome)
    assert fake.value("Deployment", "reports") == Value(replicas=7)
    assert deferred(fake) == [] and not held(fake)


# --- Preview -----------------------------------------------------------------------------------------------

PREVIEW_CASES: list[tuple[Any, ...]] = [
    # (dry run, ClinicalSLOs, the preview sentence in status.deferral)
    (True, (), "--dry-run"),
    (False, (slo_body(mode="Preview"),), "mode Preview"),
    (False, (slo_body(mode="Preview"), slo_body("ed-beds", mode="Preview", target="beds")), "mode Preview"),
]
PREVIEW_IDS = [
    "with --dry-run nothing is written and WouldDefer is posted once",
    "with the selected ClinicalSLO in Preview nothing is written and WouldDefer is posted once",
    "with a Preview ClinicalSLO selected and an Active one not selected nothing is written",
]


@pytest.mark.parametrize(("dry_run", "slos", "why"), PREVIEW_CASES, ids=PREVIEW_IDS)
def test_preview_writes_nothing_and_says_what_it_would_defer_once(dry_run: bool, slos: tuple[dict[str, Any], ...],
                                                                  why: str) -> None:
    fake, deferrer = world(workload(replicas=4), slos=slos, dry_run=dry_run)
    first = run(fake, deferrer, NOW)
    calls = list(fake.calls)
    second = run(fake, deferrer, LATER)
    calls += fake.calls

    assert [call for call in calls if call.startswith(("write", "finalizer"))] == []
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert reasons(first) == [("Normal", "WouldDefer")] and reasons(second) == []
    assert "would defer Deployment reports replicas 4 -> 0" in first.events[0].message
    assert fake.status["deferral"].startswith("in force until")
    assert "preview, nothing new is deferred" in fake.status["deferral"] and why in fake.status["deferral"]
    assert deferred(fake) == [] and fake.status["deferredCount"] == 0


def test_a_preview_clinical_slo_with_an_unreadable_status_item_is_still_in_preview() -> None:
    slo = slo_body(mode="Preview")
    slo["status"] = {"conditions": [{"type": "Ready", "status": "Maybe"}]}  # by hand, or a newer operator
    fake, deferrer = world(workload(replicas=4), slos=(slo,))
    outcome = run(fake, deferrer, NOW)
    assert fake.writes == [] and reasons(outcome) == [("Normal", "WouldDefer")]


def test_a_burn_is_seen_beside_an_unreadable_status_item() -> None:
    slo = slo_body(criticality="critical", conditions=[*burning(), {"type": "Ready", "status": "Maybe"}])
    fake, deferrer = world(workload(replicas=4), slos=(slo,),
                           defer={"selector": {"matchLabels": dict(LABELS)}, "duringBurn": True})
    run(fake, deferrer, BEFORE)
    assert fake.value("Deployment", "reports") == Value(replicas=0)


def test_an_active_clinical_slo_among_the_selected_ones_means_no_preview() -> None:
    slos = (slo_body(mode="Preview"), slo_body("ed-beds", target="beds", labels={"group": "ed"}))
    fake, deferrer = world(workload(replicas=4), slos=slos)
    fake.schedule["spec"]["sloRefs"] = ["ed-triage", "ed-beds"]
    run(fake, deferrer, NOW)
    assert fake.value("Deployment", "reports") == Value(replicas=0)


def test_preview_still_restores_what_healthscale_deferred_before() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    dry = service.Deferrer(fake, KINDS, dry_run=True)
    outcome = run(fake, dry, LATER)
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert ("Normal", "Restored") in reasons(outcome)
    assert deferred(fake) == [] and not held(fake)


# --- Faults ------------------------------------------------------------------------------------------------

READ_FAULTS = [
    ("clinical_slos", ports.ApiError("HTTP 503", retryable=True, status=503)),
    ("selected", ports.ApiError("read timed out after 10s", retryable=True, status=0)),
    ("selected", ports.ApiError("HTTP 403", retryable=False, status=403)),
]


@pytest.mark.parametrize(("read", "fault"), READ_FAULTS, ids=[
    "a failed read of the ClinicalSLOs plans nothing and writes nothing",
    "a listing that times out plans nothing and writes nothing",
    "a forbidden listing plans nothing and writes nothing",
])
def test_a_failed_read_plans_nothing(read: str, fault: Exception) -> None:
    fake, deferrer = world(workload(replicas=4))
    fake.read_faults[read] = fault
    outcome = run(fake, deferrer, NOW)
    assert fake.effects() == ["save"], "only status.deferral, which says why nothing was planned"
    assert fake.status["deferral"].startswith("not planned this cycle, nothing changed")
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert outcome.problems and outcome.problems[0].startswith("not planned")
    assert outcome.events == ()
    run(fake, deferrer, NOW)
    assert fake.effects() == [], "said once: the same reason is not saved again"


def test_a_failed_read_of_a_recorded_object_never_counts_as_gone() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.set("Deployment", "reports", labels={})  # no longer selected: read by name
    fake.read_faults["read"] = ports.ApiError("read timed out after 10s", retryable=True, status=0)
    outcome = run(fake, deferrer, LATER)
    assert "read Deployment/reports" in fake.calls
    assert fake.effects() == ["save"] and outcome.problems, "status.deferral says why; no record is touched"
    assert len(deferred(fake)) == 1 and held(fake)
    del fake.read_faults["read"]
    run(fake, deferrer, LATER.replace(minute=5))
    assert fake.value("Deployment", "reports") == Value(replicas=4), "no longer selected: restored"
    assert deferred(fake) == [] and not held(fake)


def test_a_failed_status_save_before_the_writes_means_no_write() -> None:
    fake, deferrer = world(workload(replicas=4))
    fake.save_faults = [ports.ApiError("HTTP 500", retryable=True, status=500)]
    outcome = run(fake, deferrer, NOW)
    assert fake.calls[-2:] == ["finalizer +", "save"]
    assert fake.writes == [] and fake.value("Deployment", "reports") == Value(replicas=4)
    assert outcome.problems and "nothing written" in outcome.problems[0]
    run(fake, deferrer, LATER)
    assert fake.value("Deployment", "reports") == Value(replicas=0), "the next cycle defers"
    assert fake.calls.count("finalizer +") == 0, "the finalizer stayed on"


def test_a_failed_finalizer_before_the_first_deferral_means_no_record_and_no_write() -> None:
    fake, deferrer = world(workload(replicas=4))
    fake.finalizer_faults = [ports.ApiError("HTTP 409", retryable=True, status=409)]
    outcome = run(fake, deferrer, NOW)
    assert fake.effects() == ["finalizer +"]
    assert fake.writes == [] and not held(fake) and outcome.problems


@pytest.mark.parametrize("status", [0, 500, 503], ids=[
    "a restore with no answer keeps its record and is tried again next cycle",
    "a restore failing with 500 keeps its record and is tried again next cycle",
    "a restore failing with 503 keeps its record and is tried again next cycle",
])
def test_a_failed_restore_is_retried(status: int) -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.write_faults["reports"] = [refused(status)]
    failing = run(fake, deferrer, AFTER)
    assert fake.value("Deployment", "reports") == Value(replicas=0)
    assert len(deferred(fake)) == 1 and held(fake) and not failing.released
    assert ("Warning", "RestoreFailed") in reasons(failing) and failing.problems

    retried = run(fake, deferrer, AFTER.replace(minute=1))
    assert fake.calls[-3:] == ["write Deployment/reports replicas=4", "save", "finalizer -"]
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert deferred(fake) == [] and not held(fake) and retried.released


@pytest.mark.parametrize("error", [refused(403), refused(409), refused(422),
                                   ports.NotFound("Deployment ehr/reports with uid u not found")], ids=[
    "a deferral refused with 403 leaves no record",
    "a deferral refused with 409 leaves no record",
    "a deferral refused with 422 leaves no record",
    "a deferral of an object re-created since the listing leaves no record",
])
def test_a_refused_deferral_leaves_no_record(error: Exception) -> None:
    fake, deferrer = world(workload(replicas=4))
    fake.write_faults["reports"] = [error]
    outcome = run(fake, deferrer, NOW)
    assert fake.writes == [] and fake.value("Deployment", "reports") == Value(replicas=4)
    assert deferred(fake) == [] and fake.status["deferredCount"] == 0
    assert outcome.problems and ("Normal", "Deferred") not in reasons(outcome)
    assert not held(fake), "nothing left deferred: the finalizer does not stay"


def test_a_deferral_with_no_answer_keeps_its_record_and_never_fights_afterwards() -> None:
    fake, deferrer = world(workload(replicas=4))
    fake.write_faults["reports"] = [refused(0)]
    run(fake, deferrer, NOW)
    assert len(deferred(fake)) == 1 and held(fake), "it may have been applied"
    outcome = run(fake, deferrer, LATER)
    assert [call for call in fake.calls if call.startswith("write")] == [], "not applied: someone else's value"
    assert ("Normal", "ChangedByOthers") in reasons(outcome)
    assert fake.value("Deployment", "reports") == Value(replicas=4)


def test_a_restore_of_an_object_re_created_since_is_dropped_and_never_written_to_the_new_one() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.set("Deployment", "reports", uid="uid-new", value=Value(replicas=1))
    outcome = run(fake, deferrer, AFTER)
    assert [call for call in fake.calls if call.startswith("write")] == []
    assert ("Normal", "Recreated") in reasons(outcome)
    assert fake.value("Deployment", "reports") == Value(replicas=1)
    assert deferred(fake) == [] and not held(fake)


def test_a_failed_finalizer_removal_is_tried_again_next_cycle() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.finalizer_faults = [refused(0)]
    first = run(fake, deferrer, AFTER)
    assert held(fake) and not first.released and first.problems
    second = run(fake, deferrer, AFTER.replace(minute=1))
    assert fake.effects() == ["finalizer -"], "the status is as saved: only the finalizer is tried again"
    assert not held(fake) and second.released


# --- Deletion -----------------------------------------------------------------------------------------------


def test_a_deleted_schedule_restores_then_lets_go() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.delete_schedule()
    outcome = run(fake, deferrer, LATER)
    assert fake.effects() == ["save", "write Deployment/reports replicas=4", "save", "finalizer -"]
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert reasons(outcome) == [("Normal", "Restored")]
    assert outcome.released and not held(fake)


@pytest.mark.parametrize("error", [refused(403), refused(422), ports.NotFound("gone")], ids=[
    "a deleted schedule whose restore is forbidden lets go at once with a RestoreFailed Warning",
    "a deleted schedule whose restore is invalid lets go at once with a RestoreFailed Warning",
    "a deleted schedule whose object was re-created lets go at once with a RestoreFailed Warning",
])
def test_a_deleted_schedule_whose_restores_are_refused_is_never_stuck(error: Exception) -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.delete_schedule()
    fake.write_faults["reports"] = [error]
    outcome = run(fake, deferrer, LATER)
    assert fake.calls[-1] == "finalizer -"
    assert outcome.released and not held(fake)
    warning = [event for event in outcome.events
               if event.reason == "RestoreFailed" and "left as they are" in event.message]
    assert len(warning) == 1 and warning[0].type == "Warning" and "Deployment reports replicas" in warning[0].message
    assert warning[0].on == (SCHEDULE_INVOLVED,)


def test_a_deleted_schedule_whose_restores_get_no_answer_holds_its_finalizer_then_lets_go() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.delete_schedule()
    fake.write_faults["reports"] = [refused(0)] * service.GIVE_UP_CYCLES
    for cycle in range(1, service.GIVE_UP_CYCLES):
        outcome = run(fake, deferrer, LATER)
        assert held(fake) and not outcome.released, f"cycle {cycle}"
        assert not any("left as they are" in event.message for event in outcome.events)
    outcome = run(fake, deferrer, LATER)
    assert outcome.released and not held(fake)
    assert any(event.type == "Warning" and event.reason == "RestoreFailed" and "left as they are" in event.message
               for event in outcome.events)
    assert fake.value("Deployment", "reports") == Value(replicas=0)
    assert deferrer.failing == {}, "the count is forgotten with the schedule"


def test_a_deleted_schedule_whose_restores_recover_before_giving_up_restores() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.delete_schedule()
    fake.write_faults["reports"] = [refused(503), refused(503)]
    for _ in range(2):
        assert not run(fake, deferrer, LATER).released
    outcome = run(fake, deferrer, LATER)
    assert outcome.released and fake.value("Deployment", "reports") == Value(replicas=4)
    assert not any("left as they are" in event.message for event in outcome.events)


# --- spec.defer removed, or never there ---------------------------------------------------------------------


def test_a_schedule_whose_defer_was_removed_restores_then_clears_its_deferral_status_once() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    del fake.schedule["spec"]["defer"]

    restoring = run(fake, deferrer, LATER)
    assert fake.effects() == ["save", "write Deployment/reports replicas=4", "save", "finalizer -"]
    assert fake.calls[0] == "clinical_slos" and "read Deployment/reports" in fake.calls
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert "spec.defer is unset" in restoring.events[0].message
    assert restoring.released

    fake.calls.clear()
    clearing = deferrer.cycle()
    assert fake.calls == ["schedules", "save"]
    assert fake.saves[-1] == {"deferred": [], "notDeferred": [], "fastBurns": [], "deferredCount": None,
                              "deferral": None}
    assert clearing[0].deferred is None
    assert "deferredCount" not in fake.status and "deferral" not in fake.status

    fake.calls.clear()
    deferrer.cycle()
    assert fake.calls == ["schedules"], "cleared once, not every cycle"


def test_a_schedule_that_never_had_defer_makes_no_call_beyond_the_listing() -> None:
    fake, deferrer = world(workload(replicas=4), with_defer=False)
    outcomes = deferrer.cycle()
    assert fake.calls == ["schedules"]
    assert [(outcome.name, outcome.deferred, outcome.events) for outcome in outcomes] == [(SCHEDULE, None, ())]


def test_a_schedule_whose_spec_became_invalid_restores_what_it_deferred() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.schedule["spec"]["surges"] = []
    run(fake, deferrer, LATER)
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert deferred(fake) == [] and not held(fake)


def test_an_unreadable_status_item_does_not_make_the_schedule_invalid() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    # Written by hand, or by a newer operator: a reason longer than this version allows.
    fake.status["notDeferred"] = [{"kind": "Deployment", "name": "x", "reason": "R" * 100}]
    outcome = run(fake, deferrer, LATER)
    assert fake.value("Deployment", "reports") == Value(replicas=0), "a bad status item must not end deferral"
    assert outcome.deferred == 1 and held(fake)


# --- During a fast burn --------------------------------------------------------------------------------------

BURN_CASES: list[tuple[Any, ...]] = [
    # (the ClinicalSLO, whether deferral comes into force)
    (slo_body("ed-triage", criticality="critical", conditions=burning("LatencyObjectiveMet")), True),
    (slo_body("ed-triage", criticality="critical", conditions=burning("AvailabilityObjectiveMet")), True),
    (slo_body("ed-triage", criticality="standard", conditions=burning("LatencyObjectiveMet")), False),
    (slo_body("ed-triage", criticality="high", conditions=burning("AvailabilityObjectiveMet")), False),
    (slo_body("ed-triage", criticality="critical", conditions=burning("LatencyObjectiveMet", "SlowBurn")), False),
    (slo_body("ed-triage", criticality="critical", conditions=burning("Ready")), False),
]
BURN_IDS = [
    "a critical ClinicalSLO burning its latency budget fast puts deferral in force outside any window",
    "a critical ClinicalSLO burning its availability budget fast puts deferral in force outside any window",
    "a standard ClinicalSLO burning fast defers nothing",
    "a high ClinicalSLO burning fast defers nothing",
    "a critical ClinicalSLO burning slowly defers nothing",
    "a FastBurn reason on another condition defers nothing",
]


@pytest.mark.parametrize(("slo", "in_force"), BURN_CASES, ids=BURN_IDS)
def test_during_burn_defers_while_a_critical_clinical_slo_burns_fast(slo: dict[str, Any], in_force: bool) -> None:
    fake, deferrer = world(workload(replicas=4), slos=(slo,),
                           defer={"selector": {"matchLabels": dict(LABELS)}, "duringBurn": True})
    outcome = run(fake, deferrer, BEFORE)
    if not in_force:
        assert fake.writes == [] and not held(fake) and fake.status["fastBurns"] == []
        return
    assert fake.value("Deployment", "reports") == Value(replicas=0)
    assert fake.status["fastBurns"] == [{"slo": "ed-triage", "lastSeen": stamp(BEFORE)}]
    assert fake.saves[0]["fastBurns"] == fake.status["fastBurns"], "saved with the records, before the write"
    (record,) = deferred(fake)
    assert (record["cause"], record["causeName"]) == ("FastBurn", "ed-triage")
    assert "fast burn of ClinicalSLO ed-triage" in outcome.events[0].message


def test_deferral_during_a_burn_holds_for_the_stabilisation_after_it_was_last_seen() -> None:
    slo = slo_body("ed-triage", criticality="critical", conditions=burning())
    fake, deferrer = world(workload(replicas=4), slos=(slo,),
                           defer={"selector": {"matchLabels": dict(LABELS)}, "duringBurn": True})
    run(fake, deferrer, BEFORE)
    fake.slos = [slo_body("ed-triage", criticality="critical")]  # the burn stopped
    run(fake, deferrer, BEFORE.replace(minute=9))
    assert fake.value("Deployment", "reports") == Value(replicas=0), "within the 600s stabilisation"
    assert fake.status["fastBurns"] == [{"slo": "ed-triage", "lastSeen": stamp(BEFORE)}]
    run(fake, deferrer, BEFORE.replace(minute=10))
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert fake.status["fastBurns"] == [] and not held(fake)


def test_without_during_burn_a_fast_burn_defers_nothing() -> None:
    slo = slo_body("ed-triage", criticality="critical", conditions=burning())
    fake, deferrer = world(workload(replicas=4), slos=(slo,))
    run(fake, deferrer, BEFORE)
    assert fake.writes == [] and fake.status["fastBurns"] == []


def test_kinds_the_adapter_does_not_serve_are_never_listed() -> None:
    fake = FakeDeferrables()
    fake.add(workload(), workload("ScaledObject", "imaging", scaled_replicas=5))
    deferrer = service.Deferrer(fake, ("Deployment", "HorizontalPodAutoscaler"))
    assert deferrer.kinds == ("Deployment",)
    deferrer.one(fake.body(), NOW)
    assert [write[0] for write in fake.writes] == ["Deployment"]
    assert fake.value("ScaledObject", "imaging").paused_replicas is None


# --- Warnings once, steady state, the finalizer, an invalid spec ---------------------------------------------


def warnings(outcome: service.Outcome, reason: str) -> list[service.Posted]:
    return [event for event in outcome.events if (event.type, event.reason) == ("Warning", reason)]


@pytest.mark.parametrize("error", [refused(403), refused(422)], ids=[
    "a deferral forbidden for several cycles posts one DeferFailed Warning, not one per cycle",
    "a deferral refused as invalid for several cycles posts one DeferFailed Warning, not one per cycle",
])
def test_a_refused_deferral_warns_once_across_cycles(error: Exception) -> None:
    fake, deferrer = world(workload(replicas=4))
    fake.write_faults["reports"] = [error] * 3
    outcomes, tried = [], 0
    for minute in range(3):
        outcomes.append(run(fake, deferrer, NOW + dt.timedelta(minutes=minute)))
        tried += sum(1 for call in fake.calls if call.startswith("write"))
    assert tried == 3, "tried again every cycle"
    assert [len(warnings(outcome, "DeferFailed")) for outcome in outcomes] == [1, 0, 0]
    assert fake.value("Deployment", "reports") == Value(replicas=4) and deferred(fake) == []
    run(fake, deferrer, NOW + dt.timedelta(minutes=3))
    assert fake.value("Deployment", "reports") == Value(replicas=0), "deferred once the API server lets it"


@pytest.mark.parametrize("error", [refused(503), refused(403)], ids=[
    "a restore failing with 503 for several cycles posts one RestoreFailed Warning, not one per cycle",
    "a restore forbidden for several cycles posts one RestoreFailed Warning, not one per cycle",
])
def test_a_failing_restore_warns_once_across_cycles(error: Exception) -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.write_faults["reports"] = [error] * 3
    outcomes = [run(fake, deferrer, AFTER + dt.timedelta(minutes=minute)) for minute in range(3)]
    assert [len(warnings(outcome, "RestoreFailed")) for outcome in outcomes] == [1, 0, 0]
    assert len(deferred(fake)) == 1 and held(fake), "the record and the finalizer stay while it fails"
    last = run(fake, deferrer, AFTER + dt.timedelta(minutes=3))
    assert fake.value("Deployment", "reports") == Value(replicas=4)
    assert reasons(last) == [("Normal", "Restored")] and last.released


def test_a_steady_window_saves_no_status_and_writes_nothing() -> None:
    fake, deferrer = world(workload(replicas=4), workload("CronJob", "nightly-export"))
    run(fake, deferrer, NOW)
    saved = len(fake.saves)
    outcome = run(fake, deferrer, LATER)
    assert fake.effects() == [], "nothing changed: no save, no write, no finalizer call"
    assert len(fake.saves) == saved and outcome.deferred == 2 and outcome.events == ()


def test_records_whose_finalizer_was_removed_by_hand_get_it_back() -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    fake.schedule["metadata"]["finalizers"] = []  # someone removed it
    outcome = run(fake, deferrer, LATER)
    assert fake.effects() == ["finalizer +"]
    assert held(fake) and outcome.deferred == 1 and not outcome.problems
    fake.delete_schedule()
    run(fake, deferrer, LATER.replace(minute=10))
    assert fake.value("Deployment", "reports") == Value(replicas=4), "so that deleting the schedule restores it"
    assert not held(fake)


INVALID_SPECS: list[tuple[str, Any]] = [
    ("an unknown field", lambda spec: spec.update(surprise=True)),
    ("a surge without start", lambda spec: spec["surges"][0].pop("start")),
    ("a spec.defer without selector", lambda spec: spec["defer"].pop("selector")),
]


@pytest.mark.parametrize(("what", "breaking"), INVALID_SPECS, ids=[
    "a schedule whose spec gained an unknown field restores what it deferred and says its spec is invalid",
    "a schedule whose surge lost its start restores what it deferred and says its spec is invalid",
    "a schedule whose spec.defer lost its selector restores what it deferred and says its spec is invalid",
])
def test_a_schedule_with_an_invalid_spec_restores_and_says_why(what: str, breaking: Any) -> None:
    fake, deferrer = world(workload(replicas=4))
    run(fake, deferrer, NOW)
    breaking(fake.schedule["spec"])
    outcome = run(fake, deferrer, LATER)
    assert fake.value("Deployment", "reports") == Value(replicas=4), what
    assert deferred(fake) == [] and not held(fake) and outcome.released
    assert "spec is invalid" in fake.status["deferral"] and "being deleted" not in fake.status["deferral"]
    assert reasons(outcome) == [("Normal", "Restored")]
    assert "spec is invalid" in outcome.events[0].message and "being deleted" not in outcome.events[0].message


# --- Ahead of the planner ------------------------------------------------------------------------------------


SLO_REACH = {"startupSeconds": 300}
"""startupSeconds 300 and the default forecast.step (5m): the planner asks for the surge's replicas
600 s before its start - leadTime (07:00), so deferral starts a cycle (20 s) before that."""


@pytest.mark.parametrize(("slo_name", "minutes_early", "deferred_now"), [
    pytest.param("ed-triage", 10, True,
                 id="a selected ClinicalSLO's reach brings deferral forward so the room is free before its pods"),
    pytest.param("ed-triage", 11, False, id="but no further than that reach plus one deferral cycle"),
    pytest.param("other-journey", 10, False,
                 id="a ClinicalSLO the schedule does not select brings nothing forward"),
])
def test_deferral_starts_ahead_of_the_planners_scale_up(slo_name: str, minutes_early: int,
                                                        deferred_now: bool) -> None:
    slo = slo_body(slo_name, target="ehr-api")
    slo["spec"]["capacity"].update(SLO_REACH)
    fake, deferrer = world(workload(replicas=4), slos=(slo,))
    effective_start = dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.timezone.utc)
    run(fake, deferrer, effective_start - dt.timedelta(minutes=minutes_early))
    assert (fake.value("Deployment", "reports").replicas == 0) == deferred_now
