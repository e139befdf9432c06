"""bench/frontier.py's comparison at equal cost: a policy's frontier and its unmet demand between sweep points."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, strategies as st

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench_module() -> ModuleType:
    # The script imports its sibling ``run`` as bench scripts do (their folder is first on sys.path).
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "bench"))
        spec = importlib.util.spec_from_file_location("healthscale_bench_frontier", REPO_ROOT / "bench" / "frontier.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up by name
        spec.loader.exec_module(module)
    return module


frontier = _bench_module()

TOY = [(1.0, 10.0), (1.2, 2.0), (1.1, 4.0)]
"""Three sweep points, given out of cost order."""


@pytest.mark.parametrize(("points", "expected"), [
    pytest.param(TOY, [(1.0, 10.0), (1.1, 4.0), (1.2, 2.0)], id="points that keep improving are all kept, cheapest first"),
    pytest.param([(1.0, 5.0), (1.1, 6.0), (1.2, 1.0)], [(1.0, 5.0), (1.2, 1.0)],
                 id="a point a cheaper one beats is left out"),
    pytest.param([(1.0, 5.0), (1.0, 3.0)], [(1.0, 3.0)], id="of two points at the same cost the better is kept"),
    pytest.param([], [], id="no points make no frontier"),
])
def test_frontier(points: list[tuple[float, float]], expected: list[tuple[float, float]]) -> None:
    assert frontier.frontier(points) == expected


@pytest.mark.parametrize(("points", "cost", "expected"), [
    pytest.param(TOY, 1.05, 7.0, id="between two points the unmet demand is linear in cost"),
    pytest.param(TOY, 1.1, 4.0, id="at a sweep point it is that point's"),
    pytest.param(TOY, 1.2, 2.0, id="at the dearest point it is that point's"),
    pytest.param(TOY, 0.9, None, id="below the cheapest point there is no figure"),
    pytest.param(TOY, 1.3, None, id="above the dearest point there is no figure"),
    pytest.param([(1.0, 5.0), (1.1, 6.0), (1.2, 1.0)], 1.1, 3.0, id="a beaten point is interpolated over"),
    pytest.param([(1.15, 0.5)], 1.15, 0.5, id="a single point gives its own cost only"),
])
def test_at_cost(points: list[tuple[float, float]], cost: float, expected: float | None) -> None:
    found = frontier.at_cost(points, cost)
    assert found == expected if expected is None else found == pytest.approx(expected)


@given(st.lists(st.tuples(st.floats(0.5, 3.0), st.floats(0.0, 100.0)), min_size=1, max_size=12),
       st.floats(0.5, 3.0))
def test_unmet_at_a_cost_is_within_the_frontier_it_lies_on(points: list[tuple[float, float]], cost: float) -> None:
    line = frontier.frontier(points)
    found = frontier.at_cost(points, cost)
    inside = line[0][0] <= cost <= line[-1][0]
    assert (found is not None) == inside
    if found is not None:
        assert line[-1][1] - 1e-9 <= found <= line[0][1] + 1e-9


@pytest.mark.parametrize(("ours", "reference", "expected"), [
    pytest.param(0.1, 0.2, "0.50x", id="half the reference's unmet demand reads 0.50x"),
    pytest.param(0.0, 0.0, "n/a", id="neither leaving demand unmet has no ratio"),
    pytest.param(0.1, 0.0, "inf", id="only healthscale leaving demand unmet is infinitely worse"),
    pytest.param(None, 0.2, "-", id="outside healthscale's range there is no ratio"),
    pytest.param(0.1, None, "-", id="outside the reference's range there is no ratio"),
])
def test_ratio(ours: float | None, reference: float | None, expected: str) -> None:
    assert frontier.ratio(ours, reference) == expected


def _points(ours: list[tuple[float, float]], theirs: list[tuple[float, float]], reference: str) -> list[object]:
    return ([frontier.Point(frontier.HEALTHSCALE, "p90", cost, unmet) for cost, unmet in ours]
            + [frontier.Point(reference, "headroom 10%", cost, unmet) for cost, unmet in theirs])


@pytest.mark.parametrize(("ours", "theirs", "reference", "expected"), [
    pytest.param([(1.0, 1.0), (1.4, 0.1)], [(1.0, 2.0), (1.4, 0.2)], frontier.HOLT_WINTERS,
                 "On call-centre healthscale leaves less unmet demand than Holt-Winters at 1.10x, 1.15x, 1.20x, "
                 "1.25x the oracle's replica-hours.", id="ahead at every common cost says so"),
    pytest.param([(1.0, 1.0), (1.2, 0.1)], [(1.0, 0.5), (1.4, 0.3)], frontier.HOLT_WINTERS,
                 "On call-centre healthscale leaves more unmet demand than Holt-Winters at 1.10x the oracle's "
                 "replica-hours; less at 1.15x, 1.20x.", id="behind when cheap and ahead when dear says both"),
    pytest.param([(1.0, 1.0), (1.4, 0.1)], [(1.0, 1.05), (1.4, 0.105)], frontier.HOLT_WINTERS,
                 "On call-centre healthscale leaves about as much as Holt-Winters (within 10%) at 1.10x, 1.15x, "
                 "1.20x, 1.25x the oracle's replica-hours.", id="within ten percent is level"),
    pytest.param([(1.0, 1.0), (1.4, 0.1)], [(1.0, 0.5), (1.4, 0.05)], frontier.HEURISTIC,
                 "On call-centre healthscale leaves more unmet demand than the three-line heuristic at 1.10x, 1.15x, "
                 "1.20x, 1.25x the oracle's replica-hours.", id="the heuristic is named as the reference"),
    pytest.param([(1.0, 1.0), (1.05, 0.1)], [(1.2, 0.5), (1.4, 0.2)], frontier.HOLT_WINTERS,
                 "On call-centre the sweeps of healthscale and Holt-Winters share none of the table's costs.",
                 id="sweeps that do not overlap say so"),
])
def test_verdict(ours: list[tuple[float, float]], theirs: list[tuple[float, float]], reference: str,
                 expected: str) -> None:
    assert frontier.verdict("call-centre", _points(ours, theirs, reference), reference) == expected


def test_the_table_also_compares_where_each_policy_lands_as_configured() -> None:
    points = [frontier.Point(frontier.HEALTHSCALE, "p90", 1.171, 0.14, default=True),
              frontier.Point(frontier.HOLT_WINTERS, "headroom 10%", 1.191, 0.13, default=True),
              frontier.Point(frontier.HPA, "headroom 10%", 1.125, 0.46, default=True)]
    labels = [label for _, label in frontier.common_costs("call-centre", points)]
    assert labels == ["1.10x", "1.15x", "1.171x (healthscale as configured)", "1.191x (Holt-Winters as configured)",
                      "1.20x", "1.25x"]
