"""The shipped examples stay valid: every manifest parses, and the bundled trace loads."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from healthscale.api import clinicalslo, manifests, surgeschedule
from healthscale.backtest import trace

ROOT = pathlib.Path(__file__).resolve().parents[2]
KINDS = {"ClinicalSLO": clinicalslo.ClinicalSLO, "SurgeSchedule": surgeschedule.SurgeSchedule}
MANIFESTS = sorted([*ROOT.glob("examples/**/*.yaml"), *ROOT.glob("bench/manifests/*.yaml")])


def test_there_are_examples_to_check() -> None:
    assert len(MANIFESTS) >= 8


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: f"{path.relative_to(ROOT)} is a valid manifest")
def test_manifest_parses(path: pathlib.Path) -> None:
    kind = yaml.safe_load(path.read_text())["kind"]
    parsed = manifests.load_one(KINDS[kind], path)
    assert parsed.metadata.name


def test_the_bundled_trace_loads_with_eight_weeks_of_half_hours() -> None:
    loaded = trace.load(ROOT / "examples/backtest/nyc-taxi-demand.csv")
    assert loaded.step == 1800
    assert len(loaded.series) == 8 * 7 * 48
