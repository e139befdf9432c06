"""Capacity learned from telemetry: the load per ready replica at which the latency objective stops
being met, with an uncertainty band and the evidence behind it.

Pure: the caller (``healthscale.service.capacity``) reads aligned samples from Prometheus, one per
interval: load per ready replica (demand / ready replicas), the latency SLI (share of requests
faster than the threshold) and the number (or rate) of requests, used as weights.

**The fit: a monotone (isotonic) regression of the SLI on load.** The objective "95% under 1.5 s"
is a ratio of good events to all events, pooled over intervals, so what matters at a load is the
event-weighted mean share of good requests there; the knee is the load at which that mean falls
below the target. The one assumption is physical: more load per replica never makes latency
better, so the share is non-increasing in load. The pool-adjacent-violators fit makes no other
shape assumption, so the flat-then-falling "hockey stick" of a queue is fitted as it is. The
alternatives statsmodels offers were weighed: ``QuantReg`` fits a *linear* conditional quantile,
the wrong shape (a line through the flat part and the fall misplaces the crossing) and the wrong
statistic (a quantile of per-interval shares is not the pooled ratio the objective is about);
``lowess`` is not monotone, and its bandwidth smears the knee over neighbouring loads. Intervals
are first pooled into ``BINS`` equal-width load bins, which keeps the fit O(bins) and changes the
knee by at most one bin width (0.1% of the observed range).

**The band: a block bootstrap over days.** Intervals within a day are correlated (the same
deployment, the same incidents), so whole days are resampled with replacement and the knee refit
``resamples`` times; the band is the 5th to 95th percentile. A resample whose fit never falls
below the target counts as "above every load seen": when more than 5% do, the band has no upper
end (``high`` is None). Under ``MIN_BLOCKS`` days, blocks are shorter (the span over
``MIN_BLOCKS``).

**Never a made-up number.** When the load never reached the knee the result is "not observed: at
least X", X the highest load with ``TOP_INTERVALS`` intervals at or above it; when the objective is
missed even at the lightest load, the cause is not load and nothing is recommended.

**Which perReplica the planner uses** (``choose``, for ``capacity.perReplicaFrom``): the declared
one, or with ``Learned`` the recommendation bounded to [0.5x, 2x] of the declared one, and never
above the declared one while a surge is in effect (a surge is no time to test a larger number).
A "not observed: at least X" is evidence that X per replica met the objective, and none against
the declared value: it raises perReplica to min(X, 2x) only when X is above the declared value,
and otherwise leaves the declared value. Anything else (no recommendation) plans with the declared
value and says why. ``due`` says when to relearn: daily, sooner when the inputs changed, an hour
after a failed attempt.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

MIN_INTERVALS = 48
"""Fewer usable intervals than this (4 hours at 5 minutes) is too little to learn from."""
TOP_INTERVALS = 12
"""A "not observed: at least X" rests on at least this many intervals at load X or above."""
BINS = 1000
"""Equal-width load bins the intervals are pooled into before the fit."""
MIN_BLOCKS = 5
"""Fewer whole days than this are bootstrapped in shorter blocks (the span over this many)."""
RESAMPLES = 200
BAND = (0.05, 0.95)
"""The band's lower and upper percentiles of the bootstrap knees."""
DAY = 86400
LOWEST, HIGHEST = 0.5, 2.0
"""A learned perReplica is used within [LOWEST x, HIGHEST x] of the declared one."""
RELEARN_SECONDS = DAY
"""A recommendation is relearned this long after it was learned."""
RETRY_SECONDS = 3600
"""A failed attempt (Prometheus down, no data) is retried this long after it."""


class Outcome(enum.StrEnum):
    OBSERVED = "Observed"
    """The fitted SLI crosses the target within the observed loads: a recommendation."""
    NOT_OBSERVED = "NotObserved"
    """The objective held at every load seen: perReplica is at least ``at_least``."""
    NEVER_MET = "NeverMet"
    """The objective was missed even at the lightest load: not a capacity problem."""
    INSUFFICIENT_DATA = "InsufficientData"
    """Too few usable intervals."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """The learned perReplica, or why there is none, with the evidence."""

    outcome: Outcome
    reason: str
    """A sentence with the numbers."""
    target: float
    """The objective's target share of good requests (0 to 1), e.g. 0.95."""
    recommended: float | None = None
    """The load per ready replica at which the fitted SLI falls to the target (Observed only)."""
    low: float | None = None
    """Lower end of the band (5th percentile of the bootstrap knees); None when not computed or when
    more than 5% of resamples miss the objective even at their lightest load."""
    high: float | None = None
    """Upper end of the band (95th percentile); None when above every load seen or not computed."""
    at_least: float | None = None
    """NotObserved: the objective held up to this load per replica."""
    intervals: int = 0
    """Intervals used (finite load and SLI, at least one request)."""
    dropped: int = 0
    """Intervals left out: a gap, no ready replica or no request."""
    days: float = 0.0
    """Span of the intervals used, in days."""
    load_min: float | None = None
    load_max: float | None = None
    beyond: int = 0
    """Intervals at a load above the recommendation (the evidence for the fall)."""
    resamples: int = 0
    """Bootstrap resamples drawn."""
    crossed: int = 0
    """Resamples whose fit crossed the target within their loads."""
    curve: tuple[tuple[float, float], ...] = ()
    """The fitted SLI: (load per replica, share of good requests) at each occupied bin."""


def learn(times: FloatArray, load: FloatArray, good_share: FloatArray, events: FloatArray | None,
          percentile: float, *, resamples: int = RESAMPLES, seed: int = 0) -> Estimate:
    """The load per replica at which the share of good requests falls below ``percentile`` (percent).

    ``times`` are epoch seconds; ``events`` weights each interval (its request rate or count; None
    weighs all alike). Deterministic for a given ``seed``; ``resamples`` 0 computes no band."""
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be between 0 and 100, got {percentile}")
    target = percentile / 100.0
    arrays = [np.asarray(item, dtype=np.float64) for item in (times, load, good_share)]
    weights = np.ones_like(arrays[0]) if events is None else np.asarray(events, dtype=np.float64)
    if len({item.shape for item in (*arrays, weights)}) != 1:
        raise ValueError("times, load, good_share and events must have the same length")
    times, load, good_share = arrays
    usable = (np.isfinite(times) & np.isfinite(load) & (load >= 0) & np.isfinite(good_share)
              & np.isfinite(weights) & (weights > 0))
    kept = int(np.count_nonzero(usable))
    dropped = int(usable.size - kept)
    if kept < MIN_INTERVALS:
        return Estimate(Outcome.INSUFFICIENT_DATA, f"{kept} usable interval(s) ({dropped} left out: gaps, no ready "
                        f"replica or no request); at least {MIN_INTERVALS} are needed", target,
                        intervals=kept, dropped=dropped)
    times, load, weights = times[usable], load[usable], weights[usable]
    share = np.clip(good_share[usable], 0.0, 1.0)
    days = float(times.max() - times.min()) / DAY
    low_load, high_load = float(load.min()), float(load.max())
    evidence = Estimate(Outcome.INSUFFICIENT_DATA, "", target, intervals=kept, dropped=dropped, days=days,
                        load_min=low_load, load_max=high_load)
    bins = _bins(load, low_load, high_load)
    xs, fitted = fit(load, share, weights, bins)
    curve = tuple(zip(xs.tolist(), fitted.tolist(), strict=True))
    seen = f"over {kept} intervals ({days:.1f} days), load per replica {low_load:.4g} to {high_load:.4g}"
    if fitted[0] < target:
        return dataclasses.replace(evidence, outcome=Outcome.NEVER_MET, reason=f"the latency objective ({percentile:g}%) is missed even at the lightest "
                        f"load: {fitted[0] * 100:.2f}% good at {xs[0]:.4g} per replica, {seen}; the cause is not "
                        "load, so perReplica cannot be learned from it", curve=curve)
    knee = _knee(xs, fitted, target)
    band = _bootstrap(times, load, share, weights, bins, target, resamples, seed)
    if knee is None:
        floor = float(np.sort(load)[-min(TOP_INTERVALS, kept)])
        return dataclasses.replace(evidence, outcome=Outcome.NOT_OBSERVED, reason=f"not observed: at least {floor:.4g} per replica; the latency objective "
                        f"({percentile:g}%) held at every load seen, {seen} (at least {floor:.4g} in "
                        f"{int(np.count_nonzero(load >= floor))} intervals): load never reached the knee",
                        at_least=floor, resamples=resamples, crossed=band.crossed, curve=curve)
    beyond = int(np.count_nonzero(load > knee))
    if band.low is None:
        spread = "no band (no bootstrap)"
    else:
        upper = f"{band.high:.4g}" if band.high is not None else f"above {high_load:.4g} (the highest load seen)"
        spread = f"band {band.low:.4g} to {upper}; {band.crossed} of {resamples} resamples crossed"
    return dataclasses.replace(evidence, outcome=Outcome.OBSERVED, reason=f"the share of requests within the latency threshold falls below "
                    f"{percentile:g}% at {knee:.4g} per replica ({spread}), {seen}; {beyond} interval(s) above it",
                    recommended=knee, low=band.low, high=band.high, beyond=beyond, resamples=resamples,
                    crossed=band.crossed, curve=curve)


def fit(load: FloatArray, share: FloatArray, weights: FloatArray,
        bins: npt.NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
    """The non-increasing weighted least-squares fit of ``share`` on ``load``, pooled by ``bins``
    (each interval's bin index, ascending with load): each occupied bin's weighted mean load and
    its fitted share."""
    count = int(bins.max()) + 1
    weight = np.asarray(np.bincount(bins, weights, minlength=count), dtype=np.float64)
    occupied = weight > 0
    total = weight[occupied]
    xs = np.bincount(bins, weights * load, minlength=count)[occupied] / total
    ys = np.bincount(bins, weights * share, minlength=count)[occupied] / total
    return xs, -_increasing(-ys, total)


def _increasing(values: FloatArray, weights: FloatArray) -> FloatArray:
    """Pool adjacent violators: the non-decreasing weighted least-squares fit of ``values``."""
    means: list[float] = []
    totals: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(value)
        totals.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mean, total, size = means.pop(), totals.pop(), sizes.pop()
            pooled = totals[-1] + total
            means[-1] = (means[-1] * totals[-1] + mean * total) / pooled
            totals[-1] = pooled
            sizes[-1] += size
    return np.repeat(np.asarray(means, dtype=np.float64), sizes)


def _bins(load: FloatArray, low: float, high: float) -> npt.NDArray[np.intp]:
    if high <= low:
        return np.zeros(load.shape, dtype=np.intp)
    return np.minimum(((load - low) / (high - low) * BINS).astype(np.intp), BINS - 1)


def _knee(xs: FloatArray, fitted: FloatArray, target: float) -> float | None:
    """The load where the fitted share falls to ``target``, linear between the last bin at or above
    it and the first below; None when it never falls below (``fitted[0]`` is at or above it)."""
    below = np.flatnonzero(fitted < target)
    if not below.size:
        return None
    after = int(below[0])
    before = after - 1
    above, under = float(fitted[before]), float(fitted[after])
    part = (above - target) / (above - under)
    return float(xs[before] + part * (xs[after] - xs[before]))


@dataclasses.dataclass(frozen=True)
class _Band:
    low: float | None
    high: float | None
    crossed: int


def _bootstrap(times: FloatArray, load: FloatArray, share: FloatArray, weights: FloatArray,
               bins: npt.NDArray[np.intp], target: float, resamples: int, seed: int) -> _Band:
    """Knees of ``resamples`` block resamples (whole days): their 5th and 95th percentiles."""
    if resamples <= 0:
        return _Band(None, None, 0)
    span = float(times.max() - times.min())
    block = DAY if span >= MIN_BLOCKS * DAY else max(span / MIN_BLOCKS, 1.0)
    block_of = ((times - times.min()) // block).astype(np.intp)
    members = [np.flatnonzero(block_of == index) for index in np.unique(block_of)]
    generator = np.random.default_rng(seed)
    knees = np.empty(resamples)
    for draw in range(resamples):
        chosen = np.concatenate([members[index] for index in generator.integers(0, len(members), len(members))])
        xs, fitted = fit(load[chosen], share[chosen], weights[chosen], bins[chosen])
        # Never met in a resample: a knee below its lightest load; never crossed: above its heaviest.
        found = _knee(xs, fitted, target) if fitted[0] >= target else -math.inf
        knees[draw] = math.inf if found is None else found
    ordered = np.sort(knees)
    low = float(ordered[int(math.floor(BAND[0] * (resamples - 1)))])
    high = float(ordered[int(math.ceil(BAND[1] * (resamples - 1)))])
    crossed = int(np.count_nonzero(np.isfinite(knees)))
    return _Band(low if math.isfinite(low) else None, high if math.isfinite(high) else None, crossed)


DECLARED, LEARNED = "Declared", "Learned"
"""The source of the perReplica planned with (``clinicalslo.PerReplicaFrom``'s values)."""


@dataclasses.dataclass(frozen=True)
class Choice:
    """The perReplica the planner divides by, where it comes from and why, in one phrase."""

    per_replica: float
    source: str
    """DECLARED or LEARNED."""
    reason: str


def choose(declared: float, learned: bool, outcome: str, recommended: float | None, at_least: float | None,
           surge: str | None) -> Choice:
    """The perReplica to plan with.

    ``learned`` is ``perReplicaFrom: Learned``; ``outcome`` and ``recommended`` or ``at_least`` the
    estimate's (``Outcome`` values, or any other reason when there is none); ``surge`` the surge in
    effect, if any. The result is always within [0.5x, 2x] of ``declared``, never above it during a
    surge, and ``declared`` itself unless ``learned``."""
    if not learned:
        return Choice(declared, DECLARED, f"perReplica {declared:g} declared")
    low, high = LOWEST * declared, HIGHEST * declared
    bounds = f"declared {declared:g}, bounded to [{low:g}, {high:g}]"
    if outcome == Outcome.OBSERVED and _usable(recommended):
        assert recommended is not None
        value = min(max(recommended, low), high)
        found = f"learned {recommended:.4g}"
        clamped = f"recommended {recommended:.4g}; " if value != recommended else ""
        what = f"perReplica {value:.4g} learned ({clamped}{bounds})"
    elif outcome == Outcome.NOT_OBSERVED and _usable(at_least):
        assert at_least is not None
        if at_least <= declared:
            return Choice(declared, DECLARED, f"perReplica {declared:g} declared (learned: not observed, at least "
                                              f"{at_least:.4g}, which is no reason to change it)")
        value = min(at_least, high)
        found = f"learned at least {at_least:.4g}"
        what = (f"perReplica {value:.4g} learned (the latency objective held up to {at_least:.4g} per replica; "
                f"{bounds})")
    else:
        return Choice(declared, DECLARED, f"perReplica {declared:g} declared (nothing learned to use: {outcome})")
    if surge is not None and value > declared:
        return Choice(declared, DECLARED, f"perReplica {declared:g} declared during surge {surge} ({found} is above "
                                          "it, used once the surge is over)")
    return Choice(value, LEARNED, what)


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def due(now: int, *, learned_at: int | None, attempted_at: int | None, failed: bool, first: int) -> bool:
    """Whether to learn at ``now``: a day after the last recommendation was learned; an hour after a
    failed attempt; and, with nothing learned yet, from ``first`` on (staggered by the caller)."""
    if failed and attempted_at is not None and now - attempted_at < RETRY_SECONDS:
        return False
    if learned_at is not None:
        return now - learned_at >= RELEARN_SECONDS
    return now >= first
