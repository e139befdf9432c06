"""What every model shares (``forecast.base``): quantiles of sorted errors and the error table."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings as hypothesis_settings, strategies as st
from hypothesis.extra import numpy as hnp

from healthscale.domain.forecast import base


@hypothesis_settings(max_examples=200, deadline=None)
@given(values=hnp.arrays(np.float64, st.integers(1, 300), elements=st.floats(-1e6, 1e6)))
def test_quantiles_of_sorted_errors_equal_numpys_linear_quantiles(values: np.ndarray) -> None:
    expected = np.quantile(values, base.LEVELS)
    np.testing.assert_allclose(base.sorted_quantiles(np.sort(values), base.LEVELS), expected, rtol=1e-12, atol=1e-9)


def test_the_error_table_never_narrows_with_the_horizon_above_the_median() -> None:
    random = np.random.default_rng(3)
    sampled = base.horizon_samples(12)
    # Errors that shrink with the horizon: the upper quantiles must still not narrow.
    errors = [random.standard_normal(500) / (1 + index) for index in range(sampled.size)]
    table = base.error_quantiles(errors, sampled, 12, base.LEVELS)
    upper = [row for row, level in enumerate(base.LEVELS) if level > 0.5]
    assert np.all(np.diff(table[upper], axis=1) >= 0)
    assert np.all(table[upper] >= table[base.LEVELS.index(0.5)])
