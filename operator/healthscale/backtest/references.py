"""The three-line heuristic reference, and the "same replica-hours" search every matched reference uses.

The three-line heuristic is what a careful operator writes without a forecaster: for the next
interval, replicas for the largest of three demands (the same slot yesterday, the same slot last
week, and the last interval seen), times ``1 + headroom``. healthscale must beat it at equal cost.

A reference "given the same replica-hours" has its headroom raised (or, for the heuristic, lowered:
its max of three already over-provisions) until it spends at least healthscale's replica-hours.
``least_headroom`` is that search, shared by the replay and the rolling-split benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from healthscale.backtest import policies
from healthscale.domain import planning, series

HEURISTIC = "three-line heuristic"

LOWEST_HEURISTIC_HEADROOM = -90
"""Percent: the max of three demands can cost more than healthscale even at no headroom, so the
equal-cost heuristic may scale it down (x0.1 at most)."""

SEARCH_START = 100
SEARCH_CEILING = 1600
"""Percent: the search doubles from ``SEARCH_START`` and gives up at this headroom."""


class ThreeLineHeuristic:
    """``max(same slot yesterday, same slot last week, last interval seen) x (1 + headroom)``.

    A missing line is left out of the max; the last interval seen is the newest observed one
    within the past week. With none of the three, the replicas are held. There is no scale-down
    stabilisation: the heuristic is the three lines and nothing else.
    """

    name = HEURISTIC

    def __init__(self, policy: planning.Policy) -> None:
        self.policy = policy

    def demand(self, context: policies.Context) -> float | None:
        """The largest of the three lines at ``context.now``, or None if all three are missing."""
        values, step, position = context.history.values, context.history.step, context.position
        lines: list[float] = []
        for lag_seconds in (series.DAY, series.WEEK):
            index = position - round(lag_seconds / step)
            if 0 <= index < position and not math.isnan(values[index]):
                lines.append(float(values[index]))
        recent = values[max(0, position - round(series.WEEK / step)):position]
        seen = np.flatnonzero(~np.isnan(recent))
        if seen.size:
            lines.append(float(recent[seen[-1]]))
        return max(lines) if lines else None

    def decide(self, context: policies.Context) -> policies.Choice:
        demand = self.demand(context)
        if demand is None:
            return policies.Choice(context.current_replicas, "hold", note="no demand in the past week")
        wanted = self.policy.replicas_for(demand, self.policy.headroom)
        replicas = min(self.policy.max_replicas, max(self.policy.min_replicas, wanted))
        return policies.Choice(replicas, "heuristic", forecast=demand)


def least_headroom(enough: Callable[[int], bool], lowest: int = 0) -> int:
    """The least headroom percent above ``lowest`` for which ``enough`` holds, to 1%.

    ``enough(h)`` says whether the reference at headroom ``h`` spends the budget. Spending grows
    with headroom, though not strictly (rounding, the HPA's tolerance), so this is a bisection:
    from ``SEARCH_START`` it doubles until enough (at most ``SEARCH_CEILING``, returned even if
    still short), then halves the gap. ``lowest`` itself is never tried; the headroom returned
    always was.
    """
    low, high = lowest, max(SEARCH_START, lowest + 1)
    while not enough(high) and high < SEARCH_CEILING:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high
