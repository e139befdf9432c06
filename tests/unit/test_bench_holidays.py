"""bench/holiday_effect.py's scoring: day classes around holidays, the errors per class, the common pairs."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench_module() -> ModuleType:
    # The script imports its sibling ``run`` as bench scripts do (their folder is first on sys.path).
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "bench"))
        spec = importlib.util.spec_from_file_location("healthscale_bench_holiday_effect",
                                                      REPO_ROOT / "bench" / "holiday_effect.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up by name
        spec.loader.exec_module(module)
    return module


effect = _bench_module()


@pytest.mark.parametrize(("days", "holidays", "expected"), [
    pytest.param([10, 11, 12], (10,), ["holiday", "day after", "other day"], id="the day after a holiday is its own class"),
    pytest.param([10, 11, 12], (10, 11), ["holiday", "holiday", "day after"],
                 id="a holiday after a holiday stays a holiday"),
    pytest.param([9, 10], (), ["other day", "other day"], id="without holidays every day is an other day"),
])
def test_day_classes(days: list[int], holidays: tuple[int, ...], expected: list[str]) -> None:
    classes = effect.day_classes(np.asarray(days, dtype=np.int64), holidays)
    assert [effect.CLASSES[kind] for kind in classes] == expected


def test_score_splits_errors_by_day_class() -> None:
    actual = np.array([10.0, 10.0, 4.0, 4.0])
    point = np.array([8.0, 12.0, 4.0, 5.0])
    upper = np.array([12.0, 9.0, 6.0, 6.0])
    days = np.array([1, 1, 2, 2])
    classes = np.array([effect.HOLIDAY, effect.HOLIDAY, effect.OTHER, effect.OTHER])
    scores = effect.score(actual, point, upper, 0.9, days, classes)
    holiday = scores[effect.HOLIDAY]
    assert (holiday.forecasts, holiday.days) == (2, 1)
    assert holiday.mae == pytest.approx(2.0)
    # Above the quantile by 1 costs 0.9; below it by 2 costs 0.1 x 2.
    assert holiday.pinball == pytest.approx((0.1 * 2 + 0.9 * 1) / 2)
    assert holiday.above_percent == pytest.approx(50.0)
    assert scores[effect.OTHER].mae == pytest.approx(0.5)
    assert scores[effect.OTHER].above_percent == 0.0
    assert scores[effect.AFTER].forecasts == 0 and math.isnan(scores[effect.AFTER].mae)


def _forecasts(point: list[list[float]]) -> object:
    values = np.asarray(point)
    return effect.Forecasts(np.array([2, 3]), values, values + 1.0, 0.9, 0.0)


def test_common_pairs_keeps_only_what_every_variant_forecast_and_was_observed() -> None:
    values = np.array([0.0, 0.0, 5.0, math.nan, 7.0])
    pairs = effect.common_pairs(values, {
        "none": _forecasts([[1.0, 2.0], [3.0, 4.0]]),
        "Sunday": _forecasts([[1.0, math.nan], [3.0, 4.0]]),
    })
    # Origin 2: step 1 -> position 2 (kept), step 2 -> position 3 (missing demand).
    # Origin 3: step 1 -> position 3 (missing), step 2 -> position 4 (kept).
    assert pairs.target.tolist() == [2, 4]
    assert pairs.ahead.tolist() == [1, 2]
    assert pairs.actual.tolist() == [5.0, 7.0]
    assert pairs.point["Sunday"].tolist() == [1.0, 4.0]


def test_common_pairs_refuses_variants_with_different_origins() -> None:
    other = effect.Forecasts(np.array([1, 3]), np.zeros((2, 1)), np.zeros((2, 1)), 0.9, 0.0)
    with pytest.raises(ValueError, match="different origins"):
        effect.common_pairs(np.zeros(5), {"none": _forecasts([[1.0], [2.0]]), "Sunday": other})
