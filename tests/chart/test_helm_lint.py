"""Level 1: `helm lint --strict` passes for every values set the golden tests render."""

from __future__ import annotations

from pathlib import Path

import pytest

from chartlib import CHART, KUBE_VERSION, VALUES_DIR, Helm

pytestmark = pytest.mark.chart

VALUES_SETS = sorted(VALUES_DIR.glob("*.yaml"))


def test_there_are_values_sets() -> None:
    assert len(VALUES_SETS) >= 3


@pytest.mark.parametrize("values", VALUES_SETS, ids=lambda path: f"helm lint --strict with {path.stem}")
def test_helm_lint_is_clean(helm: Helm, values: Path) -> None:
    result = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, "--values", str(values),
                      check=False)
    assert result.returncode == 0, f"helm lint failed:\n{result.stdout}\n{result.stderr}"
    assert "0 chart(s) failed" in result.stdout
    assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout


def test_the_charts_app_version_is_the_operators_version() -> None:
    import tomllib

    import yaml

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((CHART.parents[1] / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"], "bump appVersion (the default image tag) with the operator"
