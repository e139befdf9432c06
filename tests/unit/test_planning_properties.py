"""Planner invariants over generated policies, demands, forecasts, surges and memories (hypothesis).

- the plan stays within [minReplicas, maxReplicas] when the current replicas are within them;
- with a NoForecast, or during a fast burn, the plan never goes below the current replicas;
- the plan is monotone non-decreasing in current demand and in the forecast level, all else equal;
- a scale-down never removes more than the step limit allows in one cycle.

Forecasts are real ``base.Forecast`` values (flat arrays, an upper band at or above the median).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings

import numpy as np
from hypothesis import given, settings, strategies as st

from healthscale.domain import calendar, planning, series
from healthscale.domain.forecast import base, choice

# Hypothesis reports a failing example through hypothesis.extra._patching, which imports libcst, which
# imports mypy_extensions.TypedDict and so raises a DeprecationWarning. Under filterwarnings=error that
# turns any property failure into an INTERNALERROR that ends the whole session, hiding the real failure
# and every test after it. Import it once here, with that warning silenced, so failures report normally.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: hypothesis then skips the patch and nothing warns
        pass

NOW = 1767261600
"""2026-01-01T10:00:00Z."""
STEP = 300
EXAMPLES = settings(max_examples=200, deadline=None)


@st.composite
def policies(draw: st.DrawFn) -> planning.Policy:
    min_replicas = draw(st.integers(0, 10))
    return planning.Policy(
        per_replica=draw(st.floats(0.5, 200.0)),
        min_replicas=min_replicas,
        max_replicas=draw(st.integers(max(1, min_replicas), 80)),
        startup_seconds=draw(st.integers(0, 900)),
        headroom=draw(st.floats(0.0, 1.0)),
        quantile=draw(st.sampled_from([0.8, 0.9, 0.95])),
        stabilization_seconds=draw(st.integers(0, 1800)),
        max_step_fraction=draw(st.floats(0.01, 1.0)),
        cycle_seconds=STEP,
    )


@dataclasses.dataclass(frozen=True)
class Shape:
    """A forecast before scaling: relative levels per interval and how far above them the band reaches."""

    relative: tuple[float, ...]
    spread: float
    model: str

    def at(self, level: float) -> base.Forecast:
        point = level * np.asarray(self.relative)
        quantiles = {0.5: point, 0.8: point * (1 + self.spread / 2), 0.9: point * (1 + self.spread),
                     0.95: point * (1 + 1.5 * self.spread)}
        return base.Forecast(self.model, NOW, STEP, point, quantiles)


shapes = st.builds(
    Shape,
    relative=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=12).map(tuple),
    spread=st.floats(0.0, 1.0),
    model=st.sampled_from(list(choice.AUTO_CANDIDATES)),
)

no_forecasts = st.builds(
    base.NoForecast,
    code=st.sampled_from(["NoData", "InsufficientHistory", "StaleData", "FitFailed"]),
    reason=st.just("generated"),
)


@st.composite
def surge_lists(draw: st.DrawFn) -> tuple[calendar.Window, ...]:
    windows = []
    for index in range(draw(st.integers(0, 2))):
        start = NOW + draw(st.integers(-3600, 3600))
        windows.append(calendar.Window(
            f"surge-{index}",
            series.from_epoch(start),
            series.from_epoch(start + draw(st.integers(300, 4 * 3600))),
            dt.timedelta(seconds=draw(st.integers(0, 1800))),
            draw(st.floats(1.0, 3.0)),
            draw(st.none() | st.integers(0, 120)),
        ))
    return tuple(windows)


memories = st.lists(
    st.tuples(st.integers(NOW - 1800, NOW - 1), st.integers(0, 120)), max_size=4
).map(lambda proposals: planning.Memory(tuple(sorted(proposals))))

demands = st.none() | st.floats(0.0, 20000.0)
levels = st.floats(0.0, 20000.0)


def plan(policy: planning.Policy, current: int, demand: float | None, outcome: base.Outcome,
         surges: tuple[calendar.Window, ...], memory: planning.Memory, fast_burn: bool = False) -> planning.Decision:
    burns = (planning.Burn("availability"),) if fast_burn else ()
    decision, _ = planning.plan(policy, planning.Inputs(NOW, current, demand, outcome, surges, burns), memory)
    return decision


@EXAMPLES
@given(policy=policies(), data=st.data(), demand=demands, outcome=no_forecasts | st.builds(Shape.at, shapes, levels),
       surges=surge_lists(), memory=memories, fast_burn=st.booleans())
def test_the_plan_stays_within_min_and_max_replicas(
    policy: planning.Policy, data: st.DataObject, demand: float | None, outcome: base.Outcome,
    surges: tuple[calendar.Window, ...], memory: planning.Memory, fast_burn: bool,
) -> None:
    current = data.draw(st.integers(policy.min_replicas, policy.max_replicas), label="current")
    decision = plan(policy, current, demand, outcome, surges, memory, fast_burn)
    assert policy.min_replicas <= decision.desired_replicas <= policy.max_replicas, decision.explanation()
    assert policy.min_replicas <= decision.recommended <= policy.max_replicas


@EXAMPLES
@given(policy=policies(), data=st.data(), demand=demands, outcome=no_forecasts, surges=surge_lists(), memory=memories,
       fast_burn=st.booleans())
def test_without_a_forecast_the_plan_never_goes_below_current(
    policy: planning.Policy, data: st.DataObject, demand: float | None, outcome: base.NoForecast,
    surges: tuple[calendar.Window, ...], memory: planning.Memory, fast_burn: bool,
) -> None:
    # Any current replicas up to the maximum (above it, the maximum itself is the bound).
    current = data.draw(st.integers(0, policy.max_replicas), label="current")
    decision = plan(policy, current, demand, outcome, surges, memory, fast_burn)
    assert decision.desired_replicas >= current, decision.explanation()
    assert decision.no_forecast == outcome


@EXAMPLES
@given(policy=policies(), data=st.data(), demand=demands, shape=shapes, level=levels, surges=surge_lists(),
       memory=memories)
def test_during_a_fast_burn_the_plan_never_goes_below_current(
    policy: planning.Policy, data: st.DataObject, demand: float | None, shape: Shape, level: float,
    surges: tuple[calendar.Window, ...], memory: planning.Memory,
) -> None:
    current = data.draw(st.integers(0, policy.max_replicas), label="current")
    decision = plan(policy, current, demand, shape.at(level), surges, memory, fast_burn=True)
    assert decision.desired_replicas >= current, decision.explanation()


@EXAMPLES
@given(policy=policies(), data=st.data(), demands=st.tuples(st.floats(0.0, 20000.0), st.floats(0.0, 20000.0)),
       outcome=no_forecasts | st.builds(Shape.at, shapes, levels), surges=surge_lists(), memory=memories,
       fast_burn=st.booleans())
def test_more_current_demand_never_plans_fewer_replicas(
    policy: planning.Policy, data: st.DataObject, demands: tuple[float, float], outcome: base.Outcome,
    surges: tuple[calendar.Window, ...], memory: planning.Memory, fast_burn: bool,
) -> None:
    current = data.draw(st.integers(0, policy.max_replicas + 5), label="current")
    low, high = sorted(demands)
    lower = plan(policy, current, low, outcome, surges, memory, fast_burn)
    higher = plan(policy, current, high, outcome, surges, memory, fast_burn)
    assert lower.desired_replicas <= higher.desired_replicas, (lower.explanation(), higher.explanation())
    # Some demand is never fewer replicas than none at all.
    unknown = plan(policy, current, None, outcome, surges, memory, fast_burn)
    assert unknown.desired_replicas <= lower.desired_replicas


@EXAMPLES
@given(policy=policies(), data=st.data(), demand=demands, shape=shapes, forecast_levels=st.tuples(levels, levels),
       surges=surge_lists(), memory=memories, fast_burn=st.booleans())
def test_a_higher_forecast_never_plans_fewer_replicas(
    policy: planning.Policy, data: st.DataObject, demand: float | None, shape: Shape,
    forecast_levels: tuple[float, float], surges: tuple[calendar.Window, ...], memory: planning.Memory,
    fast_burn: bool,
) -> None:
    current = data.draw(st.integers(0, policy.max_replicas + 5), label="current")
    low, high = sorted(forecast_levels)
    lower = plan(policy, current, demand, shape.at(low), surges, memory, fast_burn)
    higher = plan(policy, current, demand, shape.at(high), surges, memory, fast_burn)
    assert lower.desired_replicas <= higher.desired_replicas, (lower.explanation(), higher.explanation())


@EXAMPLES
@given(policy=policies(), data=st.data(), demand=demands, shape=shapes, level=levels, surges=surge_lists(),
       memory=memories)
def test_a_scale_down_removes_at_most_the_step_limit(
    policy: planning.Policy, data: st.DataObject, demand: float | None, shape: Shape, level: float,
    surges: tuple[calendar.Window, ...], memory: planning.Memory,
) -> None:
    current = data.draw(st.integers(policy.min_replicas, policy.max_replicas), label="current")
    decision = plan(policy, current, demand, shape.at(level), surges, memory)
    allowed = max(1, math.floor(current * policy.max_step_fraction))
    assert current - decision.desired_replicas <= allowed, decision.explanation()


@EXAMPLES
@given(policy=policies(), data=st.data(), demand=demands, outcome=no_forecasts | st.builds(Shape.at, shapes, levels),
       surges=surge_lists(), memory=memories, fast_burn=st.booleans())
def test_the_named_reason_is_the_largest_proposal(
    policy: planning.Policy, data: st.DataObject, demand: float | None, outcome: base.Outcome,
    surges: tuple[calendar.Window, ...], memory: planning.Memory, fast_burn: bool,
) -> None:
    current = data.draw(st.integers(0, policy.max_replicas), label="current")
    decision = plan(policy, current, demand, outcome, surges, memory, fast_burn)
    assert decision.winner.replicas == max(proposal.replicas for proposal in decision.proposals)
    assert decision.recommended == min(decision.winner.replicas, policy.max_replicas)
    assert decision.explanation().startswith(
        f"{decision.desired_replicas} replicas (was {current}): {decision.reason} {decision.winner.detail}"
    )
