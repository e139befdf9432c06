"""The capacity planner: which signal wins and why (with its numbers), the maxReplicas cap, and the guards
on the way down (no forecast, fast burn, stabilisation, step limit).

The policy is 10 demand units per replica, 2..20 replicas, 120 s startup, 10% headroom, p90, a 600 s
stabilisation window and at most 25% down per cycle; the cycle is 5 minutes, so the planner looks
7 minutes ahead. Forecasts are built directly as ``base.Forecast`` values with flat arrays, so
every expected replica count is simple arithmetic written out in the test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np
import pytest

from healthscale.api import clinicalslo, manifests
from healthscale.domain import calendar, planning, series
from healthscale.domain.forecast import base

NOW = 1767261600
"""2026-01-01T10:00:00Z."""
STEP = 300

POLICY = planning.Policy(
    per_replica=10.0,
    min_replicas=2,
    max_replicas=20,
    startup_seconds=120,
    headroom=0.10,
    quantile=0.9,
    stabilization_seconds=600,
    max_step_fraction=0.25,
    cycle_seconds=STEP,
)

NO_FORECAST = base.NoForecast("StaleData", "the newest demand sample is 7h old (more than 6h)")


def flat_forecast(point: float, p90: float, start: int = NOW, steps: int = 24, model: str = "harmonic") -> base.Forecast:
    """A forecast of ``point`` (the median) with ``p90`` as its 0.9 quantile at every interval."""
    median = np.full(steps, float(point))
    upper = np.full(steps, float(p90))
    return base.Forecast(model, start, STEP, median, {0.5: median, 0.9: upper, 0.95: upper * 1.1})


def surge_window(name: str = "morning-rounds", *, multiplier: float = 1.0, min_replicas: int | None = None,
                 starts_in: int = 0, lasts: int = 2 * 3600, lead: int = 0) -> calendar.Window:
    start = series.from_epoch(NOW + starts_in)
    return calendar.Window(name, start, start + dt.timedelta(seconds=lasts), dt.timedelta(seconds=lead),
                           multiplier, min_replicas)


def inputs(current_replicas: int = 2, current_demand: float | None = None,
           forecast: base.Outcome = NO_FORECAST, surges: tuple[calendar.Window, ...] = (),
           fast_burn: bool = False, burning: str = "availability", ready_replicas: int | None = None) -> planning.Inputs:
    burns = (planning.Burn(burning, "1h/5m at 20.0x/30.0x (>= 14.4x)"),) if fast_burn else ()
    return planning.Inputs(NOW, current_replicas, current_demand, forecast, surges, burns,
                           ready_replicas=ready_replicas)


# --- Which signal wins ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "desired", "reason", "surge", "detail"),
    [
        pytest.param(
            inputs(current_demand=5.0, forecast=flat_forecast(5.0, 5.5)),
            2, planning.Signal.MINIMUM, None, ("minReplicas 2",),
            id="a quiet service runs its minReplicas",
        ),
        pytest.param(
            inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0)),
            12, planning.Signal.FORECAST, None,
            ("demand 120", "within 7m", "p90", "+10%", "harmonic", "10/replica"),
            id="a p90 of 120 above the point plus headroom (110) asks for 12 replicas",
        ),
        pytest.param(
            inputs(current_demand=80.0, forecast=flat_forecast(100.0, 105.0)),
            11, planning.Signal.FORECAST, None,
            ("demand 110", "within 7m", "p90", "+10%", "harmonic", "10/replica"),
            id="a point of 100 plus 10% headroom above the p90 (105) asks for 11 replicas",
        ),
        pytest.param(
            inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                   surges=(surge_window(min_replicas=15),)),
            15, planning.Signal.SCHEDULE, "morning-rounds", ("morning-rounds floor 15",),
            id="a surge floor of 15 beats a forecast of 12",
        ),
        pytest.param(
            inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                   surges=(surge_window(min_replicas=15, starts_in=6 * 60),)),
            15, planning.Signal.SCHEDULE, "morning-rounds", ("morning-rounds floor 15",),
            id="a surge floor starting within the 7 minute lookahead already applies",
        ),
        pytest.param(
            inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                   surges=(surge_window(multiplier=1.5),)),
            18, planning.Signal.SCHEDULE, "morning-rounds", ("morning-rounds x1.5 on planned demand 120",),
            id="a surge multiplier of 1.5 on the planned 120 asks for 18 replicas",
        ),
        pytest.param(
            inputs(current_demand=100.0, surges=(surge_window(multiplier=1.5),)),
            17, planning.Signal.SCHEDULE, "morning-rounds", ("morning-rounds x1.5 on current demand 100",),
            id="without a forecast the multiplier applies to current demand with headroom (165 needs 17)",
        ),
        pytest.param(
            inputs(current_demand=150.0, forecast=flat_forecast(100.0, 120.0)),
            15, planning.Signal.REACTIVE, None, ("current demand 150, 10/replica, headroom 0%",),
            id="current demand of 150 above the forecast asks for 15 replicas without headroom",
        ),
        pytest.param(
            inputs(current_demand=100.0),
            11, planning.Signal.REACTIVE, None, ("current demand 100, 10/replica, headroom 10%",),
            id="without a forecast current demand of 100 keeps its headroom and asks for 11",
        ),
        pytest.param(
            inputs(current_demand=120.0, forecast=flat_forecast(100.0, 120.0)),
            12, planning.Signal.FORECAST, None,
            ("demand 120", "within 7m", "p90", "+10%", "harmonic", "10/replica"),
            id="on a tie between forecast and reactive the forecast is named",
        ),
        pytest.param(
            inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                   surges=(surge_window(min_replicas=12),)),
            12, planning.Signal.SCHEDULE, "morning-rounds", ("morning-rounds floor 12",),
            id="on a tie between schedule and forecast the schedule is named",
        ),
    ],
)
def test_the_largest_proposal_wins_and_is_named_with_its_numbers(
    given: planning.Inputs, desired: int, reason: planning.Signal, surge: str | None, detail: tuple[str, ...]
) -> None:
    decision, _ = planning.plan(POLICY, given)
    assert decision.desired_replicas == desired
    assert decision.recommended == desired
    assert (decision.reason, decision.surge) == (reason, surge)
    assert decision.guards == ()
    text = decision.explanation()
    assert text == f"{desired} replicas (was 2): {reason} {decision.winner.detail}"
    for fragment in detail:
        assert fragment in decision.winner.detail, (fragment, text)


def test_a_surge_with_both_a_floor_and_a_multiplier_explains_the_one_that_won() -> None:
    # morning-rounds (as in the docs' example) has multiplier 1.5 and minReplicas 10. Planned demand is
    # max(p90 40, 30 x 1.1) = 40: the multiplier asks for 60 -> 6 replicas, the floor for 10. The floor wins.
    rounds = surge_window(multiplier=1.5, min_replicas=10)
    decision, _ = planning.plan(POLICY, inputs(current_demand=30.0, forecast=flat_forecast(30.0, 40.0),
                                               surges=(rounds,)))
    assert (decision.desired_replicas, decision.reason, decision.surge) == (10, planning.Signal.SCHEDULE,
                                                                            "morning-rounds")
    assert decision.winner.replicas == 10
    assert "morning-rounds floor 10" in decision.explanation()
    assert "x1.5" not in decision.explanation()


def test_a_surge_outside_the_lookahead_does_not_apply() -> None:
    later = surge_window(min_replicas=15, multiplier=2.0, starts_in=10 * 60)
    decision, _ = planning.plan(POLICY, inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                                               surges=(later,)))
    assert (decision.desired_replicas, decision.reason) == (12, planning.Signal.FORECAST)
    assert all(proposal.signal != planning.Signal.SCHEDULE for proposal in decision.proposals)


def test_a_surge_lead_time_brings_it_forward() -> None:
    early = surge_window(min_replicas=15, starts_in=30 * 60, lead=25 * 60)
    decision, _ = planning.plan(POLICY, inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                                               surges=(early,)))
    assert (decision.desired_replicas, decision.surge) == (15, "morning-rounds")


def test_the_forecast_peak_is_taken_over_the_lookahead_only() -> None:
    # 100 now, 300 from 10 minutes on: the 7 minute lookahead does not reach the rise.
    point = np.array([100.0, 100.0, 300.0, 300.0])
    forecast = base.Forecast("harmonic", NOW, STEP, point, {0.5: point, 0.9: point})
    decision, _ = planning.plan(POLICY, inputs(forecast=forecast))
    assert decision.desired_replicas == 11
    assert decision.forecast_peak == pytest.approx(110.0)
    assert decision.forecast_peak_time == NOW


def test_the_decision_reports_headroom_quantile_and_forecast_peak() -> None:
    decision, _ = planning.plan(POLICY, inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0)))
    assert (decision.headroom, decision.quantile) == (0.10, 0.9)
    assert decision.forecast_peak == pytest.approx(120.0)
    assert decision.no_forecast is None


# --- The cap and the guards on the way down -------------------------------------------------------------


def test_a_proposal_above_max_replicas_is_capped_and_says_so() -> None:
    decision, memory = planning.plan(POLICY, inputs(current_demand=80.0, forecast=flat_forecast(400.0, 500.0)))
    assert decision.desired_replicas == 20
    assert decision.recommended == 20
    assert decision.reason == planning.Signal.FORECAST
    assert decision.guards == ("capped at maxReplicas 20 (asked for 50)",)
    assert decision.explanation().endswith("; capped at maxReplicas 20 (asked for 50)")
    assert memory.proposals == ((NOW, 20),)


def test_a_surge_floor_above_max_replicas_is_capped_too() -> None:
    decision, _ = planning.plan(POLICY, inputs(surges=(surge_window(min_replicas=35),)))
    assert (decision.desired_replicas, decision.reason) == (20, planning.Signal.SCHEDULE)
    assert decision.guards == ("capped at maxReplicas 20 (asked for 35)",)


@pytest.mark.parametrize(
    ("current_demand", "current"),
    [
        pytest.param(20.0, 10, id="low current demand does not scale 10 replicas down"),
        pytest.param(None, 10, id="no demand at all does not scale 10 replicas down"),
        pytest.param(0.0, 20, id="zero demand does not scale the maximum down"),
    ],
)
def test_without_a_forecast_there_is_no_scale_down(current_demand: float | None, current: int) -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=current, current_demand=current_demand))
    assert decision.desired_replicas == current
    assert decision.recommended < current
    assert decision.no_forecast == NO_FORECAST
    assert decision.guards == (f"scale-down held: no forecast ({NO_FORECAST.reason})",)
    assert "scale-down held: no forecast (the newest demand sample is 7h old" in decision.explanation()


def test_without_a_forecast_scaling_up_still_happens() -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=3, current_demand=100.0))
    assert decision.desired_replicas == 11
    assert decision.guards == ()


def test_without_a_forecast_replicas_above_the_maximum_come_down_to_it() -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=30, current_demand=20.0))
    assert decision.desired_replicas == 20
    assert decision.guards == (f"scale-down held: no forecast ({NO_FORECAST.reason})",)


@pytest.mark.parametrize("objective", ["availability", "latency"],
                         ids=["an availability burn holds scale-down", "a latency burn holds scale-down"])
def test_a_fast_burn_holds_scale_down(objective: str) -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=10, current_demand=20.0,
                                               forecast=flat_forecast(30.0, 33.0), fast_burn=True, burning=objective))
    # Planned demand (max(33, 30 x 1.1) = 33) with a quarter more for the burn asks for 5; the burn holds all 10.
    assert decision.recommended == 5
    assert decision.desired_replicas == 10
    assert decision.guards == (f"scale-down held: error budget burning fast ({objective} 1h/5m at 20.0x/30.0x "
                               "(>= 14.4x))",)


def test_the_guard_names_every_objective_that_burns() -> None:
    burns = (planning.Burn("availability", "1h/5m"), planning.Burn("latency", "6h/30m"))
    decision, _ = planning.plan(POLICY, planning.Inputs(NOW, 10, 20.0, flat_forecast(30.0, 33.0), (), burns))
    assert decision.guards == ("scale-down held: error budget burning fast (availability 1h/5m, latency 6h/30m)",)
    assert "availability 1h/5m, latency 6h/30m" in decision.explanation()


@pytest.mark.parametrize(
    ("burning", "demand", "ready", "note"),
    [
        pytest.param("latency", 60.0, 10, "perReplica looks too high: the latency objective burns fast at 6 per ready "
                     "replica (demand 60 over 10 ready), below perReplica 10",
                     id="a latency burn at 6 per ready replica, below perReplica 10, says perReplica looks too high"),
        pytest.param("latency", 100.0, 10, None,
                     id="a latency burn at exactly perReplica per ready replica is load, not a wrong perReplica"),
        pytest.param("latency", 150.0, 10, None, id="a latency burn above perReplica per replica is overload"),
        pytest.param("availability", 60.0, 10, None, id="an availability burn says nothing about perReplica"),
        pytest.param("latency", 60.0, 0, None, id="no ready replica gives no load per replica to judge by"),
        pytest.param("latency", None, 10, None, id="unknown demand gives no load per replica to judge by"),
    ],
)
def test_a_latency_burn_below_per_replica_says_per_replica_looks_too_high(
        burning: str, demand: float | None, ready: int, note: str | None) -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=10, current_demand=demand,
                                               forecast=flat_forecast(60.0, 66.0), fast_burn=True, burning=burning,
                                               ready_replicas=ready))
    assert decision.notes == ((note,) if note else ())
    assert (note is not None and note in decision.explanation()) or "perReplica looks" not in decision.explanation()


@pytest.mark.parametrize(
    ("current_demand", "forecast", "desired", "fragments"),
    [
        pytest.param(80.0, flat_forecast(100.0, 110.0), 14, ("demand 137.5", "+10%", "+25%", "fast burn"),
                     id="the planned max(p90 110, point 100 +10%) = 110 gains a quarter: 137.5 needs 14"),
        pytest.param(80.0, flat_forecast(100.0, 160.0), 20, ("demand 200", "+25%", "fast burn"),
                     id="a p90 of 160 above the point plus headroom gains a quarter too: 200 needs 20"),
        pytest.param(100.0, NO_FORECAST, 14, ("current demand 100", "headroom 35%"),
                     id="without a forecast current demand carries 35% headroom: 135 needs 14"),
    ],
)
def test_a_fast_burn_adds_a_quarter_to_the_margin(
    current_demand: float, forecast: base.Outcome, desired: int, fragments: tuple[str, ...]
) -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=2, current_demand=current_demand,
                                               forecast=forecast, fast_burn=True))
    assert decision.headroom == pytest.approx(0.35)
    assert decision.desired_replicas == desired
    for fragment in fragments:
        assert fragment in decision.winner.detail, (fragment, decision.winner.detail)


@pytest.mark.parametrize(
    ("remembered", "current", "desired", "guards"),
    [
        pytest.param(((NOW - 300, 12),), 12, 12, ("stabilised at 12 (highest proposal in 600s)",),
                     id="a proposal of 12 five minutes ago keeps 12 replicas"),
        pytest.param(((NOW - 300, 10), (NOW - 120, 8)), 12, 10, ("stabilised at 10 (highest proposal in 600s)",),
                     id="the highest recent proposal (10) is the floor, not the newest"),
        pytest.param(((NOW - 300, 30),), 12, 12, ("stabilised at 12 (highest proposal in 600s)",),
                     id="a recent proposal above the current replicas holds at current, not above"),
        pytest.param(((NOW - 600, 12),), 12, 9, ("step-limited to 9 (at most 25% down per cycle)",),
                     id="a proposal exactly one window old has expired"),
        pytest.param((), 12, 9, ("step-limited to 9 (at most 25% down per cycle)",),
                     id="with nothing remembered only the step limit applies"),
        pytest.param(((NOW - 300, 7),), 12, 9,
                     ("stabilised at 7 (highest proposal in 600s)", "step-limited to 9 (at most 25% down per cycle)"),
                     id="a recent proposal below the step limit is overruled by it"),
    ],
)
def test_scale_down_is_stabilised_to_the_highest_recent_proposal(
    remembered: tuple[tuple[int, int], ...], current: int, desired: int, guards: tuple[str, ...]
) -> None:
    # The forecast now asks for 5 (planned 44).
    decision, memory = planning.plan(POLICY, inputs(current_replicas=current, current_demand=20.0,
                                                    forecast=flat_forecast(40.0, 44.0)),
                                     planning.Memory(remembered))
    assert decision.recommended == 5
    assert decision.desired_replicas == desired
    assert decision.guards == guards
    assert memory.proposals[-1] == (NOW, 5)
    assert all(NOW - moment < POLICY.stabilization_seconds for moment, _ in memory.proposals)


@pytest.mark.parametrize(
    ("current", "fraction", "desired"),
    [
        pytest.param(20, 0.25, 15, id="20 replicas lose at most 5 at 25% per cycle"),
        pytest.param(13, 0.25, 10, id="13 replicas lose at most 3 (25% rounded down)"),
        pytest.param(3, 0.25, 2, id="3 replicas still lose one even though 25% rounds down to none"),
        pytest.param(20, 0.5, 10, id="20 replicas lose at most 10 at 50% per cycle"),
        pytest.param(20, 1.0, 2, id="at 100% per cycle the minimum is reached at once"),
    ],
)
def test_scale_down_is_step_limited(current: int, fraction: float, desired: int) -> None:
    policy = dataclasses.replace(POLICY, max_step_fraction=fraction, stabilization_seconds=0)
    decision, _ = planning.plan(policy, inputs(current_replicas=current, current_demand=5.0,
                                               forecast=flat_forecast(5.0, 5.5)))
    assert decision.recommended == 2
    assert decision.desired_replicas == desired
    if desired > 2:
        assert decision.guards == (f"step-limited to {desired} (at most {fraction * 100:g}% down per cycle)",)
    else:
        assert decision.guards == ()


def test_scale_down_from_above_the_maximum_is_capped_then_step_limited() -> None:
    decision, _ = planning.plan(POLICY, inputs(current_replicas=40, current_demand=5.0,
                                               forecast=flat_forecast(5.0, 5.5)))
    assert decision.desired_replicas == 15  # the cap (20) less 25%
    assert decision.guards == ("step-limited to 15 (at most 25% down per cycle)",)


# --- Explanations --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "words"),
    [
        pytest.param(inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0),
                            surges=(surge_window("flu-season", multiplier=1.5),)),
                     ("18 replicas (was 2)", "schedule", "flu-season", "x1.5", "120"),
                     id="a surge multiplier names the surge, its factor and the demand it multiplied"),
        pytest.param(inputs(surges=(surge_window("vaccination-drive", min_replicas=16),)),
                     ("16 replicas (was 2)", "schedule", "vaccination-drive floor 16"),
                     id="a surge floor names the surge and the floor"),
        pytest.param(inputs(current_demand=80.0, forecast=flat_forecast(100.0, 120.0, model="seasonal-naive")),
                     ("12 replicas (was 2)", "forecast", "p90", "seasonal-naive", "120"),
                     id="a forecast names its quantile, model and peak"),
        pytest.param(inputs(current_replicas=10, current_demand=20.0),
                     ("10 replicas (was 10)", "reactive", "current demand 20", "scale-down held: no forecast"),
                     id="a held scale-down names the signal and the guard"),
    ],
)
def test_the_explanation_names_the_winning_signal_and_surge(given: planning.Inputs, words: tuple[str, ...]) -> None:
    decision, _ = planning.plan(POLICY, given)
    text = decision.explanation()
    for word in words:
        assert word in text, (word, text)


# --- The policy from a spec --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criticality", "quantile"),
    [
        pytest.param("critical", 0.95, id="a critical journey provisions for p95"),
        pytest.param("high", 0.9, id="a high criticality journey provisions for p90"),
        pytest.param("standard", 0.8, id="a standard journey provisions for p80"),
    ],
)
def test_the_policy_comes_from_the_spec(slo_document: dict[str, Any], criticality: str, quantile: float) -> None:
    slo_document["spec"]["criticality"] = criticality
    spec = manifests.parse(clinicalslo.ClinicalSLO, slo_document).spec
    assert planning.Policy.of(spec) == planning.Policy(
        per_replica=40.0, min_replicas=2, max_replicas=60, startup_seconds=120, headroom=0.10, quantile=quantile,
        stabilization_seconds=600, max_step_fraction=0.25, cycle_seconds=300,
    )


def test_a_spec_quantile_overrides_the_criticality(slo_document: dict[str, Any]) -> None:
    slo_document["spec"]["forecast"]["quantile"] = 0.99
    spec = manifests.parse(clinicalslo.ClinicalSLO, slo_document).spec
    assert planning.Policy.of(spec).quantile == 0.99


@pytest.mark.parametrize(
    ("demand", "headroom", "replicas"),
    [
        pytest.param(0.0, 0.1, 0, id="no demand needs no replicas"),
        pytest.param(30.0, 0.0, 3, id="exactly three replicas of demand needs three"),
        pytest.param(30.000000001, 0.0, 3, id="float noise above a whole count does not add a replica"),
        pytest.param(30.1, 0.0, 4, id="real demand above a whole count adds a replica"),
        pytest.param(100.0, 0.1, 11, id="100 with 10% headroom needs 11"),
        pytest.param(float("inf"), 0.1, planning.REPLICA_CEILING, id="infinite demand asks for everything, not an overflow"),
        pytest.param(1e308, 5.0, planning.REPLICA_CEILING, id="demand too large to count asks for everything"),
    ],
)
def test_replicas_for_rounds_up(demand: float, headroom: float, replicas: int) -> None:
    assert POLICY.replicas_for(demand, headroom) == replicas
