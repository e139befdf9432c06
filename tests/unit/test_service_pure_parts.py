"""The pure helpers of the reconcile service and the demand history (no cluster, no HTTP)."""

from __future__ import annotations

import numpy as np
import pytest

from healthscale.api import surgeschedule
from healthscale.domain import history, series
from healthscale.domain.forecast import base
from healthscale.service import cycle

NOW = 1_780_000_200  # 2026-05-28T20:30:00Z, a Thursday


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = cycle.condition([], "Ready", True, "Planned", "ok", 3, NOW)
    later = cycle.condition([first], "Ready", True, "Planned", "still ok", 4, NOW + 300)
    assert later.last_transition_time == first.last_transition_time
    assert later.observed_generation == 4


def test_a_condition_moves_its_transition_time_when_its_status_flips() -> None:
    first = cycle.condition([], "MetricsAvailable", True, "DemandObserved", "ok", 1, NOW)
    flipped = cycle.condition([first], "MetricsAvailable", False, "PrometheusUnavailable", "down", 1, NOW + 300)
    assert flipped.status == "False"
    assert flipped.last_transition_time != first.last_transition_time


@pytest.mark.parametrize(
    ("demand", "expected"),
    [
        pytest.param(130.0, True, id="demand above the previous forecast's band counts"),
        pytest.param(90.0, False, id="demand inside the band does not"),
        pytest.param(None, False, id="no demand is no evidence"),
    ],
)
def test_above_band_compares_with_the_forecast_made_for_that_interval(demand: float | None, expected: bool) -> None:
    memory = cycle.Memory()
    memory.last_forecast = base.Forecast(
        model="harmonic", start=NOW - 300, step=300, point=np.array([100.0, 100.0]),
        quantiles={0.5: np.array([100.0, 100.0]), 0.9: np.array([120.0, 120.0])})
    assert cycle._above_band(memory, NOW + 300, demand, 0.9) is expected


def test_schedule_status_lists_the_next_window_of_each_surge_soonest_first() -> None:
    schedule = surgeschedule.SurgeSchedule.model_validate({
        "apiVersion": "healthscale.io/v1alpha1", "kind": "SurgeSchedule",
        "metadata": {"name": "clinics", "namespace": "ehr", "generation": 2},
        "spec": {"timezone": "UTC", "sloRefs": ["portal"], "surges": [
            {"name": "friday-clinic", "cron": "0 9 * * FRI", "duration": "3h", "minReplicas": 4},
            {"name": "evening-rounds", "cron": "0 21 * * *", "duration": "1h", "leadTime": "15m", "multiplier": 1.2},
        ]},
    })
    status = cycle.schedule_status(schedule, NOW, None)
    assert [window.name for window in status.windows] == ["evening-rounds", "friday-clinic"]
    assert status.windows[0].start == "2026-05-28T21:00:00Z"
    assert status.windows[0].active is False  # its 15 minutes of lead time start at 20:45
    later = cycle.schedule_status(schedule, NOW + 20 * 60, status)
    assert later.windows[0].active is True
    assert status.next_surge == "evening-rounds at 2026-05-28T21:00Z"
    assert later.next_surge == "friday-clinic at 2026-05-29T09:00Z"
    assert status.observed_generation == 2
    assert [(item.type, item.status, item.reason) for item in status.conditions] == [("Ready", "True", "Valid")]


def test_merging_history_keeps_old_samples_and_lets_fresh_ones_win() -> None:
    kept = history.HistoryCache("demand", 100, start=1000, values=np.array([1.0, 2.0, 3.0], dtype=np.float32))
    fresh = series.Series(1200, 100, np.array([30.0, 4.0]))
    merged = history.merge(kept, fresh, 1100, 1400)
    assert merged.start == 1100
    np.testing.assert_array_equal(merged.values, [2.0, 30.0, 4.0, np.nan])
