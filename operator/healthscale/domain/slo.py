"""SLO arithmetic: SLI ratios, error budget remaining and multi-window, multi-burn-rate evaluation.

Both objectives, availability and latency, are ratios of good events to all events, and go
through the same path here: event rates averaged over a window become ``Counts``
(``Counts.of_rates``), and ``evaluate`` turns counts into compliance, budget and burn rates.

Follows the Google SRE workbook scheme that Sloth and Pyrra generate as alerts: a burn rate is
the observed error ratio over the ratio the objective allows; an alert fires when both its long
and its short window burn faster than its factor. The two page-level pairs (1h/5m at 14.4x and
6h/30m at 6x) make a *fast burn*, which blocks scale-down and adds headroom in the planner.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

HOUR = 3600
AVAILABILITY, LATENCY = "availability", "latency"
OBJECTIVES = (AVAILABILITY, LATENCY)
"""The objectives a ClinicalSLO measures, as status, conditions and metrics name them."""


@dataclasses.dataclass(frozen=True)
class BurnWindow:
    """A long/short window pair and the burn factor at which it fires."""

    long: int
    short: int
    factor: float
    fast: bool

    @property
    def name(self) -> str:
        return f"{_label(self.long)}/{_label(self.short)}"


BURN_WINDOWS = (
    BurnWindow(HOUR, 5 * 60, 14.4, fast=True),
    BurnWindow(6 * HOUR, 30 * 60, 6.0, fast=True),
    BurnWindow(24 * HOUR, 2 * HOUR, 3.0, fast=False),
    BurnWindow(72 * HOUR, 6 * HOUR, 1.0, fast=False),
)

WINDOW_SECONDS = tuple(sorted({seconds for pair in BURN_WINDOWS for seconds in (pair.long, pair.short)}))
"""Every window whose counts the evaluation needs."""


MAX_REUSE_SECONDS = 15 * 60
"""The longest any window's average is reused before it is read again (the budget window's)."""


def reuse_seconds(window_seconds: int, step_seconds: int, spread: float = 0.0) -> int:
    """How long an average over ``window_seconds`` may be reused instead of queried again.

    In that time the window slides by 1/60 of its span, so its average can move by no more than
    about 1.7% of the full range: a 5m or 1h window is read every cycle, 6h every 6 minutes, 3d and
    the budget window every 15 minutes (never longer than ``MAX_REUSE_SECONDS``, never shorter than
    the cycle's step). The fast-burn pairs (1h/5m, 6h/30m) stay current, and Prometheus is spared
    most of the 3-day and 28-day subqueries. ``spread`` in [0, 1) shortens the reuse by up to half,
    so that ClinicalSLOs started together do not all re-read their long windows in the same minute.
    """
    return max(step_seconds, int(min(window_seconds // 60, MAX_REUSE_SECONDS) * (1.0 - spread / 2)))


SLOW_WINDOW_SECONDS = 6 * HOUR
"""Windows this long or longer slide slowly: their recording rules run every ``SLOW_INTERVAL``."""
SLOW_INTERVAL = "4m"
"""How often the slow windows' recording rules run: under Prometheus' 5m lookback, so an instant
read (the alerts', the operator's) always finds their last value."""


def resolution(window_seconds: int) -> str:
    """The step a window's average is sampled at (subquery resolution), by the operator and the
    recording rules alike: 1m under a day, 5m up to a week, 15m beyond (a 28d window is 2,688
    points, not 40,320; the average moves by far less than a burn threshold between them)."""
    if window_seconds < 24 * HOUR:
        return "1m"
    return "5m" if window_seconds <= 7 * 24 * HOUR else "15m"


RECORD_PREFIX = "healthscale:sli_error:ratio_rate"
"""The recording rules' name, Sloth's with healthscale's prefix; the window's label follows."""


def record_name(seconds: int) -> str:
    """``healthscale:sli_error:ratio_rate5m``: the recorded error ratio over ``seconds``."""
    return f"{RECORD_PREFIX}{duration_label(seconds)}"


def duration_label(seconds: int) -> str:
    """A window as Prometheus writes durations, largest units first: 300 -> "5m", 129600 -> "1d12h"."""
    parts, left = [], seconds
    for unit, size in (("d", 24 * HOUR), ("h", HOUR), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def promql_string(text: str) -> str:
    """``text`` as a double-quoted PromQL string literal (Go escapes)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _label(seconds: int) -> str:
    if seconds % (24 * HOUR) == 0:
        return f"{seconds // (24 * HOUR)}d"
    if seconds % HOUR == 0:
        return f"{seconds // HOUR}h"
    return f"{seconds // 60}m"


@dataclasses.dataclass(frozen=True)
class Counts:
    """Good and total events over a window."""

    good: float
    total: float

    def __post_init__(self) -> None:
        if self.total < 0 or self.good < 0:
            raise ValueError(f"event counts cannot be negative (good={self.good}, total={self.total})")

    @staticmethod
    def of_rates(total_rate: float, seconds: float, *, good_rate: float | None = None,
                 bad_rate: float | None = None) -> Counts:
        """Counts over ``seconds`` from average event rates: all events and either the good or the
        bad ones (a missing bad rate is no bad events). Good events never exceed all events."""
        total = max(0.0, total_rate)
        good = total - max(0.0, bad_rate or 0.0) if good_rate is None else min(total, good_rate)
        return Counts(good=max(0.0, good) * seconds, total=total * seconds)

    @property
    def compliance(self) -> float | None:
        """Share of good events (the SLI); None when there were no events."""
        ratio = self.error_ratio
        return None if ratio is None else 1.0 - ratio

    @property
    def error_ratio(self) -> float | None:
        """Share of bad events; None when there were no events (no evidence either way)."""
        if self.total <= 0:
            return None
        return min(1.0, max(0.0, (self.total - self.good) / self.total))


def allowed_error_ratio(objective_percent: float) -> float:
    if not 0 < objective_percent < 100:
        raise ValueError(f"objective must be between 0 and 100 percent, got {objective_percent}")
    return 1.0 - objective_percent / 100.0


def burn_rate(objective_percent: float, counts: Counts) -> float | None:
    """How many times faster than sustainable the budget is being spent (1.0 = exactly on budget)."""
    ratio = counts.error_ratio
    return None if ratio is None else ratio / allowed_error_ratio(objective_percent)


def budget_remaining(objective_percent: float, window: Counts) -> float | None:
    """Share of the window's error budget left: 1 untouched, 0 spent, negative overspent."""
    rate = burn_rate(objective_percent, window)
    return None if rate is None else 1.0 - rate


@dataclasses.dataclass(frozen=True)
class Alert:
    window: BurnWindow
    long_rate: float | None
    short_rate: float | None

    @property
    def firing(self) -> bool:
        return (
            self.long_rate is not None
            and self.short_rate is not None
            # Rounded: 14.4% errors against a 99% objective is 14.399999999999986 in floats.
            and round(self.long_rate, 9) >= self.window.factor
            and round(self.short_rate, 9) >= self.window.factor
        )


@dataclasses.dataclass(frozen=True)
class Report:
    """Burn rates per window, the alerts they make, and what the planner should do about them."""

    rates: Mapping[str, float | None]
    alerts: tuple[Alert, ...]
    budget_remaining: float | None
    compliance: float | None = None
    """Share of good events over the SLO window (0 to 1)."""

    @property
    def fast_burn(self) -> bool:
        return any(alert.firing and alert.window.fast for alert in self.alerts)

    @property
    def slow_burn(self) -> bool:
        return any(alert.firing and not alert.window.fast for alert in self.alerts)

    def summary(self) -> str:
        firing = [f"{alert.window.name} at {alert.long_rate:.1f}x/{alert.short_rate:.1f}x (>= {alert.window.factor:g}x)"
                  for alert in self.alerts if alert.firing]
        return "burning: " + ", ".join(firing) if firing else "within budget"


def evaluate(objective_percent: float, counts_by_window: Mapping[int, Counts], slo_window: Counts | None) -> Report:
    """Burn rates for every window in ``counts_by_window`` (seconds -> counts) and the alerts."""
    rates = {_label(seconds): burn_rate(objective_percent, counts) for seconds, counts in sorted(counts_by_window.items())}
    alerts = tuple(
        Alert(pair, rates.get(_label(pair.long)), rates.get(_label(pair.short))) for pair in BURN_WINDOWS
    )
    remaining = budget_remaining(objective_percent, slo_window) if slo_window is not None else None
    return Report(rates, alerts, remaining, slo_window.compliance if slo_window is not None else None)


BUCKET_TOLERANCE = 0.001
"""A bucket boundary within 0.1% of the threshold is the threshold (le values are printed floats)."""


def bucket_at(threshold_seconds: float, boundaries: Sequence[str]) -> str | None:
    """The ``le`` label value (exactly as Prometheus has it) whose boundary is ``threshold_seconds``
    within ``BUCKET_TOLERANCE``; None when no boundary is."""
    found = []
    for text in boundaries:
        try:
            value = float(text)
        except ValueError:
            continue  # not a boundary; Prometheus itself would not accept such an le
        if math.isfinite(value) and math.isclose(value, threshold_seconds, rel_tol=BUCKET_TOLERANCE):
            found.append((abs(value - threshold_seconds), text))
    return min(found)[1] if found else None


def sorted_boundaries(boundaries: Sequence[str]) -> list[str]:
    """``le`` values in numeric order (+Inf last), for messages; unreadable ones at the end."""
    def key(text: str) -> tuple[int, float, str]:
        try:
            return 0, float(text), text
        except ValueError:
            return 1, 0.0, text
    return sorted(set(boundaries), key=key)
