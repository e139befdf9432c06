"""Replays a trace interval by interval through healthscale and the reference policies.

The decision at the start of each interval sees only earlier intervals; what serves the interval
comes from the shared capacity model (``policies.Capacity``). Missing intervals are skipped:
no decision, no demand, no replica-hours, but time still passes (pods finish starting).
The first ``warmup`` of the trace is history only and is not scored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable

import numpy as np

from healthscale.api import clinicalslo, surgeschedule
from healthscale.backtest import policies, trace as trace_
from healthscale.domain import calendar, forecasting, planning, series

FloatArray = series.FloatArray
ENGINE = policies.Engine.name
FORECASTING = (policies.Engine, policies.PredictiveHPA)
"""The policies that forecast, and so report progress (the others replay in moments)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One policy's replay: per scored interval, what it asked for and what served."""

    name: str
    desired: np.ndarray
    ready: FloatArray
    choices: list[policies.Choice]


@dataclasses.dataclass(frozen=True)
class Score:
    """The comparison table's row for one policy."""

    name: str
    unmet_percent: float
    breach_percent: float
    replica_hours: float
    relative_replica_hours: float


@dataclasses.dataclass(frozen=True, eq=False)
class Result:
    trace: trace_.Trace
    policy: planning.Policy
    times: np.ndarray  # epoch seconds of the scored intervals
    demand: FloatArray
    runs: dict[str, Run]
    oracle: np.ndarray
    windows: list[calendar.Window]
    notes: tuple[str, ...]

    def scores(self) -> list[Score]:
        step_hours = self.trace.step / 3600.0
        oracle_hours = float(self.oracle.sum()) * step_hours
        rows = []
        for name, ready in [*((run.name, run.ready) for run in self.runs.values()), ("oracle", self.oracle.astype(float))]:
            served = ready * self.policy.per_replica
            unmet = np.maximum(0.0, self.demand - served)
            hours = float(ready.sum()) * step_hours
            rows.append(Score(
                name=name,
                unmet_percent=100.0 * float(unmet.sum()) / float(self.demand.sum()) if self.demand.sum() > 0 else 0.0,
                breach_percent=100.0 * float(np.count_nonzero(unmet > 1e-9 * np.maximum(self.demand, 1.0))) / max(1, self.demand.size),
                replica_hours=hours,
                relative_replica_hours=hours / oracle_hours if oracle_hours > 0 else math.nan,
            ))
        return rows


def engine_policy(slo: clinicalslo.ClinicalSLOSpec, step: int) -> tuple[planning.Policy, forecasting.Settings]:
    """The planner and forecaster settings for a replay at the trace's own step."""
    policy = dataclasses.replace(planning.Policy.of(slo), cycle_seconds=step)
    # The trace's timestamps are its local wall clock, read as UTC throughout the replay.
    settings = dataclasses.replace(planning.forecast_settings(slo, policy), timezone="UTC")
    return policy, settings


def replay(
    trace: trace_.Trace,
    slo: clinicalslo.ClinicalSLOSpec,
    schedule: surgeschedule.SurgeScheduleSpec | None,
    warmup_days: float,
    progress: Callable[[int], None] | None = None,
    with_references: bool = True,
) -> Result:
    """Replay ``trace`` through healthscale and, unless told not to, the reference policies."""
    step = trace.step
    policy, settings = engine_policy(slo, step)
    notes = []
    if int(slo.forecast.step.total_seconds()) != step:
        notes.append(f"replanned every {step}s, the trace's step (the spec says {slo.forecast.step})")
    values = trace.series.values
    first_scored = int(math.ceil(warmup_days * series.DAY / step))
    if first_scored >= len(trace.series):
        raise ValueError(
            f"--warmup-days {warmup_days:g} covers the whole trace ({len(trace.series) * step / series.DAY:.1f} days); "
            "leave some of it to score"
        )
    begin, end = trace.series.start + first_scored * step, trace.series.end
    windows: list[calendar.Window] = []
    if schedule is not None:
        # The schedule's wall clock is the trace's wall clock (both are local time).
        windows = calendar.Calendar("UTC", schedule.surges).windows(
            series.from_epoch(begin - series.DAY), series.from_epoch(end + series.DAY)
        )
    engine = policies.Engine(policy, settings, windows)
    candidates: list[policies.Policy] = [engine]
    if with_references:
        candidates += [
            policies.ReactiveHPA(policy),
            policies.ScheduleOnly(policy, windows),
            policies.PredictiveHPA(policy, step, settings.history),
        ]
    scored = np.flatnonzero(~np.isnan(values[first_scored:])) + first_scored
    start_demand = _last_observed_before(values, first_scored)
    initial = policies.oracle_replicas(policy, start_demand * (1 + policy.headroom))
    runs: dict[str, Run] = {}
    for candidate in candidates:
        runs[candidate.name] = _run(candidate, trace, scored, initial, policy.startup_seconds,
                                    progress if isinstance(candidate, FORECASTING) else None)
    oracle = np.array([policies.oracle_replicas(policy, float(values[position])) for position in scored], dtype=np.int64)
    times = trace.series.start + scored.astype(np.int64) * step
    result = Result(trace, policy, times, values[scored], runs, oracle, windows, tuple(notes))
    if with_references:
        matched = _matched_hpa(result, scored, initial)
        ordered = list(runs.items())
        ordered.insert(2, (matched.name, matched))
        runs.clear()
        runs.update(ordered)
    return result


def _run(candidate: policies.Policy, trace: trace_.Trace, scored: np.ndarray, initial: int, startup: int,
         progress: Callable[[int], None] | None) -> Run:
    """Replay one policy over the scored intervals on its own capacity model."""
    step = trace.series.step
    capacity = policies.Capacity(initial, startup)
    desired = np.zeros(scored.size, dtype=np.int64)
    ready = np.zeros(scored.size)
    choices: list[policies.Choice] = []
    for row, position in enumerate(scored):
        now = trace.series.start + int(position) * step
        choice = candidate.decide(policies.Context(now, int(position), trace.series, capacity.requested))
        capacity.request(now, choice.replicas)
        desired[row] = choice.replicas
        ready[row] = capacity.serving(now, now + step)
        choices.append(choice)
        if progress is not None:
            progress(row)
    return Run(candidate.name, desired, ready, choices)


MATCHED_HPA_PREFIX = "reactive HPA, same replica-hours"


def _matched_hpa(result: Result, scored: np.ndarray, initial: int) -> Run:
    """The reactive HPA given at least healthscale's replica-hours, by raising its headroom.

    This is the like-for-like comparison: what reactive scaling achieves with the same budget.
    Replica-hours grow with the HPA's headroom (not strictly, through rounding and tolerance), so
    a bisection finds the least headroom, to 1%, whose replica-hours reach healthscale's.
    """
    budget = float(result.runs[ENGINE].ready.sum())

    def attempt(headroom_percent: int) -> Run:
        policy = dataclasses.replace(result.policy, headroom=headroom_percent / 100.0)
        return _run(policies.ReactiveHPA(policy), result.trace, scored, initial, policy.startup_seconds, None)

    low, high = 0, 100
    best = attempt(high)
    while float(best.ready.sum()) < budget and high < 1600:
        low, high = high, high * 2
        best = attempt(high)
    while high - low > 1:
        middle = (low + high) // 2
        run = attempt(middle)
        if float(run.ready.sum()) >= budget:
            high, best = middle, run
        else:
            low = middle
    return dataclasses.replace(best, name=f"{MATCHED_HPA_PREFIX} (headroom {high}%)")


def _last_observed_before(values: FloatArray, position: int) -> float:
    earlier = values[:position]
    observed = earlier[~np.isnan(earlier)]
    if observed.size:
        return float(observed[-1])
    later = values[~np.isnan(values)]
    return float(later[0]) if later.size else 0.0


def scored_intervals(trace: trace_.Trace, warmup_days: float) -> int:
    first = int(math.ceil(warmup_days * series.DAY / trace.step))
    return int(np.count_nonzero(~np.isnan(trace.series.values[first:])))


def local_time(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).replace(tzinfo=None)
