"""Out-of-sample plan quality: a choice made on earlier periods, scored on the next, against matched references.

Each candidate (one engine configuration, e.g. a forecast model) is replayed once over the whole
trace; references (the reactive HPA, the three-line heuristic) are replayed once per headroom
they are tried at. For each split (``splits.rolling``) the candidate with the least unmet demand
relative to the reactive HPA at equal replica-hours *on the periods before* is chosen, and its
plan for the scored period is kept. The kept periods, stitched, are then compared with:

- the reactive HPA given at least their replica-hours (the ratio "x" the goals are stated in);
- the three-line heuristic given at least their replica-hours;
- the oracle's replica-hours over the same intervals;

and the engine's forecast quantile on them is checked for calibration. Matched references pick
their headroom on the intervals they are compared over, in hindsight: that favours them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from healthscale.backtest import calibration as calibration_, references, splits as splits_
from healthscale.domain import series

FloatArray = series.FloatArray
BoolArray = splits_.BoolArray


@dataclasses.dataclass(frozen=True, eq=False)
class Candidate:
    """One engine configuration's replay: per scored interval, ready replicas and the forecast quantile."""

    name: str
    ready: FloatArray
    quantile: FloatArray


class Reference:
    """A reference policy's ready replicas at any headroom, replayed on first use and kept."""

    def __init__(self, replay_at: Callable[[int], FloatArray], lowest: int) -> None:
        self._replay_at = replay_at
        self.lowest = lowest
        self._runs: dict[int, FloatArray] = {}

    def ready(self, headroom_percent: int) -> FloatArray:
        if headroom_percent not in self._runs:
            self._runs[headroom_percent] = self._replay_at(headroom_percent)
        return self._runs[headroom_percent]

    def matched(self, mask: BoolArray, budget: float) -> tuple[int, FloatArray]:
        """The least headroom whose replica-hours over ``mask`` reach ``budget``, and its ready replicas."""
        headroom = references.least_headroom(lambda percent: float(self.ready(percent)[mask].sum()) >= budget,
                                             self.lowest)
        return headroom, self.ready(headroom)


def unmet(demand: FloatArray, ready: FloatArray, per_replica: float, mask: BoolArray) -> float:
    """Demand left unmet over ``mask``, in demand units."""
    return float(np.maximum(0.0, demand[mask] - ready[mask] * per_replica).sum())


def ratio(ours: float, reference: float) -> float:
    """``ours / reference``: 0 when neither left demand unmet, infinite when only we did."""
    if reference > 0:
        return ours / reference
    return 0.0 if ours <= 0 else math.inf


@dataclasses.dataclass(frozen=True)
class SplitScore:
    """One split: what was chosen, and the scored period against the matched references."""

    period: str
    chosen: str
    versus_hpa: float
    versus_heuristic: float


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Every split's scored period together, against the references matched over all of them."""

    unit: str
    splits: tuple[SplitScore, ...]
    intervals: int
    unmet_percent: float
    hpa_unmet_percent: float
    hpa_headroom: int
    heuristic_unmet_percent: float
    heuristic_headroom: int
    relative_replica_hours: float
    """healthscale's replica-hours over the oracle's, on the scored periods."""
    default_versus_hpa: float
    """The default candidate kept for every period (no choice), against the HPA matched to it."""
    calibration: calibration_.Calibration

    @property
    def versus_hpa(self) -> float:
        return ratio(self.unmet_percent, self.hpa_unmet_percent)

    @property
    def versus_heuristic(self) -> float:
        return ratio(self.unmet_percent, self.heuristic_unmet_percent)

    def chosen(self) -> dict[str, int]:
        """How many splits chose each candidate."""
        counts: dict[str, int] = {}
        for split in self.splits:
            counts[split.chosen] = counts.get(split.chosen, 0) + 1
        return counts


def evaluate(
    demand: FloatArray,
    oracle: FloatArray,
    per_replica: float,
    level: float,
    candidates: Sequence[Candidate],
    hpa: Reference,
    heuristic: Reference,
    splits: Sequence[splits_.Split],
    unit: str,
) -> Outcome:
    """Choose per split on its earlier periods, score on its period; the first candidate is the default."""
    if not candidates or not splits:
        raise ValueError("need at least one candidate and one split")

    def versus(ready: FloatArray, mask: BoolArray, reference: Reference) -> float:
        _, matched = reference.matched(mask, float(ready[mask].sum()))
        return ratio(unmet(demand, ready, per_replica, mask), unmet(demand, matched, per_replica, mask))

    ready = np.full(demand.shape, np.nan)
    quantile = np.full(demand.shape, np.nan)
    scored = np.zeros(demand.shape, dtype=bool)
    scores = []
    for split in splits:
        # Least unmet against the HPA at equal cost on the earlier periods; ties go to fewer replica-hours.
        best = min(candidates, key=lambda candidate: (versus(candidate.ready, split.choose, hpa),
                                                      float(candidate.ready[split.choose].sum())))
        ready[split.score] = best.ready[split.score]
        quantile[split.score] = best.quantile[split.score]
        scored |= split.score
        scores.append(SplitScore(split.period, best.name, versus(best.ready, split.score, hpa),
                                 versus(best.ready, split.score, heuristic)))
    budget = float(ready[scored].sum())
    hpa_headroom, hpa_ready = hpa.matched(scored, budget)
    heuristic_headroom, heuristic_ready = heuristic.matched(scored, budget)
    share = 100.0 / float(demand[scored].sum()) if demand[scored].sum() > 0 else 0.0
    oracle_hours = float(oracle[scored].sum())
    return Outcome(
        unit=unit,
        splits=tuple(scores),
        intervals=int(np.count_nonzero(scored)),
        unmet_percent=share * unmet(demand, ready, per_replica, scored),
        hpa_unmet_percent=share * unmet(demand, hpa_ready, per_replica, scored),
        hpa_headroom=hpa_headroom,
        heuristic_unmet_percent=share * unmet(demand, heuristic_ready, per_replica, scored),
        heuristic_headroom=heuristic_headroom,
        relative_replica_hours=budget / oracle_hours if oracle_hours > 0 else math.nan,
        default_versus_hpa=versus(candidates[0].ready, scored, hpa),
        calibration=calibration_.calibration(demand[scored], quantile[scored], level),
    )


def chosen_text(counts: Mapping[str, int]) -> str:
    """``auto 20, harmonic 3``: candidates by how often they were chosen."""
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
