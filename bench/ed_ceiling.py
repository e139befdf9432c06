"""The ceiling on the ED trace: what "x HPA" a hindsight planner gets under exactly generalise.py's scoring.

Arrivals at the ED are Poisson counts. A planner that knew, in hindsight, each hour-of-week's true
mean arrivals (computed from the whole trace) and provisioned the Poisson quantile q of it would be
better informed than any real forecaster; if it cannot reach a goal, no forecaster can. This replays
it through the backtest's own machinery (``replay.rerun``: the same capacity model, 300 s startup
counted time-weighted, initial replicas and missing intervals) and scores it with
``generalisation.evaluate`` over the same rolling splits, against the same reactive HPA and
three-line heuristic given at least its replica-hours, as ``bench/generalise.py`` scores healthscale.

Two hindsight rates, each run two ways:

- ``how``: the true hour-of-week mean (as ``bench/ed_poisson_floor.py``);
- ``day``: a stronger oracle, the hour-of-week shape scaled to the true level of the same day
  (that day's arrivals over the shape's sum on it);
- ``pure``: ``ceil(Poisson ppf(q, rate) / perReplica)`` at its peak over the planner's lookahead
  (startup + one step, the part-interval counted as the planner counts it), within min/max;
- ``planner``: healthscale's own planner (``planning.plan``: headroom over the point, the reactive
  signal, scale-down guards) fed the hindsight rate as its forecast (point = rate, quantile q =
  Poisson ppf): healthscale with a perfect distribution forecast.

q runs over the criticalities' quantiles (``planning.QUANTILE_BY_CRITICALITY``: standard p80,
critical p95) and a small sweep. Columns: unmet % and x HPA over the scored periods together (as
generalise's ``x HPA``), replica-hours over the oracle's, and how many splits reach 0.3x on their own.
"x HPA" falls as the budget grows, so a ceiling is read at healthscale's replica-hours (generalise's
``replica-hours vs oracle``): interpolate the sweep, or ask for it with ``--replica-hours``.

    python bench/ed_ceiling.py [--quantiles 0.5 0.8 ...] [--variants how-pure day-planner ...]
    python bench/ed_ceiling.py --replica-hours 1.45   # the ceiling at healthscale's replica-hours
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits

import generalise
import run as bench
from healthscale.api import clinicalslo
from healthscale.backtest import generalisation, policies, references, replay, splits, trace
from healthscale.domain import planning, series
from healthscale.domain.forecast import base

CASE = "ed-triage"
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
RATES = ("how", "day")
MODES = ("pure", "planner")
VARIANTS = tuple(f"{rate}-{mode}" for rate in RATES for mode in MODES)
BISECTIONS = 9
"""Halvings of q's range [0.5, 0.999] in ``--replica-hours``: q to within 0.001."""


def hour_of_week(times: series.IntArray) -> series.IntArray:
    """0 for Monday 00:00 .. 167 for Sunday 23:00 (epoch seconds, the trace's wall clock read as UTC)."""
    days = times // series.DAY
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    return weekday * 24 + (times % series.DAY) // 3600


def hindsight_rates(times: series.IntArray, values: series.FloatArray) -> dict[str, series.FloatArray]:
    """Per interval (missing ones included), the mean arrivals known in hindsight from the whole trace.

    ``how``: the mean of the observed intervals at the same hour of the week. ``day``: that shape,
    scaled so that over the observed intervals of each day it sums to that day's arrivals.
    """
    observed = ~np.isnan(values)
    slot = hour_of_week(times)
    sums = np.bincount(slot[observed], weights=values[observed], minlength=168)
    counts = np.bincount(slot[observed], minlength=168)
    means = np.divide(sums, counts, out=np.zeros(168), where=counts > 0)
    shape = means[slot]
    day = (times // series.DAY) - times[0] // series.DAY
    level_sum = np.bincount(day[observed], weights=values[observed], minlength=int(day[-1]) + 1)
    shape_sum = np.bincount(day[observed], weights=shape[observed], minlength=int(day[-1]) + 1)
    scale = np.divide(level_sum, shape_sum, out=np.ones_like(level_sum), where=shape_sum > 0)
    return {"how": shape, "day": shape * scale[day]}


class Hindsight:
    """Provisions the Poisson quantile ``q`` of a hindsight rate (one per trace position) over the lookahead."""

    def __init__(self, policy: planning.Policy, rate: series.FloatArray, quantile: float, through_planner: bool) -> None:
        self.name = f"hindsight p{quantile * 100:g}"
        self.policy = policy
        self.rate = rate
        self.quantile = quantile
        self.upper = stats.poisson.ppf(quantile, rate).astype(np.float64)
        self.through_planner = through_planner
        self._memory = planning.Memory()
        self._steps = max(1, -(-policy.lookahead // policy.cycle_seconds))

    def forecast(self, context: policies.Context) -> base.Forecast:
        span = slice(context.position, context.position + self._steps + 1)
        point = self.rate[span]
        upper = self.upper[span]
        if point.size < self._steps + 1:  # past the trace's end: repeat the last known
            point = np.pad(point, (0, self._steps + 1 - point.size), mode="edge")
            upper = np.pad(upper, (0, self._steps + 1 - upper.size), mode="edge")
        return base.Forecast("hindsight", context.now, context.history.step, point, {self.quantile: upper})

    def decide(self, context: policies.Context) -> policies.Choice:
        forecast = self.forecast(context)
        upper = float(forecast.quantiles[self.quantile][0])
        if self.through_planner:
            decision, self._memory = planning.plan(self.policy, planning.Inputs(
                now=context.now, current_replicas=context.current_replicas,
                current_demand=context.last_demand(), forecast=forecast), self._memory)
            return policies.Choice(decision.desired_replicas, str(decision.reason), forecast_upper=upper)
        found = forecast.peak(forecast.quantiles[self.quantile], context.now, context.now + self.policy.lookahead)
        peak = found[0] if found is not None else 0.0
        replicas = min(self.policy.max_replicas, max(self.policy.min_replicas, self.policy.replicas_for(peak, 0.0)))
        return policies.Choice(replicas, "hindsight", forecast_upper=upper)


def _x(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}x"


def main() -> int:
    threadpool_limits(1)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quantiles", type=float, nargs="+", default=None,
                        help=f"q to sweep (default: {' '.join(map(str, SWEEP))})")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--startup-seconds", type=int, default=generalise.STARTUP_SECONDS)
    parser.add_argument("--max-splits", type=int, default=None, help="as generalise.py's")
    parser.add_argument("--replica-hours", type=float, default=None,
                        help="instead of the sweep, find per variant the least q whose replica-hours over the "
                        "oracle's reach this (e.g. healthscale's, from generalise.py's table)")
    arguments = parser.parse_args()
    started = time.perf_counter()
    loaded = trace.load(bench.TRACES / dict(bench.CASES)[CASE])
    times = loaded.series.times()
    rates = hindsight_rates(times, loaded.series.values)
    levels = {str(criticality): planning.QUANTILE_BY_CRITICALITY[criticality] for criticality in generalise.CRITICALITIES}
    quantiles = sorted(set(arguments.quantiles or SWEEP) | set(levels.values()))
    print(f"criticality quantiles: {', '.join(f'{name} p{level * 100:g}' for name, level in levels.items())}")

    # The scored intervals, demand, oracle and policy exactly as generalise.py's replay has them
    # (generalise's base replay is at the first criticality); only the engine run is left out.
    task = generalise.Task(CASE, dict(bench.CASES)[CASE], generalise.CRITICALITIES[0], "auto", arguments.startup_seconds)
    spec, warmup = generalise._spec(task)
    policy, _ = replay.engine_policy(spec, loaded.step)
    values = loaded.series.values
    first_scored = int(math.ceil(warmup * series.DAY / loaded.step))
    scored = np.flatnonzero(~np.isnan(values[first_scored:])) + first_scored
    oracle = np.array([policies.oracle_replicas(policy, float(values[position])) for position in scored], dtype=np.int64)
    result = replay.Result(loaded, policy, loaded.series.start + scored.astype(np.int64) * loaded.step,
                           values[scored], {}, oracle, [], ())
    hpa = generalise._reference(result, policies.ReactiveHPA, 0)
    heuristic = generalise._reference(result, references.ThreeLineHeuristic, references.LOWEST_HEURISTIC_HEADROOM)
    unit = splits.unit_for(result.times)
    cuts = splits.rolling(result.times, unit, max_splits=arguments.max_splits)
    print(f"{CASE}: {scored.size} scored intervals, {len(cuts)} {unit} splits, startup {policy.startup_seconds}s, "
          f"headroom {policy.headroom * 100:g}%, perReplica {policy.per_replica:g}")
    scored_mask = np.zeros(result.times.shape, dtype=bool)
    for cut in cuts:
        scored_mask |= cut.score

    def replay_at(variant: str, quantile: float) -> tuple[Hindsight, replay.Run]:
        rate_name, mode = variant.split("-")
        candidate = Hindsight(policy, rates[rate_name], quantile, mode == "planner")
        return candidate, replay.rerun(result, candidate)

    def row(variant: str, quantile: float, candidate: Hindsight, run: replay.Run) -> str:
        upper = np.array([choice.forecast_upper for choice in run.choices])
        outcome = generalisation.evaluate(result.demand, oracle.astype(float), policy.per_replica, quantile,
                                          [generalisation.Candidate(candidate.name, run.ready, upper)],
                                          hpa, heuristic, cuts, unit)
        per_split = [split.versus_hpa for split in outcome.splits]
        at_goal = sum(value <= generalise.GOAL_VERSUS_HPA for value in per_split)
        marks = [name for name, level in levels.items() if level == quantile]
        label = f"p{quantile * 100:.4g}" + (f" ({'/'.join(marks)})" if marks else "")
        return (f"{variant:12s} {label:14s} {outcome.unmet_percent:6.2f}  {outcome.hpa_unmet_percent:6.2f} "
                f"({outcome.hpa_headroom:3d}%)  {_x(outcome.versus_hpa):>7s}  {_x(outcome.versus_heuristic):>7s}  "
                f"{outcome.relative_replica_hours:6.2f}x  {at_goal:3d}/{len(per_split)}  "
                f"{_x(float(np.median(per_split))):>7s}")

    print("variant        q     unmet %  HPA unmet % (headroom)  x HPA  x heuristic  rh/oracle  splits<=0.3x  median split x")
    if arguments.replica_hours is not None:
        # The ceiling at a given budget: the least q whose replica-hours over the scored periods reach it.
        for variant in arguments.variants:
            low, high = 0.5, 0.999
            found = replay_at(variant, high)
            for _ in range(BISECTIONS):
                middle = (low + high) / 2
                tried = replay_at(variant, middle)
                hours = float(tried[1].ready[scored_mask].sum()) / float(oracle[scored_mask].sum())
                if hours >= arguments.replica_hours:
                    high, found = middle, tried
                else:
                    low = middle
            print(row(variant, high, *found), flush=True)
    else:
        for variant in arguments.variants:
            for quantile in quantiles:
                print(row(variant, quantile, *replay_at(variant, quantile)), flush=True)
    print(f"measured in {time.perf_counter() - started:.0f}s, one process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
