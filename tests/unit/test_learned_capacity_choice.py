"""Which perReplica the planner divides by (``domain.capacity.choose``) and when to relearn
(``domain.capacity.due``): a table of cases with the reason each gives, and the bounds invariant as a
hypothesis property (within [0.5x, 2x] of the declared value, never above it during a surge).
"""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, strategies as st

from healthscale.domain import capacity

# See test_planning_properties.py: import the failure printer once with its DeprecationWarning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

OBSERVED, NOT_OBSERVED = str(capacity.Outcome.OBSERVED), str(capacity.Outcome.NOT_OBSERVED)


@pytest.mark.parametrize(
    ("learned", "outcome", "recommended", "at_least", "surge", "expected", "source", "reason"),
    [
        pytest.param(False, OBSERVED, 42.0, None, None, 30.0, "Declared", "perReplica 30 declared",
                     id="Declared plans with the declared value whatever was learned"),
        pytest.param(True, OBSERVED, 42.0, None, None, 42.0, "Learned",
                     "perReplica 42 learned (declared 30, bounded to [15, 60])",
                     id="a recommendation within the bounds is used as learned"),
        pytest.param(True, OBSERVED, 80.0, None, None, 60.0, "Learned",
                     "perReplica 60 learned (recommended 80; declared 30, bounded to [15, 60])",
                     id="a recommendation above twice the declared value is bounded to twice it"),
        pytest.param(True, OBSERVED, 5.0, None, None, 15.0, "Learned",
                     "perReplica 15 learned (recommended 5; declared 30, bounded to [15, 60])",
                     id="a recommendation below half the declared value is bounded to half it"),
        pytest.param(True, OBSERVED, 20.0, None, "flu", 20.0, "Learned",
                     "perReplica 20 learned (declared 30, bounded to [15, 60])",
                     id="a recommendation below the declared value is used during a surge"),
        pytest.param(True, OBSERVED, 42.0, None, "flu", 30.0, "Declared",
                     "perReplica 30 declared during surge flu (learned 42 is above it, used once the surge is over)",
                     id="a recommendation above the declared value waits for the surge to end"),
        pytest.param(True, NOT_OBSERVED, None, 36.0, None, 36.0, "Learned",
                     "perReplica 36 learned (the latency objective held up to 36 per replica; declared 30, "
                     "bounded to [15, 60])",
                     id="a lower bound above the declared value raises perReplica to it"),
        pytest.param(True, NOT_OBSERVED, None, 100.0, None, 60.0, "Learned",
                     "perReplica 60 learned (the latency objective held up to 100 per replica; declared 30, "
                     "bounded to [15, 60])",
                     id="a lower bound above twice the declared value raises perReplica to twice it"),
        pytest.param(True, NOT_OBSERVED, None, 12.0, None, 30.0, "Declared",
                     "perReplica 30 declared (learned: not observed, at least 12, which is no reason to change it)",
                     id="a lower bound below the declared value leaves the declared value"),
        pytest.param(True, NOT_OBSERVED, None, 36.0, "flu", 30.0, "Declared",
                     "perReplica 30 declared during surge flu (learned at least 36 is above it, used once the "
                     "surge is over)",
                     id="a lower bound above the declared value waits for the surge to end"),
        pytest.param(True, "NeverMet", None, None, None, 30.0, "Declared",
                     "perReplica 30 declared (nothing learned to use: NeverMet)",
                     id="an objective missed at every load plans with the declared value and says so"),
        pytest.param(True, "Pending", None, None, None, 30.0, "Declared",
                     "perReplica 30 declared (nothing learned to use: Pending)",
                     id="nothing learned yet plans with the declared value and says so"),
        pytest.param(True, "PrometheusUnavailable", None, None, None, 30.0, "Declared",
                     "perReplica 30 declared (nothing learned to use: PrometheusUnavailable)",
                     id="a failed first learn plans with the declared value and names the failure"),
        pytest.param(True, OBSERVED, float("nan"), None, None, 30.0, "Declared",
                     "perReplica 30 declared (nothing learned to use: Observed)",
                     id="a non-finite recommendation read back from status is never used"),
        pytest.param(True, OBSERVED, 0.0, None, None, 30.0, "Declared",
                     "perReplica 30 declared (nothing learned to use: Observed)",
                     id="a zero recommendation is never used"),
    ],
)
def test_the_perreplica_planned_with_and_why(learned: bool, outcome: str, recommended: float | None,
                                             at_least: float | None, surge: str | None, expected: float,
                                             source: str, reason: str) -> None:
    chosen = capacity.choose(30.0, learned, outcome, recommended, at_least, surge)
    assert (chosen.per_replica, chosen.source, chosen.reason) == (expected, source, reason)


@given(declared=st.floats(1e-6, 1e12), learned=st.booleans(),
       outcome=st.sampled_from([*(str(item) for item in capacity.Outcome), "Pending", "PrometheusUnavailable"]),
       recommended=st.none() | st.floats(allow_nan=True, allow_infinity=True),
       at_least=st.none() | st.floats(allow_nan=True, allow_infinity=True),
       surge=st.none() | st.just("flu"))
def test_the_planned_perreplica_stays_within_half_and_twice_the_declared_and_at_most_it_in_a_surge(
        declared: float, learned: bool, outcome: str, recommended: float | None, at_least: float | None,
        surge: str | None) -> None:
    chosen = capacity.choose(declared, learned, outcome, recommended, at_least, surge)
    assert 0.5 * declared <= chosen.per_replica <= 2.0 * declared
    if surge is not None:
        assert chosen.per_replica <= declared
    if not learned:
        assert chosen.per_replica == declared and chosen.source == capacity.DECLARED
    if chosen.source == capacity.DECLARED:
        assert chosen.per_replica == declared
    assert f"{chosen.per_replica:.4g}" in chosen.reason or f"{chosen.per_replica:g}" in chosen.reason


DAY, HOUR = capacity.RELEARN_SECONDS, capacity.RETRY_SECONDS
NOW = 1_780_000_200


@pytest.mark.parametrize(
    ("learned_at", "attempted_at", "failed", "first", "expected"),
    [
        pytest.param(None, None, False, NOW + 600, False, id="a ClinicalSLO never learned waits for its staggered turn"),
        pytest.param(None, None, False, NOW, True, id="a ClinicalSLO never learned learns on its turn"),
        pytest.param(NOW - DAY + 60, NOW - DAY + 60, False, NOW, False, id="a recommendation under a day old is kept"),
        pytest.param(NOW - DAY, NOW - DAY, False, NOW, True, id="a recommendation a day old is relearned"),
        pytest.param(NOW - 2 * DAY, NOW - HOUR + 60, True, NOW, False,
                     id="a failed attempt is not retried within the hour"),
        pytest.param(NOW - 2 * DAY, NOW - HOUR, True, NOW, True, id="a failed attempt is retried after an hour"),
        pytest.param(None, NOW - 60, True, NOW, False,
                     id="a failed first attempt is not retried within the hour either"),
    ],
)
def test_when_perreplica_is_learned(learned_at: int | None, attempted_at: int | None, failed: bool, first: int,
                                    expected: bool) -> None:
    assert capacity.due(NOW, learned_at=learned_at, attempted_at=attempted_at, failed=failed,
                        first=first) is expected
