"""SLO arithmetic: burn rate, error budget remaining, the multi-window multi-burn-rate table and the fast burn
that blocks scale-down. Every expected number is worked out by hand in the test's id or comment.

A burn rate is the observed error ratio over the ratio the objective allows: with 99.9% availability the
allowance is 0.1%, so 1.44% errors burn the budget 14.4 times faster than sustainable.
"""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st

from healthscale.domain import slo

HOUR = 3600
MINUTE = 60


def counts(error_percent: float, total: float = 1_000_000.0) -> slo.Counts:
    """``total`` events of which ``error_percent`` percent were bad."""
    return slo.Counts(good=total - total * error_percent / 100.0, total=total)


# --- Counts, burn rate and budget ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("good", "total", "ratio"),
    [
        pytest.param(990.0, 1000.0, 0.01, id="10 bad in 1000 is an error ratio of 1%"),
        pytest.param(1000.0, 1000.0, 0.0, id="no bad events is an error ratio of 0"),
        pytest.param(0.0, 1000.0, 1.0, id="no good events is an error ratio of 1"),
        pytest.param(0.0, 0.0, None, id="no events at all is no evidence either way"),
        pytest.param(1001.0, 1000.0, 0.0, id="more good than total (counter skew) clips to 0, not below"),
        pytest.param(0.25, 0.5, 0.5, id="per-second rates work like counts"),
    ],
)
def test_error_ratio(good: float, total: float, ratio: float | None) -> None:
    observed = slo.Counts(good, total).error_ratio
    if ratio is None:
        assert observed is None
    else:
        assert observed == pytest.approx(ratio)


@pytest.mark.parametrize(
    ("good", "total"),
    [
        pytest.param(-1.0, 10.0, id="negative good events are rejected"),
        pytest.param(1.0, -10.0, id="negative total events are rejected"),
    ],
)
def test_negative_counts_are_rejected(good: float, total: float) -> None:
    with pytest.raises(ValueError, match="event counts cannot be negative"):
        slo.Counts(good, total)


@pytest.mark.parametrize(
    ("objective", "allowed"),
    [
        pytest.param(99.9, 0.001, id="99.9% allows 0.1% errors"),
        pytest.param(99.0, 0.01, id="99% allows 1% errors"),
        pytest.param(95.0, 0.05, id="95% allows 5% errors"),
        pytest.param(99.99, 0.0001, id="99.99% allows 0.01% errors"),
    ],
)
def test_allowed_error_ratio(objective: float, allowed: float) -> None:
    assert slo.allowed_error_ratio(objective) == pytest.approx(allowed)


@pytest.mark.parametrize(
    "objective",
    [pytest.param(0.0, id="0%"), pytest.param(100.0, id="100%"), pytest.param(-5.0, id="-5%"),
     pytest.param(150.0, id="150%")],
)
def test_an_objective_outside_0_to_100_percent_is_rejected(objective: float) -> None:
    with pytest.raises(ValueError, match="objective must be between 0 and 100 percent"):
        slo.allowed_error_ratio(objective)


@pytest.mark.parametrize(
    ("objective", "error_percent", "rate"),
    [
        pytest.param(99.9, 1.44, 14.4, id="1.44% errors against 99.9% burns 14.4x"),
        pytest.param(99.9, 0.6, 6.0, id="0.6% errors against 99.9% burns 6x"),
        pytest.param(99.9, 0.1, 1.0, id="0.1% errors against 99.9% burns exactly on budget"),
        pytest.param(99.9, 0.0, 0.0, id="no errors burn nothing"),
        pytest.param(99.0, 0.5, 0.5, id="0.5% errors against 99% burn half the allowance"),
        pytest.param(95.0, 100.0, 20.0, id="all errors against 95% burn 20x, the fastest possible"),
    ],
)
def test_burn_rate(objective: float, error_percent: float, rate: float) -> None:
    assert slo.burn_rate(objective, counts(error_percent)) == pytest.approx(rate)


def test_zero_traffic_has_no_burn_rate_and_no_division_by_zero() -> None:
    assert slo.burn_rate(99.9, slo.Counts(0.0, 0.0)) is None
    assert slo.budget_remaining(99.9, slo.Counts(0.0, 0.0)) is None


@pytest.mark.parametrize(
    ("objective", "error_percent", "remaining"),
    [
        pytest.param(99.9, 0.0, 1.0, id="no errors leave the whole budget"),
        pytest.param(99.9, 0.05, 0.5, id="0.05% errors against 99.9% leave half"),
        pytest.param(99.9, 0.1, 0.0, id="0.1% errors against 99.9% spend it exactly"),
        pytest.param(99.9, 0.3, -2.0, id="0.3% errors against 99.9% overspend it twice over"),
        pytest.param(99.0, 0.25, 0.75, id="0.25% errors against 99% leave three quarters"),
    ],
)
def test_budget_remaining(objective: float, error_percent: float, remaining: float) -> None:
    assert slo.budget_remaining(objective, counts(error_percent)) == pytest.approx(remaining)


# --- The burn-rate table --------------------------------------------------------------------------------


def test_the_burn_windows_are_the_sre_workbook_table() -> None:
    table = [(pair.name, pair.long, pair.short, pair.factor, pair.fast) for pair in slo.BURN_WINDOWS]
    assert table == [
        ("1h/5m", HOUR, 5 * MINUTE, 14.4, True),
        ("6h/30m", 6 * HOUR, 30 * MINUTE, 6.0, True),
        ("1d/2h", 24 * HOUR, 2 * HOUR, 3.0, False),
        ("3d/6h", 72 * HOUR, 6 * HOUR, 1.0, False),
    ]
    assert slo.WINDOW_SECONDS == (5 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 6 * HOUR, 24 * HOUR, 72 * HOUR)


def windows(**error_percent: float) -> dict[int, slo.Counts]:
    """Counts per window from keyword names such as ``h1=1.44, m5=1.44`` (unnamed windows: no errors)."""
    seconds = {"m5": 5 * MINUTE, "m30": 30 * MINUTE, "h1": HOUR, "h2": 2 * HOUR, "h6": 6 * HOUR,
               "d1": 24 * HOUR, "d3": 72 * HOUR}
    return {length: counts(error_percent.get(name, 0.0)) for name, length in seconds.items()}


@pytest.mark.parametrize(
    ("objective", "by_window", "firing", "fast", "slow"),
    [
        pytest.param(99.9, windows(h1=1.44, m5=1.44), ["1h/5m"], True, False,
                     id="1.44% errors over 1h and 5m against 99.9% burn 14.4x: a fast burn"),
        pytest.param(99.9, windows(h1=2.0, m5=2.0), ["1h/5m"], True, False,
                     id="2% errors over 1h and 5m burn 20x: a fast burn"),
        pytest.param(99.9, windows(h1=1.44, m5=0.5), [], False, False,
                     id="a burn that has stopped in the last 5m does not fire"),
        pytest.param(99.9, windows(h1=0.5, m5=1.44), [], False, False,
                     id="a 5m spike without the hour behind it does not fire"),
        pytest.param(99.9, windows(h1=1.43, m5=1.43), [], False, False,
                     id="1.43% errors burn 14.3x, just under the 1h/5m factor"),
        pytest.param(99.9, windows(h6=0.6, m30=0.6), ["6h/30m"], True, False,
                     id="0.6% errors over 6h and 30m burn 6x: also a fast burn"),
        pytest.param(99.9, windows(d1=0.3, h2=0.3), ["1d/2h"], False, True,
                     id="0.3% errors over a day and 2h burn 3x: a slow burn that does not block scale-down"),
        pytest.param(99.9, windows(d3=0.1, h6=0.1), ["3d/6h"], False, True,
                     id="0.1% errors over three days and 6h burn exactly 1x: a slow burn"),
        pytest.param(99.9, windows(), [], False, False, id="no errors anywhere is within budget"),
        pytest.param(
            99.9, windows(m5=2.0, m30=2.0, h1=2.0, h2=2.0, h6=2.0, d1=2.0, d3=2.0),
            ["1h/5m", "6h/30m", "1d/2h", "3d/6h"], True, True,
            id="2% errors everywhere fire every alert",
        ),
        pytest.param(99.0, windows(h1=14.4, m5=14.4), ["1h/5m"], True, False,
                     id="14.4% errors over 1h and 5m against 99% burn exactly 14.4x: a fast burn"),
        pytest.param(99.0, windows(h6=6.0, m30=6.0), ["6h/30m"], True, False,
                     id="6% errors over 6h and 30m against 99% burn exactly 6x: a fast burn"),
        pytest.param(99.99, windows(h1=0.144, m5=0.144), ["1h/5m"], True, False,
                     id="0.144% errors over 1h and 5m against 99.99% burn exactly 14.4x: a fast burn"),
    ],
)
def test_the_multiwindow_burn_table(objective: float, by_window: dict[int, slo.Counts], firing: list[str],
                                    fast: bool, slow: bool) -> None:
    report = slo.evaluate(objective, by_window, None)
    assert [alert.window.name for alert in report.alerts if alert.firing] == firing
    assert report.fast_burn is fast
    assert report.slow_burn is slow


def test_the_report_carries_every_window_rate_by_its_label() -> None:
    report = slo.evaluate(99.9, windows(h1=1.44, m5=0.72, d3=0.05), None)
    assert dict(report.rates) == pytest.approx(
        {"5m": 7.2, "30m": 0.0, "1h": 14.4, "2h": 0.0, "6h": 0.0, "1d": 0.0, "3d": 0.5}
    )


def test_the_summary_names_the_firing_window_with_both_rates() -> None:
    report = slo.evaluate(99.9, windows(h1=2.0, m5=3.0), None)
    assert report.summary() == "burning: 1h/5m at 20.0x/30.0x (>= 14.4x)"
    assert slo.evaluate(99.9, windows(), None).summary() == "within budget"


# --- Missing indicators and zero traffic -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("by_window", "expected_rates"),
    [
        pytest.param({}, {}, id="no indicators (no errors or total query) give no rates and no burn"),
        pytest.param({HOUR: counts(5.0)}, {"1h": 50.0},
                     id="a burning long window without its short window does not fire"),
        pytest.param({5 * MINUTE: counts(5.0)}, {"5m": 50.0},
                     id="a burning short window without its long window does not fire"),
        pytest.param({HOUR: slo.Counts(0.0, 0.0), 5 * MINUTE: slo.Counts(0.0, 0.0)}, {"1h": None, "5m": None},
                     id="zero traffic over both windows is no burn, not a division by zero"),
        pytest.param({HOUR: counts(5.0), 5 * MINUTE: slo.Counts(0.0, 0.0)}, {"1h": 50.0, "5m": None},
                     id="no traffic in the last 5m does not fire on the hour's errors alone"),
    ],
)
def test_missing_or_empty_windows_never_fire(by_window: dict[int, slo.Counts],
                                              expected_rates: dict[str, float | None]) -> None:
    report = slo.evaluate(99.9, by_window, None)
    assert dict(report.rates) == pytest.approx(expected_rates)
    assert not any(alert.firing for alert in report.alerts)
    assert report.fast_burn is False and report.slow_burn is False
    assert report.budget_remaining is None
    assert report.summary() == "within budget"


@pytest.mark.parametrize(
    ("slo_window", "remaining"),
    [
        pytest.param(counts(0.025), 0.75, id="0.025% errors over the SLO window leave three quarters of the budget"),
        pytest.param(counts(0.2), -1.0, id="0.2% errors over the SLO window overspend it by a whole budget"),
        pytest.param(slo.Counts(0.0, 0.0), None, id="no traffic over the SLO window leaves the budget unknown"),
        pytest.param(None, None, id="no SLO window counts leave the budget unknown"),
    ],
)
def test_the_report_carries_the_budget_remaining(slo_window: slo.Counts | None, remaining: float | None) -> None:
    report = slo.evaluate(99.9, windows(), slo_window)
    if remaining is None:
        assert report.budget_remaining is None
    else:
        assert report.budget_remaining == pytest.approx(remaining)


# --- How long a window's average is reused ------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "step", "reused_for"),
    [
        pytest.param(5 * MINUTE, MINUTE, MINUTE, id="a 5m window is read every 1m cycle"),
        pytest.param(HOUR, MINUTE, MINUTE, id="a 1h window is read every 1m cycle, so the fast pairs stay current"),
        pytest.param(6 * HOUR, MINUTE, 6 * MINUTE, id="a 6h window is reused for 6 minutes (1/60 of it)"),
        pytest.param(72 * HOUR, MINUTE, 15 * MINUTE, id="a 3d window is reused for at most 15 minutes"),
        pytest.param(28 * 24 * HOUR, MINUTE, 15 * MINUTE, id="the 28d budget window is reused for at most 15 minutes"),
        pytest.param(HOUR, 5 * MINUTE, 5 * MINUTE, id="nothing is reused for less than the cycle's step"),
        pytest.param(28 * 24 * HOUR, HOUR, HOUR, id="a step longer than the cap reads every cycle"),
    ],
)
def test_reuse_seconds(window: int, step: int, reused_for: int) -> None:
    assert slo.reuse_seconds(window, step) == reused_for


@pytest.mark.parametrize(
    ("window", "spread", "reused_for"),
    [
        pytest.param(6 * HOUR, 0.5, 270, id="a spread of one half shortens 6 minutes of reuse by a quarter"),
        pytest.param(28 * 24 * HOUR, 0.999, 450, id="the largest spread halves the 15 minutes at most"),
        pytest.param(2 * HOUR, 0.999, MINUTE, id="a spread never takes the reuse below the step"),
    ],
)
def test_a_spread_staggers_rereads_without_extending_them(window: int, spread: float, reused_for: int) -> None:
    assert slo.reuse_seconds(window, MINUTE, spread) == reused_for
    assert slo.reuse_seconds(window, MINUTE, spread) <= slo.reuse_seconds(window, MINUTE)


# --- One path for both objectives: rates to counts, compliance, the latency bucket ---------------------


@pytest.mark.parametrize(
    ("total_rate", "good_rate", "bad_rate", "expected"),
    [
        pytest.param(10.0, None, 0.5, slo.Counts(good=9.5 * 60, total=10.0 * 60),
                     id="availability: 0.5 errors a second of 10 over a minute is 570 good of 600"),
        pytest.param(10.0, None, None, slo.Counts(good=600.0, total=600.0),
                     id="availability: no error series is no bad events"),
        pytest.param(10.0, 9.0, None, slo.Counts(good=540.0, total=600.0),
                     id="latency: 9 fast requests a second of 10 over a minute is 540 good of 600"),
        pytest.param(10.0, 11.0, None, slo.Counts(good=600.0, total=600.0),
                     id="latency: more fast than all (scrape skew) clips to all"),
        pytest.param(-1.0, None, 0.0, slo.Counts(good=0.0, total=0.0),
                     id="a negative rate (a counter reset mid-window) counts as no events"),
        pytest.param(10.0, None, 12.0, slo.Counts(good=0.0, total=600.0),
                     id="more errors than requests is all bad, never negative good"),
    ],
)
def test_counts_of_rates(total_rate: float, good_rate: float | None, bad_rate: float | None,
                         expected: slo.Counts) -> None:
    assert slo.Counts.of_rates(total_rate, 60, good_rate=good_rate, bad_rate=bad_rate) == expected


@pytest.mark.parametrize(
    ("window", "compliance", "remaining"),
    [
        pytest.param(slo.Counts(good=9_995.0, total=10_000.0), 0.9995, 0.5,
                     id="99.95% good against 99.9% is compliant with half the budget left"),
        pytest.param(slo.Counts(good=9_980.0, total=10_000.0), 0.998, -1.0,
                     id="99.8% good against 99.9% spent the budget twice over"),
        pytest.param(slo.Counts(good=0.0, total=0.0), None, None, id="no events has no compliance"),
    ],
)
def test_the_report_carries_compliance_over_the_slo_window(window: slo.Counts, compliance: float | None,
                                                           remaining: float | None) -> None:
    report = slo.evaluate(99.9, {}, window)
    assert report.compliance == (pytest.approx(compliance) if compliance is not None else None)
    assert report.budget_remaining == (pytest.approx(remaining) if remaining is not None else None)


BOUNDARIES = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]


@pytest.mark.parametrize(
    ("threshold", "boundaries", "bucket"),
    [
        pytest.param(2.5, BOUNDARIES, "2.5", id="a threshold on a boundary picks that bucket's le as written"),
        pytest.param(1.0, BOUNDARIES, "1", id="1 s picks le 1"),
        pytest.param(0.1, ["0.1000001", "0.2"], "0.1000001", id="a boundary within 0.1% of the threshold matches"),
        pytest.param(1.5, BOUNDARIES, None, id="1.5 s between the 1 and 2.5 buckets matches none"),
        pytest.param(1.0, ["1.002", "+Inf"], None, id="a boundary 0.2% away is another boundary"),
        pytest.param(1.0, [], None, id="no boundaries match nothing"),
        pytest.param(1.0, ["NaN", "one", "+Inf"], None, id="unreadable or infinite boundaries never match"),
        pytest.param(1.0, ["1.0", "1"], "1", id="of two spellings the exact one wins"),
    ],
)
def test_the_latency_bucket_at_the_threshold(threshold: float, boundaries: list[str], bucket: str | None) -> None:
    assert slo.bucket_at(threshold, boundaries) == bucket


def test_boundaries_are_listed_in_numeric_order_for_messages() -> None:
    assert slo.sorted_boundaries(["+Inf", "10", "2.5", "0.5", "2.5", "x"]) == ["0.5", "2.5", "10", "+Inf", "x"]


rates = st.floats(0.0, 1e6, allow_nan=False)
objectives = st.floats(50.0, 99.999)


@hypothesis.given(objective=objectives, total=st.floats(1e-3, 1e6), bad=rates, more=rates)
def test_the_burn_rate_is_monotone_in_bad_events(objective: float, total: float, bad: float, more: float) -> None:
    fewer = slo.burn_rate(objective, slo.Counts.of_rates(total, 60, bad_rate=bad))
    worse = slo.burn_rate(objective, slo.Counts.of_rates(total, 60, bad_rate=bad + more))
    assert fewer is not None and worse is not None
    assert worse >= fewer


@hypothesis.given(objective=objectives, total=st.floats(1e-3, 1e6), good=rates)
def test_good_events_and_bad_events_give_one_answer(objective: float, total: float, good: float) -> None:
    # The latency SLI (good events) and the availability SLI (bad events) are the same arithmetic.
    kept = min(good, total)
    as_good = slo.evaluate(objective, {60: slo.Counts.of_rates(total, 60, good_rate=kept)},
                           slo.Counts.of_rates(total, 1, good_rate=kept))
    as_bad = slo.evaluate(objective, {60: slo.Counts.of_rates(total, 60, bad_rate=total - kept)},
                          slo.Counts.of_rates(total, 1, bad_rate=total - kept))
    assert as_good.rates["1m"] == pytest.approx(as_bad.rates["1m"], abs=1e-6)
    assert as_good.compliance == pytest.approx(as_bad.compliance, abs=1e-9)
    assert as_good.compliance is not None and 0.0 <= as_good.compliance <= 1.0
    assert as_good.budget_remaining is not None and as_good.budget_remaining <= 1.0
