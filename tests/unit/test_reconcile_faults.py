"""The reconcile under faults (issue 10's table), one row per case, with in-memory fakes of the ports.

Each test arranges a world (``reconcile_fakes.Harness``: a Deployment ``ehr-api``, maybe its HPA,
Prometheus, the ClinicalSLO's persisted originals), drives one or more cycles the way the runtime
does (each cycle's status is the next one's ``previous``; a restart is a fresh ``cycle.Memory`` and
the status the API server holds), and asserts what a platform team would see: replicas, HPA floors,
conditions, Events, what deletion puts back. Unless a row says otherwise, the surge
``vaccination-drive`` holds a floor of 20 at NOW.
"""

from __future__ import annotations

import datetime as dt

import pytest

from healthscale import ports
from healthscale.api import clinicalslo
from healthscale.service import cycle
from reconcile_fakes import HPA, SURGE_20, SURGE_OVER, NOW, Arrange, Harness, refused, schedule, slo

DEPLOYMENT = "Deployment"


def world(replicas: int = 3, *, hpa: tuple[int, int] | None = None, surge: bool = True,
          resource: clinicalslo.ClinicalSLO | None = None) -> Harness:
    """A Deployment ``ehr-api`` with ``replicas`` (and an HPA ``ehr-api`` with (min, max) when given)."""
    harness = Harness(resource=resource or slo(), schedules=(SURGE_20,) if surge else ())
    harness.workloads.deployment("ehr-api", replicas)
    if hpa is not None:
        harness.workloads.hpa("ehr-api", *hpa)
    return harness


def minutes_after_surge(extra: int = 0) -> float:
    return (SURGE_OVER - NOW) / 60 + extra


# ------------------------------------------------------------------------ floors never wait for metrics


def infinite(harness: Harness) -> None:
    harness.metrics.infinite = True


def two_series(harness: Harness) -> None:
    harness.metrics.series = 2


def fails(reason: ports.MetricsReason) -> Arrange:
    def arrange(harness: Harness) -> None:
        harness.metrics.fault = ports.MetricsError(reason, f"canned {reason}")
    return arrange


@pytest.mark.parametrize(("arrange", "reason"), [
    pytest.param(infinite, "NonFiniteSample",
                 id="a +Inf demand sample gives no forecast (NonFiniteSample) and the surge floor 20 still applies"),
    pytest.param(two_series, "InvalidQuery",
                 id="a demand query returning two series is an InvalidQuery and the surge floor still applies"),
    pytest.param(fails("InvalidQuery"), "InvalidQuery",
                 id="a scalar result (InvalidQuery from the adapter) costs the forecast, not the surge floor"),
    pytest.param(fails("BadResponse"), "BadResponse",
                 id="a 200 answer without data (BadResponse) costs the forecast, not the surge floor"),
    pytest.param(fails("PrometheusUnavailable"), "PrometheusUnavailable",
                 id="an unavailable Prometheus costs the forecast, not the surge floor"),
])
def test_a_broken_demand_signal_is_a_reason_in_status_and_the_surge_floor_still_applies(
        arrange: Arrange, reason: str) -> None:
    harness = world(replicas=3)
    arrange(harness)
    result = harness.cycle_at(0)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20, "the surge floor must be applied"
    assert harness.condition("MetricsAvailable") == ("False", reason)
    assert harness.condition("Forecasting") == ("False", reason)
    assert harness.condition("Ready") == ("True", "Planned")
    assert result.decision is not None and result.decision.no_forecast is not None
    assert result.status.model == f"none ({reason})"
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", "uid-1", 3)]


def test_an_unavailable_prometheus_never_scales_down_even_where_a_forecast_would() -> None:
    healthy = world(replicas=10, surge=False)
    decision = healthy.cycle_at(0).decision
    assert decision is not None and decision.recommended == 2, "with Prometheus up the forecast asks for 2"

    harness = world(replicas=10, surge=False)
    fails("PrometheusUnavailable")(harness)
    for minutes in (0, 5, 10):
        result = harness.cycle_at(minutes)
        assert result.decision is not None
        assert any("no forecast" in guard for guard in result.decision.guards)
    assert harness.workloads.writes == []
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 10


def test_a_slow_prometheus_skips_the_burn_reads_and_the_floor_was_written_before_any_metric_was_read() -> None:
    control = world(replicas=3, resource=slo(burn=True))
    control.cycle_at(0)
    assert "metrics.instant" in control.log, "burn rates are read when there is time"

    harness = world(replicas=3, resource=slo(burn=True))
    harness.metrics.slow = cycle.BUDGET_SECONDS + 1
    result = harness.cycle_at(0)
    first_metric = next(index for index, call in enumerate(harness.log) if call.startswith("metrics."))
    first_write = harness.log.index("workloads.write Deployment/ehr-api")
    assert first_write < first_metric, harness.log
    assert "metrics.instant" not in harness.log, "burn reads are skipped once the budget is spent"
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20
    assert result.status.burn_rates == {}


# ------------------------------------------------------------------------ one bad object harms no other


def with_timezone(zone: str) -> Arrange:
    def arrange(harness: Harness) -> None:
        broken = schedule("broken-calendar", floor=40)
        spec = broken.spec.model_copy(update={"timezone": zone})  # model_copy does not validate: as if stored
        harness.schedules = (broken.model_copy(update={"spec": spec}), SURGE_20)
    return arrange


def with_overflowing_lead_time(harness: Harness) -> None:
    broken = schedule("broken-calendar", floor=40)
    surge = broken.spec.surges[0].model_copy(update={"lead_time": dt.timedelta(days=999_999)})
    spec = broken.spec.model_copy(update={"surges": (surge,)})
    harness.schedules = (SURGE_20, broken.model_copy(update={"spec": spec}))


@pytest.mark.parametrize("arrange", [
    pytest.param(with_timezone("America"), id="a schedule whose timezone is a tz database directory is skipped"),
    pytest.param(with_timezone("leapseconds"), id="a schedule whose timezone is a tz data file is skipped"),
    pytest.param(with_overflowing_lead_time, id="a schedule whose lead time overflows the calendar is skipped"),
])
def test_an_unreadable_surge_schedule_is_skipped_and_reported_and_other_schedules_still_apply(
        arrange: Arrange) -> None:
    harness = world(replicas=3)
    arrange(harness)
    result = harness.cycle_at(0)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20, "the valid schedule's floor applies"
    warnings_ = [event for event in result.events if event.reason == "InvalidSurgeSchedule"]
    assert len(warnings_) == 1 and warnings_[0].type == "Warning" and "broken-calendar" in warnings_[0].message
    assert harness.condition("SchedulesValid") == ("False", "InvalidSurgeSchedule")
    assert harness.condition("Ready") == ("True", "Planned")
    assert result.status.next_surge is not None and result.status.next_surge.startswith("vaccination-drive")


# ------------------------------------------------------------------ everything changed is put back


def test_renaming_the_target_mid_surge_restores_the_old_target_and_records_the_new_one() -> None:
    harness = world(replicas=3)
    harness.workloads.deployment("ehr-api-v2", 4)
    harness.cycle_at(0)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20
    result = harness.cycle_at(5, resource=slo("ehr-api-v2"))
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3, "the old target is restored"
    assert harness.workloads.value(DEPLOYMENT, "ehr-api-v2") == 20
    assert harness.originals() == [(DEPLOYMENT, "ehr-api-v2", "uid-2", 4)]
    assert "Restored" in harness.reasons()
    assert result.status.originals == tuple(clinicalslo.Original.model_validate(item) for item in harness.records.saved)
    harness.release()
    assert harness.workloads.value(DEPLOYMENT, "ehr-api-v2") == 4
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3


@pytest.mark.parametrize("scaled_by_hpa", [
    pytest.param(True, id="the HPA had already scaled the Deployment to the floor before it was deleted"),
    pytest.param(False, id="the HPA was deleted before it scaled the Deployment"),
])
def test_an_hpa_deleted_while_its_floor_is_held_hands_its_original_floor_to_the_deployment(
        scaled_by_hpa: bool) -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.cycle_at(0)
    assert harness.workloads.value(HPA, "ehr-api") == 20
    assert harness.originals() == [(HPA, "ehr-api", "uid-2", 3)]
    if scaled_by_hpa:
        harness.workloads.get(DEPLOYMENT, "ehr-api").value = 20  # the HPA controller follows its floor
    harness.workloads.delete(HPA, "ehr-api")

    harness.cycle_at(5)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20, "the Deployment is now scaled directly"
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", "uid-1", 3)], \
        "the Deployment's record must carry the HPA's original floor (3), not the surge value"
    released = harness.release()
    assert released.unrestored == ()
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3


def test_an_hpa_added_after_direct_scaling_takes_over_and_its_floor_is_what_deletion_restores() -> None:
    harness = world(replicas=3)
    harness.cycle_at(0)
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", "uid-1", 3)]
    harness.workloads.hpa("ehr-api", 4, 30)
    harness.cycle_at(5)
    assert "ManagedByHPA" in harness.reasons()
    assert harness.originals() == [(HPA, "ehr-api", "uid-2", 4)]
    assert harness.workloads.value(HPA, "ehr-api") == 20
    writes_before = len(harness.workloads.writes)
    released = harness.release()
    assert released.unrestored == ()
    assert harness.workloads.value(HPA, "ehr-api") == 4
    assert [(write.kind, write.value) for write in harness.workloads.writes[writes_before:]] == [(HPA, 4)], \
        "the Deployment's replicas are the HPA's to set: deletion writes only the HPA"


@pytest.mark.parametrize(("resource", "dry_run"), [
    pytest.param(slo(mode="Preview"), False, id="switching Active to Preview restores at the switch"),
    pytest.param(slo(), True, id="restarting the operator with --dry-run restores at the switch"),
])
def test_leaving_active_mode_restores_everything_at_once(resource: clinicalslo.ClinicalSLO, dry_run: bool) -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.cycle_at(0)
    assert harness.workloads.value(HPA, "ehr-api") == 20
    result = harness.cycle_at(5, resource=resource, dry_run=dry_run)
    assert harness.workloads.value(HPA, "ehr-api") == 3
    assert result.status.originals == () and harness.records.saved == []
    assert result.scaled is False
    writes_before = len(harness.workloads.writes)
    harness.cycle_at(10, resource=resource, dry_run=dry_run)
    released = harness.release()
    assert released.unrestored == () and released.events == ()
    assert len(harness.workloads.writes) == writes_before, "nothing is left to write"


@pytest.mark.parametrize("cycles_after_restart", [
    pytest.param(0, id="a kill between the HPA patch and the status write is undone by deletion"),
    pytest.param(2, id="after a kill the restarted operator keeps the original through further cycles"),
])
def test_the_original_is_persisted_before_the_write_so_a_kill_loses_nothing(cycles_after_restart: int) -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.cycle_at(0, status_written=False)  # killed right after the HPA patch
    assert harness.workloads.value(HPA, "ehr-api") == 20
    assert harness.log.index("records.save_originals") < harness.log.index("workloads.write HorizontalPodAutoscaler/ehr-api")
    harness.restart()
    assert harness.originals() == [(HPA, "ehr-api", "uid-2", 3)]
    for number in range(cycles_after_restart):
        harness.cycle_at(5 * (number + 1))
        assert harness.originals() == [(HPA, "ehr-api", "uid-2", 3)]
    released = harness.release()
    assert released.unrestored == ()
    assert harness.workloads.value(HPA, "ehr-api") == 3


def test_the_floor_is_never_set_below_the_hpa_owners_own_min_replicas() -> None:
    harness = world(replicas=6, hpa=(6, 30), resource=slo(min_replicas=2), surge=False)
    for minutes in (0, 5, 10):
        harness.cycle_at(minutes)
        assert harness.result.decision is not None and harness.result.decision.recommended == 2
    assert harness.workloads.writes == [], "no surge and a low forecast: the owner's 6 stays"
    harness.cycle_at(15, schedules=(SURGE_20,))  # the surge is on: 6 -> 20
    assert harness.workloads.value(HPA, "ehr-api") == 20
    for step in range(12):  # and ends: stepped back down, never below 6
        harness.cycle_at(minutes_after_surge(5 * step))
    assert min(harness.workloads.writes_to(HPA, "ehr-api")) == 6
    assert harness.workloads.value(HPA, "ehr-api") == 6
    harness.release()
    assert harness.workloads.value(HPA, "ehr-api") == 6


@pytest.mark.parametrize(("error", "retryable"), [
    pytest.param(refused(403), False, id="a restore the API server forbids (403) is named and not retried"),
    pytest.param(refused(422), False, id="a restore the API server rejects (422) is named and not retried"),
    pytest.param(refused(0), True, id="a restore that times out is named and retried"),
    pytest.param(refused(409), True, id="a restore that conflicts (409) is named and retried"),
])
def test_a_refused_restore_at_deletion_is_named_and_says_whether_to_retry(
        error: ports.ApiError, retryable: bool) -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.cycle_at(0)
    harness.workloads.refuse = [error]
    released = harness.release()
    assert released.unrestored and "HorizontalPodAutoscaler ehr-api minReplicas 3" in released.unrestored[0]
    assert released.retryable is retryable
    assert harness.workloads.value(HPA, "ehr-api") == 20


def test_a_restore_of_an_object_that_is_gone_completes_deletion() -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.cycle_at(0)
    harness.workloads.delete(HPA, "ehr-api")
    released = harness.release()
    assert released.unrestored == () and released.retryable is False
    assert [event.reason for event in released.events] == ["NothingToRestore"]


# ------------------------------------------------------------------------------ stale data, selectors


def test_stale_data_never_allows_a_scale_down() -> None:
    control = world(replicas=10, surge=False)
    control.metrics.level = 290.0  # 319 with headroom: 8 replicas of 40
    control.cycle_at(0)
    assert control.workloads.value(DEPLOYMENT, "ehr-api") == 8, "fresh data scales 10 down to 8"

    harness = world(replicas=10, surge=False)
    harness.metrics.level = 290.0
    harness.metrics.newest = NOW - 40 * 60
    result = harness.cycle_at(0)
    assert result.decision is not None and result.decision.recommended == 8, "the (old) forecast says 8"
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 10
    assert harness.workloads.writes == []
    assert any("stale" in guard for guard in result.decision.guards), result.decision.guards
    assert "stale" in (result.status.explanation or "")
    assert harness.condition("MetricsAvailable") == ("False", "StaleData")


@pytest.mark.parametrize(("selector", "listed"), [
    pytest.param({"matchLabels": {"app": "ehr-api"}}, "app=ehr-api",
                 id="a matchLabels selector lists only the workload's pods"),
    pytest.param({"matchExpressions": [{"key": "app", "operator": "In", "values": ["ehr-api"]}]}, "app in (ehr-api)",
                 id="a selector with only matchExpressions lists only the workload's pods"),
    pytest.param({}, None, id="an empty selector lists no pod instead of the whole namespace"),
    pytest.param({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}]}, None,
                 id="a selector healthscale cannot express lists no pod instead of the whole namespace"),
])
def test_pod_deletion_costs_only_ever_touch_the_workloads_own_pods(selector: dict[str, object],
                                                                   listed: str | None) -> None:
    harness = Harness(resource=slo(pod_load=True), schedules=())
    harness.workloads.deployment("ehr-api", 10, selector=selector)
    harness.metrics.loads = {"ehr-api-0": 5.0, "ehr-api-1": 1.0}
    harness.cycle_at(0)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") < 10, "the scale-down still happens"
    if listed is None:
        assert "workloads.pods" not in harness.log
        assert harness.workloads.deletion_costs == []
    else:
        assert harness.workloads.pod_queries == [listed]
        assert harness.workloads.deletion_costs == [{"ehr-api-0": 5000, "ehr-api-1": 1000}]
        assert harness.log.index("workloads.set_deletion_costs") < harness.log.index("workloads.write Deployment/ehr-api")


# ------------------------------------------------------------------------ other writers, re-creation


def test_a_second_writer_lowering_the_hpa_floor_is_overruled_and_the_original_still_restored() -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.cycle_at(0)
    harness.workloads.get(HPA, "ehr-api").value = 5  # someone else's kubectl edit
    harness.cycle_at(5)
    assert harness.workloads.value(HPA, "ehr-api") == 20
    assert harness.originals() == [(HPA, "ehr-api", "uid-2", 3)]
    harness.release()
    assert harness.workloads.value(HPA, "ehr-api") == 3


def test_a_target_deleted_and_re_created_gets_a_fresh_record_and_never_the_old_value() -> None:
    harness = world(replicas=3)
    harness.cycle_at(0)
    old_uid = harness.workloads.get(DEPLOYMENT, "ehr-api").uid
    harness.workloads.delete(DEPLOYMENT, "ehr-api")
    new = harness.workloads.deployment("ehr-api", 5)
    harness.cycle_at(5)
    assert "TargetRecreated" in harness.reasons()
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", new.uid, 5)]
    assert new.value == 20
    harness.release()
    assert new.value == 5
    new_writes = [write.value for write in harness.workloads.writes if write.uid == new.uid]
    assert 3 not in new_writes, "the old object's original is never written to the new one"
    assert all(write.uid == old_uid for write in harness.workloads.writes[:1])


def test_when_saving_the_original_fails_nothing_is_written_in_that_cycle() -> None:
    harness = world(replicas=3)
    harness.records.fault = refused(503)
    result = harness.cycle_at(0)
    assert harness.workloads.writes == []
    assert not any(call.startswith("workloads.write") for call in harness.log)
    assert harness.condition("Ready") == ("False", "ScaleRefused")
    assert result.scaled is False and result.retry_after is not None
    harness.records.fault = None
    harness.cycle_at(5)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", "uid-1", 3)]
    harness.release()
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3


def test_a_missing_target_is_not_ready_retried_soon_and_its_records_are_kept() -> None:
    harness = world(replicas=3)
    harness.workloads.deployment("ehr-api-v2", 4)
    harness.cycle_at(0)
    kept = harness.status.originals
    result = harness.cycle_at(5, resource=slo("ehr-api-v3"))
    assert harness.condition("Ready") == ("False", "TargetNotFound")
    assert result.retry_after is not None
    assert result.status.originals == kept
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20, "nothing is restored while the target is unknown"
    harness.release()
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3


def test_a_target_read_the_api_server_refuses_is_not_ready_and_keeps_records() -> None:
    harness = world(replicas=3)
    harness.cycle_at(0)
    harness.workloads.refuse_reads = [refused(0)]
    result = harness.cycle_at(5)
    assert harness.condition("Ready") == ("False", "ApiError")
    assert result.retry_after is not None
    assert result.status.originals == harness.results[0].status.originals


def test_a_failed_floor_write_is_scale_refused_and_retried() -> None:
    harness = world(replicas=3)
    harness.workloads.refuse = [refused(0)]
    result = harness.cycle_at(0)
    assert harness.condition("Ready") == ("False", "ScaleRefused")
    assert result.retry_after is not None
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3
    harness.cycle_at(1)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", "uid-1", 3)]


def test_an_hpa_whose_max_is_below_the_floor_is_raised_only_to_its_max() -> None:
    harness = world(replicas=3, hpa=(3, 12))
    harness.cycle_at(0)
    assert harness.condition("Ready") == ("True", "Planned")
    assert harness.workloads.value(HPA, "ehr-api") == 12



def test_a_refused_restore_of_the_old_target_is_kept_and_retried_next_cycle() -> None:
    harness = world(replicas=3)
    harness.workloads.deployment("ehr-api-v2", 4)
    harness.cycle_at(0)
    harness.workloads.refuse = [refused(403)]
    result = harness.cycle_at(5, resource=slo("ehr-api-v2"))
    assert harness.condition("Ready") == ("False", "RestoreFailed")
    assert "RestoreFailed" in harness.reasons()
    assert result.retry_after is None, "a 403 is not worth retrying before the next cycle"
    assert (DEPLOYMENT, "ehr-api", "uid-1", 3) in harness.originals()
    assert harness.workloads.value(DEPLOYMENT, "ehr-api-v2") == 20, "the new target's floor is applied regardless"
    harness.cycle_at(10)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3
    assert harness.originals() == [(DEPLOYMENT, "ehr-api-v2", "uid-2", 4)]
    assert harness.condition("Ready") == ("True", "Planned")


def test_renaming_to_a_target_with_an_hpa_restores_the_old_target_it_does_not_manage() -> None:
    harness = world(replicas=3)
    harness.workloads.deployment("ehr-api-v2", 4)
    harness.workloads.hpa("ehr-api-v2", 4, 30, target="ehr-api-v2")
    harness.cycle_at(0)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 20
    harness.cycle_at(5, resource=slo("ehr-api-v2"))
    assert "ManagedByHPA" not in harness.reasons(), "the new target's HPA does not scale the old target"
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") == 3, "the old target is restored"
    assert harness.originals() == [(HPA, "ehr-api-v2", "uid-3", 4)]


def test_renaming_away_from_a_target_whose_hpa_is_gone_gives_the_new_target_its_own_original() -> None:
    harness = world(replicas=3, hpa=(3, 30))
    harness.workloads.deployment("ehr-api-v2", 5)
    harness.cycle_at(0)
    assert harness.originals() == [(HPA, "ehr-api", "uid-2", 3)]
    harness.workloads.delete(HPA, "ehr-api")
    harness.cycle_at(5, resource=slo("ehr-api-v2"))
    assert harness.workloads.value(DEPLOYMENT, "ehr-api-v2") == 20
    harness.release()
    assert harness.workloads.value(DEPLOYMENT, "ehr-api-v2") == 5, (
        "the old target's HPA floor (3) was handed on to the renamed-to Deployment, which had 5 replicas: "
        "deletion would take it below what was there before healthscale")
