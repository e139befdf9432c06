"""Capacity planning: from forecast, surges and current demand to a replica count with its reason.

Each cycle the planner proposes replicas from four signals and takes the largest:

- ``schedule``: floors of surges in effect, and surge multipliers applied to forecast demand;
- ``forecast``: the criticality's forecast quantile, at its peak over the time a new replica
  needs to start plus one cycle;
- ``reactive``: the demand observed now;
- ``minimum``: ``capacity.minReplicas``.

Forecast demand becomes replicas as ``ceil(max(quantile, point x (1 + headroom)) / perReplica)``:
headroom and the quantile do not stack. Current demand counts without headroom while a forecast
exists (it wins on a real excursion) and with headroom when none does. The proposal is then
clamped to ``maxReplicas`` and guarded on the way down: no scale-down without a forecast or
during a fast burn of either objective's error budget (availability or latency), stabilisation to
the highest recent proposal, and a step limit. A fast latency burn while each ready replica serves
less than ``perReplica`` adds a note that ``perReplica`` looks too high. The planner is pure: it
receives ``now`` and returns the decision and its new memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Sequence

import numpy as np

from healthscale.api import clinicalslo
from healthscale.domain import calendar, series, slo
from healthscale.domain.forecast import base, holidays

QUANTILE_BY_CRITICALITY = {
    clinicalslo.Criticality.STANDARD: 0.8,
    clinicalslo.Criticality.HIGH: 0.9,
    clinicalslo.Criticality.CRITICAL: 0.95,
}
"""The forecast quantile each criticality provisions for, unless ``forecast.quantile`` is set."""

REPLICA_CEILING = 10**9
"""What an uncountably large demand asks for; far above any maxReplicas, so the cap decides."""

FAST_BURN_EXTRA_HEADROOM = 0.25
"""Added to the headroom fraction while the error budget burns fast."""


class Signal(enum.StrEnum):
    """The signal behind a proposal; the decision's reason is the one that won."""

    SCHEDULE = "schedule"
    FORECAST = "forecast"
    REACTIVE = "reactive"
    MINIMUM = "minimum"


_PRIORITY = (Signal.SCHEDULE, Signal.FORECAST, Signal.REACTIVE, Signal.MINIMUM)
"""On a tie, the more informative signal is named as the reason."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """The numbers the planner needs from a ClinicalSLO spec."""

    per_replica: float
    min_replicas: int
    max_replicas: int
    startup_seconds: int
    headroom: float
    quantile: float
    stabilization_seconds: int
    max_step_fraction: float
    cycle_seconds: int
    node_provisioning_seconds: int = 0
    """How long the cluster takes to add a node (``domain.warmup``); 0: room is never short."""

    @staticmethod
    def of(spec: clinicalslo.ClinicalSLOSpec) -> Policy:
        return Policy(
            per_replica=spec.capacity.per_replica,
            min_replicas=spec.capacity.min_replicas,
            max_replicas=spec.capacity.max_replicas,
            startup_seconds=spec.capacity.startup_seconds,
            headroom=spec.capacity.headroom_percent / 100.0,
            quantile=spec.forecast.quantile if spec.forecast.quantile is not None else QUANTILE_BY_CRITICALITY[spec.criticality],
            stabilization_seconds=spec.scale_down.stabilization_seconds,
            max_step_fraction=spec.scale_down.max_step_percent / 100.0,
            cycle_seconds=int(spec.forecast.step.total_seconds()),
            node_provisioning_seconds=spec.capacity.node_provisioning_seconds,
        )

    @property
    def lookahead(self) -> int:
        """A replica asked for now serves after startup; the next chance to act is one cycle later."""
        return self.startup_seconds + self.cycle_seconds

    @property
    def reach(self) -> int:
        """How far ahead anything is planned: the lookahead, plus node provisioning when room for
        later replicas is reserved ahead of them (``domain.warmup``)."""
        return self.lookahead + self.node_provisioning_seconds

    def replicas_for(self, demand: float, headroom: float) -> int:
        """Replicas that serve ``demand`` with ``headroom`` to spare (rounded up)."""
        if demand <= 0:
            return 0
        # Round before ceil so that 3.0000000001 replicas of float noise do not become 4.
        needed = round(demand * (1.0 + headroom) / self.per_replica, 9)
        # Demand too large to count (or +Inf) asks for everything: maxReplicas caps it later.
        return int(math.ceil(needed)) if needed < REPLICA_CEILING else REPLICA_CEILING


def forecast_settings(spec: clinicalslo.ClinicalSLOSpec, policy: Policy) -> base.Settings:
    """How to forecast for ``policy``: at its cycle's step, far enough ahead for its lookahead,
    and carrying its quantile."""
    step = policy.cycle_seconds
    return base.Settings(
        history=int(spec.forecast.history.total_seconds()),
        step=step,
        horizon=max(int(spec.forecast.horizon.total_seconds()), step, policy.reach),
        model=str(spec.forecast.model),
        timezone=spec.forecast.timezone,
        extra_level=policy.quantile,
        holidays=tuple(holidays.Region(region.country, region.subdivision) for region in spec.forecast.holidays),
        holiday_effect=str(spec.forecast.holiday_effect),
    )


@dataclasses.dataclass(frozen=True)
class Burn:
    """An objective whose error budget burns fast (a page-level burn-rate pair fires), and how."""

    objective: str
    """availability or latency (``slo.OBJECTIVES``)."""
    detail: str = ""
    """The pairs firing, e.g. ``1h/5m at 20.1x/31.0x (>= 14.4x)``."""


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the planner knows at ``now``."""

    now: int
    current_replicas: int
    current_demand: float | None
    forecast: base.Outcome
    surges: Sequence[calendar.Window] = ()
    fast_burns: tuple[Burn, ...] = ()
    """The objectives whose error budget burns fast: scale-down is held and headroom added."""
    demand_anomaly: bool = False
    """Demand has stayed above the forecast's band: lean on current demand, with headroom."""
    stale: base.NoForecast | None = None
    """Why the newest demand is too old to remove capacity on (``choice.staleness``)."""
    ready_replicas: int | None = None
    """Ready replicas of the target now: load per replica is current demand over them."""

    @property
    def fast_burn(self) -> bool:
        return bool(self.fast_burns)


@dataclasses.dataclass(frozen=True)
class Proposal:
    """What one signal asks for, and why."""

    signal: Signal
    replicas: int
    demand: float | None
    detail: str
    surge: str | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    """The replicas to run and the reasons, with the numbers behind them."""

    desired_replicas: int
    winner: Proposal
    """The proposal that asked for the most replicas (ties go to the more informative signal)."""
    reason: Signal
    surge: str | None
    recommended: int
    current_replicas: int
    proposals: tuple[Proposal, ...]
    guards: tuple[str, ...]
    headroom: float
    quantile: float
    forecast_peak: float | None
    forecast_peak_time: int | None
    no_forecast: base.NoForecast | None
    notes: tuple[str, ...] = ()
    """What the decision suggests changing in the spec, e.g. that perReplica looks too high."""

    def explanation(self) -> str:
        """One sentence, e.g. ``12 replicas (was 8): forecast p90 demand 431 over the next 7m ...``."""
        text = f"{self.desired_replicas} replicas (was {self.current_replicas}): {self.reason} {self.winner.detail}"
        if self.guards or self.notes:
            text += "; " + "; ".join((*self.guards, *self.notes))
        return text


@dataclasses.dataclass(frozen=True)
class Memory:
    """Recent proposals, for scale-down stabilisation. Kept by the caller between cycles."""

    proposals: tuple[tuple[int, int], ...] = ()

    def remember(self, now: int, replicas: int, window: int) -> Memory:
        kept = tuple((time, value) for time, value in self.proposals if now - time < window)
        return Memory((*kept, (now, replicas)))

    def highest_since(self, moment: int) -> int | None:
        values = [value for time, value in self.proposals if time > moment]
        return max(values) if values else None


def _multiplier_at(times: series.IntArray, surges: Sequence[calendar.Window]) -> tuple[np.ndarray, list[str | None]]:
    """Largest surge multiplier in effect at each time, and which surge it is."""
    multipliers = np.ones(times.shape[0])
    names: list[str | None] = [None] * times.shape[0]
    for window in surges:
        if window.multiplier <= 1.0:
            continue
        begin = series.to_epoch(window.effective_start)
        end = series.to_epoch(window.end)
        covered = (times >= begin) & (times < end) & (window.multiplier > multipliers)
        multipliers[covered] = window.multiplier
        for index in np.flatnonzero(covered):
            names[int(index)] = window.surge
    return multipliers, names


def _extra(extra_headroom: float) -> str:
    return f", +{extra_headroom * 100:.0f}% for the fast burn" if extra_headroom > 0 else ""


def _in_effect(policy: Policy, surges: Sequence[calendar.Window], now: int) -> list[calendar.Window]:
    """Windows in effect now or within the lookahead (a replica asked for now serves then)."""
    moment, ahead = series.from_epoch(now), dt.timedelta(seconds=policy.lookahead)
    return [window for window in surges if window.in_effect(moment, ahead)]


def schedule_floors(policy: Policy, surges: Sequence[calendar.Window], now: int) -> list[Proposal]:
    """The floors of the surges in effect within the lookahead: known from the spec and the
    calendar alone, so the reconcile applies them before (and whatever becomes of) any metrics."""
    return [Proposal(Signal.SCHEDULE, window.min_replicas, None, f"{window.surge} floor {window.min_replicas}",
                     window.surge)
            for window in _in_effect(policy, surges, now) if window.min_replicas is not None]


def floor(policy: Policy, surges: Sequence[calendar.Window], now: int) -> Proposal:
    """The least replicas the spec and the schedules demand now: the higher of ``minReplicas`` and
    every surge floor in effect, capped at ``maxReplicas``. No metric is needed to know it."""
    candidates = [Proposal(Signal.MINIMUM, policy.min_replicas, None, f"minReplicas {policy.min_replicas}"),
                  *schedule_floors(policy, surges, now)]
    best = max(candidates, key=lambda proposal: (proposal.replicas, -_PRIORITY.index(proposal.signal)))
    if best.replicas > policy.max_replicas:
        return dataclasses.replace(best, replicas=policy.max_replicas,
                                   detail=f"{best.detail}, capped at maxReplicas {policy.max_replicas}")
    return best


def _proposals(policy: Policy, inputs: Inputs, headroom: float) -> tuple[list[Proposal], float | None, int | None]:
    proposals = [Proposal(Signal.MINIMUM, policy.min_replicas, None, f"minReplicas {policy.min_replicas}")]
    horizon_end = inputs.now + policy.lookahead
    peak: float | None = None
    peak_time: int | None = None
    forecast = inputs.forecast
    if isinstance(forecast, base.Forecast):
        # Headroom and the quantile guard against the same risk, demand above the expected, so
        # they do not stack: headroom is the least margin over the point forecast, and the
        # quantile asks for more where the series' own errors say so. A fast burn adds on top.
        quantile = forecast.quantile(policy.quantile)
        extra = headroom - policy.headroom
        planned = np.maximum(quantile, forecast.point * (1.0 + policy.headroom)) * (1.0 + extra)
        found = forecast.peak(planned, inputs.now, horizon_end)
        if found is not None:
            peak, peak_time = found
            proposals.append(Proposal(
                Signal.FORECAST, policy.replicas_for(peak, 0.0), peak,
                f"demand {peak:.4g} within {(horizon_end - inputs.now) // 60}m (the larger of p{policy.quantile * 100:g} "
                f"and point +{policy.headroom * 100:.0f}%{_extra(extra)}; {forecast.model}), {policy.per_replica:g}/replica",
            ))
            multipliers, names = _multiplier_at(forecast.times(), inputs.surges)
            if np.any(multipliers > 1.0):
                surged = forecast.peak(planned * multipliers, inputs.now, horizon_end)
                if surged is not None and surged[0] > peak:
                    index = (surged[1] - forecast.start) // forecast.step
                    proposals.append(Proposal(
                        Signal.SCHEDULE, policy.replicas_for(surged[0], 0.0), surged[0],
                        f"{names[index]} x{multipliers[index]:g} on planned demand {planned[index]:.4g}", names[index],
                    ))
    proposals += schedule_floors(policy, inputs.surges, inputs.now)
    for window in _in_effect(policy, inputs.surges, inputs.now):
        if window.multiplier > 1.0 and not isinstance(forecast, base.Forecast) and inputs.current_demand is not None:
            # Without a forecast the multiplier applies to the demand seen now.
            demand = inputs.current_demand * window.multiplier
            proposals.append(Proposal(Signal.SCHEDULE, policy.replicas_for(demand, headroom), demand,
                                      f"{window.surge} x{window.multiplier:g} on current demand {inputs.current_demand:.4g}",
                                      window.surge))
    if inputs.current_demand is not None:
        # With a forecast in hand the forecast carries the margin, and the reactive signal only
        # guarantees what today's demand needs: it wins on a real excursion above the forecast,
        # not on every noisy interval. Without a forecast, or while demand runs above the forecast's
        # band (an anomaly), it is the demand signal and keeps headroom.
        reactive_headroom = headroom if peak is None or inputs.demand_anomaly else 0.0
        proposals.append(Proposal(
            Signal.REACTIVE, policy.replicas_for(inputs.current_demand, reactive_headroom), inputs.current_demand,
            f"current demand {inputs.current_demand:.4g}, {policy.per_replica:g}/replica, headroom {reactive_headroom * 100:.0f}%",
        ))
    return proposals, peak, peak_time


def plan(policy: Policy, inputs: Inputs, memory: Memory = Memory()) -> tuple[Decision, Memory]:
    """Decide the replicas for ``inputs.now``; returns the decision and the memory for next cycle."""
    headroom = policy.headroom + (FAST_BURN_EXTRA_HEADROOM if inputs.fast_burn else 0.0)
    proposals, peak, peak_time = _proposals(policy, inputs, headroom)
    best = max(proposals, key=lambda proposal: (proposal.replicas, -_PRIORITY.index(proposal.signal)))
    guards: list[str] = []
    recommended = best.replicas
    if recommended > policy.max_replicas:
        guards.append(f"capped at maxReplicas {policy.max_replicas} (asked for {recommended})")
        recommended = policy.max_replicas
    current = inputs.current_replicas
    desired = recommended
    no_forecast = inputs.forecast if isinstance(inputs.forecast, base.NoForecast) else None
    if desired < current:
        ceiling = min(current, policy.max_replicas)
        if no_forecast is not None:
            desired = ceiling
            guards.append(f"scale-down held: no forecast ({no_forecast.reason})")
        elif inputs.stale is not None:
            desired = ceiling
            guards.append(f"scale-down held: stale data ({inputs.stale.reason})")
        elif inputs.fast_burn:
            desired = ceiling
            burning = ", ".join(f"{burn.objective} {burn.detail}".strip() for burn in inputs.fast_burns)
            guards.append(f"scale-down held: error budget burning fast ({burning})")
        else:
            stabilised = memory.highest_since(inputs.now - policy.stabilization_seconds)
            if stabilised is not None and stabilised > desired:
                desired = min(stabilised, ceiling)
                guards.append(f"stabilised at {desired} (highest proposal in {policy.stabilization_seconds}s)")
            step_floor = ceiling - max(1, int(math.floor(ceiling * policy.max_step_fraction)))
            if desired < step_floor:
                desired = step_floor
                guards.append(f"step-limited to {desired} (at most {policy.max_step_fraction * 100:g}% down per cycle)")
    decision = Decision(
        desired_replicas=desired,
        winner=best,
        reason=best.signal,
        surge=best.surge,
        recommended=recommended,
        current_replicas=current,
        proposals=tuple(proposals),
        guards=tuple(guards),
        headroom=headroom,
        quantile=policy.quantile,
        forecast_peak=peak,
        forecast_peak_time=peak_time,
        no_forecast=no_forecast,
        notes=_capacity_notes(policy, inputs),
    )
    return decision, memory.remember(inputs.now, recommended, max(policy.stabilization_seconds, 1))


def _capacity_notes(policy: Policy, inputs: Inputs) -> tuple[str, ...]:
    """A latency burn while each ready replica serves less than perReplica means replicas cannot
    serve perReplica within the latency objective: the plan divides by too large a number."""
    latency = next((burn for burn in inputs.fast_burns if burn.objective == slo.LATENCY), None)
    if latency is None or inputs.current_demand is None or not inputs.ready_replicas:
        return ()
    load = inputs.current_demand / inputs.ready_replicas
    if load >= policy.per_replica:
        return ()
    return (f"perReplica looks too high: the latency objective burns fast at {load:.4g} per ready replica "
            f"(demand {inputs.current_demand:.4g} over {inputs.ready_replicas} ready), below perReplica "
            f"{policy.per_replica:g}",)
