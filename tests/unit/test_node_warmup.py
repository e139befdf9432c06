"""Node warm-up (issue 13): the room ``domain.warmup`` reserves ahead of need, the backtest's model of
nodes that take time to add (``policies.Capacity`` with ``provisioning``), and what a replay with
``node_provisioning_seconds`` reports.

The planner policy is ``test_planning``'s: 10 demand units per replica, 2..20 replicas, 120 s startup
and a 5 minute cycle, so it looks 7 minutes ahead; with 10 minutes of node provisioning the warm-up
looks 17 minutes ahead.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies

from healthscale.api import clinicalslo, manifests
from healthscale.backtest import policies, replay, report, trace
from healthscale.domain import planning, series, warmup
from healthscale.domain.forecast import base

from test_planning import NO_FORECAST, NOW, POLICY, STEP, flat_forecast, inputs, surge_window

PROVISIONING = 600
WARM = dataclasses.replace(POLICY, node_provisioning_seconds=PROVISIONING)


def ramp_forecast(levels: list[float]) -> base.Forecast:
    """A forecast whose median and 0.9 quantile are ``levels``, one per 5-minute step from NOW."""
    values = np.asarray(levels, dtype=float)
    return base.Forecast("harmonic", NOW, STEP, values, {0.5: values, 0.9: values, 0.95: values})


def reserve(policy: planning.Policy, given: planning.Inputs) -> warmup.Reservation:
    decision, _ = planning.plan(policy, given)
    return warmup.reserve(policy, given, decision)


# --- What is reserved ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "given", "replicas", "needed", "fragments"),
    [
        pytest.param(POLICY, inputs(surges=(surge_window(min_replicas=10, starts_in=900),)), 0, 2,
                     ("nodeProvisioningSeconds is 0",),
                     id="without node provisioning nothing is reserved, even for a surge 15 minutes away"),
        pytest.param(WARM, inputs(surges=(surge_window(min_replicas=10, starts_in=900),)), 8, 10,
                     ("room reserved for 8 more replicas", "10 needed within 17m", "schedule", "floor 10", "2 asked for now"),
                     id="a surge floor of 10 in 15 minutes, beyond the 7 minute lookahead, reserves room for 8"),
        pytest.param(WARM, inputs(surges=(surge_window(min_replicas=10, starts_in=300),)), 0, 10,
                     ("no room reserved", "10 needed within 17m", "10 asked for now"),
                     id="a surge floor within the lookahead is asked for now and needs no reservation"),
        pytest.param(WARM, inputs(surges=(surge_window(min_replicas=10, starts_in=1500),)), 0, 2,
                     ("no room reserved", "2 needed"),
                     id="a surge floor 25 minutes away is beyond even the warm-up's reach"),
        pytest.param(WARM, inputs(current_demand=20.0, forecast=ramp_forecast([20, 20, 150, 150, 150, 20])),
                     14, 17, ("forecast", "demand 165", "within 17m", "3 asked for now"),
                     id="a forecast of 150 from 10 minutes on (165 with headroom) asks for 3 now and reserves 14 more"),
        pytest.param(WARM, inputs(surges=(surge_window(min_replicas=50, starts_in=900),)), 18, 20, ("floor 50",),
                     id="the reservation is capped at maxReplicas like every plan"),
        pytest.param(WARM, inputs(current_replicas=8, forecast=NO_FORECAST), 0, 2, ("no room reserved",),
                     id="without a forecast or a surge nothing more is needed and nothing is reserved"),
    ],
)
def test_room_is_reserved_for_what_the_plan_needs_once_a_node_could_be_up(
        policy: planning.Policy, given: planning.Inputs, replicas: int, needed: int, fragments: tuple[str, ...]) -> None:
    reservation = reserve(policy, given)
    assert (reservation.replicas, reservation.needed) == (replicas, needed)
    for fragment in fragments:
        assert fragment in reservation.explanation()


def test_the_longer_plan_ignores_the_guards_of_this_cycle() -> None:
    # Current replicas 12 and no forecast: this cycle holds 12 (no scale-down without a forecast); the
    # warm-up needs only minReplicas and reserves nothing, rather than a negative or a held amount.
    reservation = reserve(WARM, inputs(current_replicas=12, current_demand=5.0))
    assert (reservation.asked, reservation.needed, reservation.replicas) == (12, 2, 0)


def held(given: planning.Inputs, room: int) -> warmup.Reservation:
    decision, _ = planning.plan(WARM, given)
    return warmup.reserve(WARM, given, decision, held=room)


def test_without_a_forecast_the_room_held_is_kept_not_given_up() -> None:
    reservation = held(inputs(current_demand=20.0, forecast=NO_FORECAST), 6)
    assert reservation.replicas == 6
    assert "room for 6 held: the newest demand sample is 7h old" in reservation.explanation()


def test_with_a_forecast_room_no_longer_needed_is_given_up() -> None:
    assert held(inputs(current_demand=20.0, forecast=flat_forecast(20.0, 22.0)), 6).replicas == 0


levels = strategies.lists(strategies.floats(min_value=0, max_value=400), min_size=1, max_size=12)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    forecast_levels=levels,
    current=strategies.integers(min_value=0, max_value=25),
    demand=strategies.one_of(strategies.none(), strategies.floats(min_value=0, max_value=400)),
    floor=strategies.one_of(strategies.none(), strategies.integers(min_value=0, max_value=30)),
    starts_in=strategies.integers(min_value=-3600, max_value=3600),
    shorter=strategies.integers(min_value=0, max_value=1800),
    longer=strategies.integers(min_value=0, max_value=1800),
)
def test_reservations_are_never_negative_never_above_the_cap_and_grow_with_provisioning_time(
        forecast_levels: list[float], current: int, demand: float | None, floor: int | None, starts_in: int,
        shorter: int, longer: int) -> None:
    shorter, longer = sorted((shorter, longer))
    given = inputs(current_replicas=current, current_demand=demand, forecast=ramp_forecast(forecast_levels),
                   surges=() if floor is None else (surge_window(min_replicas=floor, starts_in=starts_in),))
    found = [reserve(dataclasses.replace(POLICY, node_provisioning_seconds=seconds), given)
             for seconds in (shorter, longer)]
    for reservation in found:
        assert 0 <= reservation.replicas <= POLICY.max_replicas
        assert reservation.replicas == max(0, reservation.needed - reservation.asked) or reservation.reach_seconds == 0
        assert reservation.needed <= POLICY.max_replicas
    if shorter > 0:
        assert found[1].needed >= found[0].needed, "a longer reach never needs less"


# --- Nodes that take time, in the backtest's capacity model ------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "interval", "serving", "room"),
    [
        pytest.param([(0, 4, 0)], (0, 720), 2.0,
                     4, id="two replicas beyond the room wait 600s for a node and 120s to start: none serve for 720s"),
        pytest.param([(0, 4, 0)], (720, 1020), 4.0, 4, id="then all four serve"),
        pytest.param([(0, 2, 2), (600, 4, 0)], (600, 900), 3.2,
                     4, id="room reserved 600s ahead lets the scale-up start at once: 2 + 2 x 180/300"),
        pytest.param([(0, 2, 2), (300, 4, 0)], (300, 900), 2.6,
                     4, id="room reserved only 300s ahead helps part way: the new pods start once its node is up at 600s"),
        pytest.param([(0, 2, 2), (600, 2, 0), (900, 4, 0)], (900, 1620), 2.0,
                     4, id="room released when the reservation ends must be provisioned again"),
        pytest.param([(0, 1, 0), (300, 2, 0)], (300, 1020), 1.0,
                     2, id="room freed by a scale-down is released at once, as consolidation does"),
        pytest.param([(0, 2, 3), (600, 3, 1)], (600, 900), 2.6,
                     4, id="a replica takes reserved room and the rest of the reservation stays"),
    ],
)
def test_nodes_take_provisioning_time_unless_room_was_reserved(
        steps: list[tuple[int, int, int]], interval: tuple[int, int], serving: float, room: int) -> None:
    capacity = policies.Capacity(2, 120, PROVISIONING)
    for moment, replicas, reserved in steps:
        capacity.request(moment, replicas, reserved)
    if interval[0] > steps[-1][0]:
        capacity.serving(steps[-1][0], interval[0])
    assert capacity.serving(*interval) == pytest.approx(serving)
    assert capacity.room() == room


requests = strategies.lists(strategies.tuples(strategies.integers(min_value=0, max_value=30),
                                              strategies.integers(min_value=0, max_value=10)), min_size=1, max_size=30)


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(asked=requests, provisioning=strategies.sampled_from([0, 60, 600]),
                  startup=strategies.sampled_from([0, 120]))
def test_the_room_always_holds_every_replica_and_reservation_and_ready_never_exceeds_asked(
        asked: list[tuple[int, int]], provisioning: int, startup: int) -> None:
    capacity = policies.Capacity(3, startup, provisioning)
    for position, (replicas, reserved) in enumerate(asked):
        moment = position * 300
        capacity.request(moment, replicas, reserved)
        assert capacity.room() == replicas + reserved
        served = capacity.serving(moment, moment + 300)
        assert 0 <= served <= replicas + 1e-9


# --- A replay with nodes that take time ---------------------------------------------------------------------

MONDAY = 1704067200
FIVE_MINUTES = 300


@pytest.fixture
def rising_slo(slo_document: dict[str, Any]) -> clinicalslo.ClinicalSLOSpec:
    slo_document["spec"]["capacity"] = {"perReplica": 10, "minReplicas": 1, "maxReplicas": 100,
                                        "startupSeconds": 120, "headroomPercent": 10}
    slo_document["spec"]["forecast"] = {"history": "4d", "step": "5m", "horizon": "1h", "model": "harmonic"}
    return manifests.parse(clinicalslo.ClinicalSLO, slo_document).spec


def morning_rush(days: int = 5) -> trace.Trace:
    """50 a step overnight; every morning from 08:00 a rise to 300 within 30 minutes, until noon."""
    minutes = (np.arange(days * 288) % 288) * 5
    values = np.where((minutes >= 8 * 60) & (minutes < 12 * 60),
                      50.0 + 250.0 * np.clip((minutes - 8 * 60 + 5) / 30.0, 0.0, 1.0), 50.0)
    return trace.Trace(pathlib.Path("morning.csv"), series.Series(MONDAY, FIVE_MINUTES, values), int(values.size))


def test_a_replay_with_slow_nodes_shows_what_warm_up_changes(rising_slo: clinicalslo.ClinicalSLOSpec) -> None:
    result = replay.replay(morning_rush(), rising_slo, None, 4.0, with_references=False, node_provisioning_seconds=900)
    scores = {score.name: score for score in result.scores()}
    assert list(scores) == [replay.ENGINE, replay.NO_WARM_UP, "oracle"]
    warm, cold = scores[replay.ENGINE], scores[replay.NO_WARM_UP]
    # The morning's rise needs new nodes: without warm-up, the new replicas serve 15 minutes late.
    assert cold.unmet_percent > warm.unmet_percent
    assert any(choice.reserved > 0 for choice in result.runs[replay.ENGINE].choices)
    assert not any(choice.reserved for choice in result.runs[replay.NO_WARM_UP].choices)
    # The reserved room is paid for: more node room-hours.
    assert warm.room_hours > cold.room_hours
    summary = report.warm_up(result)
    assert summary is not None and summary.startswith("node warm-up (900s to add a node): unmet demand ")
    assert "node room-hours" in report.table(result)


def test_slow_nodes_cost_every_policy_alike(rising_slo: clinicalslo.ClinicalSLOSpec) -> None:
    fast = replay.replay(morning_rush(), rising_slo, None, 4.0, with_references=False)
    slow = replay.replay(morning_rush(), rising_slo, None, 4.0, with_references=False, node_provisioning_seconds=900)
    assert report.warm_up(fast) is None and "node room-hours" not in report.table(fast)
    unmet = {score.name: score.unmet_percent for score in slow.scores()}
    assert unmet[replay.NO_WARM_UP] > {score.name: score.unmet_percent for score in fast.scores()}[replay.ENGINE]
