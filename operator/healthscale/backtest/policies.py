"""The replay's capacity model and the policies it compares.

``Capacity`` is the one model of how replicas serve: a scale-up serves only ``startup`` seconds
after it was asked for (plus ``provisioning`` when it needs a node nobody reserved room on); a
scale-down takes effect at once (not-yet-ready pods go first). What serves an interval is the
time-weighted average of ready replicas across it.

Every policy decides at the start of an interval and sees only the intervals before it:

- ``healthscale``: the engine (forecast + schedule + reactive, planner guards), as the operator runs it;
- ``reactive HPA``: Kubernetes' documented algorithm (``ceil(demand / target)``, 10% tolerance)
  with the same headroom, and the ClinicalSLO's ``scaleDown`` as its ``behavior.scaleDown``;
  the replay also runs it with the headroom raised until it uses healthscale's replica-hours;
- ``three-line heuristic`` (in ``references``): max(same slot yesterday, same slot last week, last
  interval seen) x (1 + headroom), also run at healthscale's replica-hours;
- ``schedule only``: KEDA-cron style floors from the SurgeSchedule, nothing else;
- ``Holt-Winters``: the Predictive HPA: Holt-Winters (statsmodels) on the HPA's own replica
  history, taking the maximum of its prediction and the HPA's value;
- ``oracle``: perfect foresight, exactly the replicas each interval needs, ready in time.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

import numpy as np

from healthscale.domain import calendar, planning, series, warmup
from healthscale.domain.forecast import base as forecast_base, choice, holt_winters

HPA_TOLERANCE = 0.1
"""The HPA controller's default ``--horizontal-pod-autoscaler-tolerance``."""


class Capacity:
    """Replicas asked for, replicas ready, the scale-ups still starting, and the nodes' room.

    Room is counted in replicas' worth of node capacity. With ``provisioning`` 0 there is always
    room, and a scale-up serves ``startup`` seconds after it was asked for. Otherwise the room is
    what was there at the start plus what was asked for since: a replica beyond the room waits
    ``provisioning`` seconds for a new node before it starts, unless room was reserved for it
    (placeholder pods it preempts) early enough. Room no replica or reservation holds is released
    at once, as Karpenter's consolidation and cluster-autoscaler's scale-down do with empty nodes.
    """

    def __init__(self, replicas: int, startup: int, provisioning: int = 0) -> None:
        self.requested = replicas
        self.reserved = 0
        self.startup = startup
        self.provisioning = provisioning
        self._ready = replicas
        self._starting: list[tuple[int, int]] = []  # (ready at, count), oldest first
        self._room: list[tuple[int, int]] = [(0, replicas)]  # (usable from, replicas' worth), earliest first

    def _promote(self, moment: int) -> None:
        while self._starting and self._starting[0][0] <= moment:
            self._ready += self._starting.pop(0)[1]

    def _placed(self) -> int:
        return self._ready + sum(count for _, count in self._starting)

    def room(self) -> int:
        """Replicas' worth of nodes, up or being provisioned (what the cluster pays for)."""
        return sum(count for _, count in self._room)

    def _fit_room(self, moment: int, wanted: int) -> None:
        """Provision the room missing for ``wanted`` replicas, or release what exceeds it
        (the nodes that come up last go first)."""
        have = self.room()
        if wanted > have:
            self._room.append((moment + self.provisioning, wanted - have))
        surplus = have - wanted
        while surplus > 0:
            usable_from, count = self._room.pop()
            released = min(count, surplus)
            surplus -= released
            if count > released:
                self._room.append((usable_from, count - released))

    def request(self, moment: int, replicas: int, reserved: int = 0) -> None:
        """Ask for ``replicas`` and hold room for ``reserved`` more from ``moment`` on."""
        self._promote(moment)
        if replicas > self.requested:
            self._fit_room(moment, max(replicas + reserved, self._placed()))
            # Replicas take the earliest room not already taken (they preempt placeholders).
            taken, extra = self._placed(), replicas - self.requested
            for usable_from, count in list(self._room):
                free = max(0, count - taken)
                taken = max(0, taken - count)
                if free <= 0 or extra <= 0:
                    continue
                placed = min(free, extra)
                extra -= placed
                ready_at = max(moment, usable_from) + self.startup
                if ready_at <= moment:
                    self._ready += placed
                else:
                    self._starting.append((ready_at, placed))
            self._starting.sort()
        elif replicas < self.requested:
            surplus = self.requested - replicas
            while surplus and self._starting:
                ready_at, count = self._starting.pop()
                removed = min(count, surplus)
                surplus -= removed
                if count > removed:
                    self._starting.append((ready_at, count - removed))
            self._ready -= surplus
        self.requested = replicas
        self.reserved = reserved
        self._fit_room(moment, max(replicas + reserved, self._placed()))

    def serving(self, begin: int, end: int) -> float:
        """Time-weighted ready replicas over ``[begin, end)``; advances the model to ``end``."""
        self._promote(begin)
        total = float(self._ready) * (end - begin)
        for ready_at, count in self._starting:
            if ready_at < end:
                total += count * (end - ready_at)
        self._promote(end)
        return total / (end - begin)


@dataclasses.dataclass(frozen=True)
class Choice:
    """A policy's replicas for one interval, and what it saw."""

    replicas: int
    reason: str = ""
    surge: str = ""
    forecast: float = math.nan
    forecast_upper: float = math.nan
    model: str = ""
    note: str = ""
    reserved: int = 0
    """Room held for replicas beyond ``replicas`` (node warm-up, ``domain.warmup``)."""


@dataclasses.dataclass(frozen=True)
class Context:
    """What every policy may look at when deciding at ``now`` (index ``position`` of the trace)."""

    now: int
    position: int
    history: series.Series  # the whole trace; policies must only read indices < position
    current_replicas: int

    def last_demand(self) -> float | None:
        """Demand of the interval just before ``now``, or None if that interval is missing."""
        if self.position == 0:
            return None
        value = float(self.history.values[self.position - 1])
        return None if math.isnan(value) else value

    def past(self) -> series.Series:
        return series.Series(self.history.start, self.history.step, self.history.values[: self.position])


class Policy(Protocol):
    name: str

    def decide(self, context: Context) -> Choice: ...


class Engine:
    """healthscale's own planner and forecaster, with the state the operator would keep; with
    ``warm_up`` (and ``policy.node_provisioning_seconds``), it also reserves room ahead of need."""

    name = "healthscale"

    def __init__(self, policy: planning.Policy, settings: forecast_base.Settings,
                 windows: list[calendar.Window], warm_up: bool = True, name: str = name) -> None:
        self.name = name
        self.warm_up = warm_up
        self.policy = policy
        self.settings = settings
        self.windows = windows
        self._effective = np.array([series.to_epoch(window.effective_start) for window in windows], dtype=np.int64)
        self._ends = np.array([series.to_epoch(window.end) for window in windows], dtype=np.int64)
        self._state: choice.State | None = None
        self._memory = planning.Memory()

    def surges_near(self, now: int) -> list[calendar.Window]:
        reach = now + self.policy.reach
        mask = (self._effective < reach) & (self._ends > now)
        return [self.windows[int(index)] for index in np.flatnonzero(mask)]

    def decide(self, context: Context) -> Choice:
        outcome, self._state = choice.forecast(context.past(), context.now, self.settings, self._state)
        inputs = planning.Inputs(
            now=context.now,
            current_replicas=context.current_replicas,
            current_demand=context.last_demand(),
            forecast=outcome,
            surges=self.surges_near(context.now),
        )
        decision, self._memory = planning.plan(self.policy, inputs, self._memory)
        reserved = warmup.reserve(self.policy, inputs, decision).replicas if self.warm_up else 0
        point = upper = math.nan
        if isinstance(outcome, forecast_base.Forecast):
            point = float(outcome.point[0])
            upper = float(outcome.quantile(self.policy.quantile)[0])
        return Choice(
            replicas=decision.desired_replicas,
            reason=str(decision.reason),
            surge=decision.surge or "",
            forecast=point,
            forecast_upper=upper,
            model=outcome.model if isinstance(outcome, forecast_base.Forecast) else f"none: {outcome.code}",
            note="; ".join(decision.guards),
            reserved=reserved,
        )


class ReactiveHPA:
    """Kubernetes HPA v2 on an average-value demand metric.

    It is configured as a user would to compare like with like: the same headroom (each pod
    aims at perReplica / (1 + headroom)), the controller's 10% tolerance, and the ClinicalSLO's
    ``scaleDown`` as the HPA's ``behavior.scaleDown`` (stabilisation window, and a Percent
    policy of ``maxStepPercent`` per cycle). Scale-up is immediate, as by default.
    """

    name = "reactive HPA"

    def __init__(self, policy: planning.Policy) -> None:
        self.policy = policy
        # Same headroom as the engine: the HPA aims each pod at perReplica / (1 + headroom).
        self.target_per_pod = policy.per_replica / (1.0 + policy.headroom)
        self._recommendations: list[tuple[int, int]] = []

    def recommend(self, context: Context) -> int | None:
        demand = context.last_demand()
        if demand is None:
            return None  # no metric: the HPA does not act
        current = max(context.current_replicas, 1)
        ratio = (demand / current) / self.target_per_pod
        if abs(ratio - 1.0) <= HPA_TOLERANCE:
            wanted = context.current_replicas
        else:
            wanted = math.ceil(round(demand / self.target_per_pod, 9))
        return min(self.policy.max_replicas, max(self.policy.min_replicas, wanted))

    def decide(self, context: Context) -> Choice:
        wanted = self.recommend(context)
        if wanted is None:
            return Choice(context.current_replicas, "hold", note="no metric")
        self._recommendations = [(time, value) for time, value in self._recommendations
                                 if context.now - time < self.policy.stabilization_seconds]
        self._recommendations.append((context.now, wanted))
        replicas = wanted
        if wanted < context.current_replicas:
            replicas = min(context.current_replicas, max(value for _, value in self._recommendations))
            step_floor = context.current_replicas - max(1, math.floor(context.current_replicas * self.policy.max_step_fraction))
            replicas = max(replicas, step_floor)
        return Choice(replicas, "reactive")


class ScheduleOnly:
    """KEDA cron-trigger style: the surge floors while a window is on, minReplicas otherwise."""

    name = "schedule only"

    def __init__(self, policy: planning.Policy, windows: list[calendar.Window]) -> None:
        self.policy = policy
        self.windows = windows

    def decide(self, context: Context) -> Choice:
        moment = series.from_epoch(context.now)
        floors = [(window.min_replicas, window.surge) for window in self.windows
                  if window.min_replicas is not None and window.in_effect(moment)]
        if floors:
            replicas, surge = max(floors)
            return Choice(min(self.policy.max_replicas, max(self.policy.min_replicas, replicas)), "schedule", surge)
        return Choice(self.policy.min_replicas, "minimum")


class PredictiveHPA:
    """Holt-Winters on the HPA's replica history (jthomperoo's Predictive HPA), ``decisionType: maximum``."""

    name = "Holt-Winters (Predictive HPA)"

    def __init__(self, policy: planning.Policy, step: int, history_seconds: int) -> None:
        self.policy = policy
        self.hpa = ReactiveHPA(policy)
        self.step = step
        self.settings = forecast_base.Settings(
            history=history_seconds, step=step, horizon=max(step, policy.lookahead),
            model=holt_winters.NAME, refit_every=series.DAY, validate=False,
        )
        self._replica_history: list[float] = []
        self._start: int | None = None
        self._state: choice.State | None = None

    def decide(self, context: Context) -> Choice:
        base = self.hpa.decide(context)
        if self._start is None:
            self._start = context.now
        # The replica history is kept per interval, as the Predictive HPA stores its evaluations.
        slot = (context.now - self._start) // self.step
        while len(self._replica_history) < slot:
            self._replica_history.append(math.nan)
        self._replica_history.append(float(base.replicas))
        history = series.Series(self._start, self.step, np.asarray(self._replica_history[:-1]))
        outcome, self._state = choice.forecast(history, context.now, self.settings, self._state)
        if not isinstance(outcome, forecast_base.Forecast):
            return Choice(base.replicas, "reactive", model=f"none: {outcome.code}")
        window = outcome.window(context.now + self.policy.startup_seconds, context.now + self.policy.lookahead)
        predicted = float(np.max(outcome.point[window])) if outcome.point[window].size else 0.0
        replicas = max(base.replicas, min(self.policy.max_replicas, math.ceil(round(predicted, 6))))
        return Choice(replicas, "forecast" if replicas > base.replicas else "reactive", forecast=predicted,
                      model=outcome.model)


def oracle_replicas(policy: planning.Policy, demand: float) -> int:
    """Exactly enough replicas for ``demand`` (no headroom), within min/max."""
    if math.isnan(demand):
        return policy.min_replicas
    needed = math.ceil(round(demand / policy.per_replica, 9))
    return min(policy.max_replicas, max(policy.min_replicas, needed))
