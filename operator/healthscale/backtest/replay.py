"""Replays a trace interval by interval through healthscale and the reference policies.

The decision at the start of each interval sees only earlier intervals; what serves the interval
comes from the shared capacity model (``policies.Capacity``). Missing intervals are skipped:
no decision, no demand, no replica-hours, but time still passes (pods finish starting).
The first ``warmup`` of the trace is history only and is not scored.

Every trace is scored at its own step (an hourly trace is replanned and scored hourly), and a
scale-up's startup is counted time-weighted within the interval, whatever the step: what serves
an interval is the average of ready replicas across it, so a replica asked for at the start of an
hour with a 300 s startup serves (3600 - 300) / 3600 of that hour, and one whose startup outlasts
the interval serves none of it and the right share of the next.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable

import numpy as np

from healthscale.api import clinicalslo, surgeschedule
from healthscale.backtest import policies, references, trace as trace_
from healthscale.domain import calendar, planning, series
from healthscale.domain.forecast import base

FloatArray = series.FloatArray
ENGINE = policies.Engine.name
FORECASTING = (policies.Engine, policies.PredictiveHPA)
"""The policies that forecast, and so report progress (the others replay in moments)."""
NO_WARM_UP = f"{ENGINE}, no node warm-up"


def forecasting_runs(with_references: bool, policy: planning.Policy) -> int:
    """How many of a replay's runs forecast (each reports progress once per interval)."""
    return 1 + (policy.node_provisioning_seconds > 0) + with_references


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """One policy's replay: per scored interval, what it asked for and what served."""

    name: str
    desired: np.ndarray
    ready: FloatArray
    choices: list[policies.Choice]
    room: FloatArray
    """Replicas' worth of nodes up or being provisioned, as each interval starts (placeholders' too)."""


@dataclasses.dataclass(frozen=True)
class Score:
    """The comparison table's row for one policy."""

    name: str
    unmet_percent: float
    breach_percent: float
    replica_hours: float
    relative_replica_hours: float
    room_hours: float
    """Replicas' worth of nodes paid for (up or being provisioned, placeholders' room included)."""


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

    def forecast_quantile(self) -> FloatArray:
        """Per scored interval, the engine's forecast at ``policy.quantile`` (its criticality's quantile)
        for that interval, made at the interval's start from earlier intervals; NaN without a forecast.

        It is read from the engine's choices after the fact: exposing it changes no decision.
        """
        return np.array([choice.forecast_upper for choice in self.runs[ENGINE].choices], dtype=np.float64)

    def scores(self) -> list[Score]:
        step_hours = self.trace.step / 3600.0
        oracle_hours = float(self.oracle.sum()) * step_hours
        rows = []
        for name, ready, room in [*((run.name, run.ready, run.room) for run in self.runs.values()),
                                  ("oracle", self.oracle.astype(float), self.oracle.astype(float))]:
            served = ready * self.policy.per_replica
            unmet = np.maximum(0.0, self.demand - served)
            hours = float(ready.sum()) * step_hours
            rows.append(Score(
                name=name,
                unmet_percent=100.0 * float(unmet.sum()) / float(self.demand.sum()) if self.demand.sum() > 0 else 0.0,
                breach_percent=100.0 * float(np.count_nonzero(unmet > 1e-9 * np.maximum(self.demand, 1.0))) / max(1, self.demand.size),
                replica_hours=hours,
                relative_replica_hours=hours / oracle_hours if oracle_hours > 0 else math.nan,
                room_hours=float(room.sum()) * step_hours,
            ))
        return rows


def engine_policy(slo: clinicalslo.ClinicalSLOSpec, step: int,
                  node_provisioning_seconds: int | None = None) -> tuple[planning.Policy, base.Settings]:
    """The planner and forecaster settings for a replay at the trace's own step (and, when given,
    another node provisioning time than the spec's)."""
    policy = dataclasses.replace(planning.Policy.of(slo), cycle_seconds=step)
    if node_provisioning_seconds is not None:
        policy = dataclasses.replace(policy, node_provisioning_seconds=node_provisioning_seconds)
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
    node_provisioning_seconds: int | None = None,
) -> Result:
    """Replay ``trace`` through healthscale and, unless told not to, the reference policies.

    With ``node_provisioning_seconds`` (default: the spec's ``capacity.nodeProvisioningSeconds``), a replica beyond the nodes' room waits that long for a node
    (every policy alike), healthscale reserves room ahead of need (``domain.warmup``), and it is
    replayed a second time without the reservation (``NO_WARM_UP``) to show what warm-up changes.
    """
    step = trace.step
    policy, settings = engine_policy(slo, step, node_provisioning_seconds)
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
    if policy.node_provisioning_seconds > 0:
        candidates.append(policies.Engine(policy, settings, windows, warm_up=False, name=NO_WARM_UP))
    if with_references:
        candidates += [
            policies.ReactiveHPA(policy),
            references.ThreeLineHeuristic(policy),
            policies.ScheduleOnly(policy, windows),
            policies.PredictiveHPA(policy, step, settings.history),
        ]
    scored = np.flatnonzero(~np.isnan(values[first_scored:])) + first_scored
    initial = _initial_replicas(policy, values, first_scored)
    runs: dict[str, Run] = {}
    for candidate in candidates:
        runs[candidate.name] = _run(candidate, trace, scored, initial, policy,
                                    progress if isinstance(candidate, FORECASTING) else None)
    oracle = np.array([policies.oracle_replicas(policy, float(values[position])) for position in scored], dtype=np.int64)
    times = trace.series.start + scored.astype(np.int64) * step
    result = Result(trace, policy, times, values[scored], runs, oracle, windows, tuple(notes))
    if with_references:
        # Each matched reference is listed right after the reference it is matched from.
        matched = {
            policies.ReactiveHPA.name: _matched(result, MATCHED_HPA_PREFIX, policies.ReactiveHPA, 0),
            references.HEURISTIC: _matched(result, MATCHED_HEURISTIC_PREFIX, references.ThreeLineHeuristic,
                                           references.LOWEST_HEURISTIC_HEADROOM),
        }
        ordered = list(runs.items())
        runs.clear()
        for name, run in ordered:
            runs[name] = run
            if name in matched:
                runs[matched[name].name] = matched[name]
    return result


def _initial_replicas(policy: planning.Policy, values: FloatArray, first_scored: int) -> int:
    """What runs when scoring starts: the last observed demand's replicas, with headroom."""
    return policies.oracle_replicas(policy, _last_observed_before(values, first_scored) * (1 + policy.headroom))


def rerun(result: Result, candidate: policies.Policy) -> Run:
    """Replay one more policy over ``result``'s scored intervals, from the same starting replicas."""
    positions = (result.times - result.trace.series.start) // result.trace.step
    initial = _initial_replicas(result.policy, result.trace.series.values, int(positions[0]))
    return _run(candidate, result.trace, positions, initial, result.policy, None)


def _run(candidate: policies.Policy, trace: trace_.Trace, scored: np.ndarray, initial: int,
         policy: planning.Policy, progress: Callable[[int], None] | None) -> Run:
    """Replay one policy over the scored intervals on its own capacity model."""
    step = trace.series.step
    capacity = policies.Capacity(initial, policy.startup_seconds, policy.node_provisioning_seconds)
    room = np.zeros(scored.size)
    desired = np.zeros(scored.size, dtype=np.int64)
    ready = np.zeros(scored.size)
    choices: list[policies.Choice] = []
    for row, position in enumerate(scored):
        now = trace.series.start + int(position) * step
        choice = candidate.decide(policies.Context(now, int(position), trace.series, capacity.requested))
        capacity.request(now, choice.replicas, choice.reserved)
        desired[row] = choice.replicas
        room[row] = capacity.room()
        ready[row] = capacity.serving(now, now + step)
        choices.append(choice)
        if progress is not None:
            progress(row)
    return Run(candidate.name, desired, ready, choices, room)


MATCHED_HPA_PREFIX = "reactive HPA, same replica-hours"
MATCHED_HEURISTIC_PREFIX = f"{references.HEURISTIC}, same replica-hours"


def _matched(result: Result, prefix: str, reference: Callable[[planning.Policy], policies.Policy], lowest: int) -> Run:
    """A reference given at least healthscale's replica-hours, by changing its headroom.

    This is the like-for-like comparison: what the reference achieves with the same budget.
    ``references.least_headroom`` finds the least headroom above ``lowest``, to 1%, whose
    replica-hours reach healthscale's (the HPA's is raised from 0; the heuristic's may go below 0).
    """
    budget = float(result.runs[ENGINE].ready.sum())
    tried: dict[int, Run] = {}

    def enough(headroom_percent: int) -> bool:
        if headroom_percent not in tried:
            policy = dataclasses.replace(result.policy, headroom=headroom_percent / 100.0)
            tried[headroom_percent] = rerun(result, reference(policy))
        return float(tried[headroom_percent].ready.sum()) >= budget

    headroom = references.least_headroom(enough, lowest)
    return dataclasses.replace(tried[headroom], name=f"{prefix} (headroom {headroom}%)")


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
