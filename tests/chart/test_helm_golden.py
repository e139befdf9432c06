"""Level 2: `helm template` output for each values set under values/ equals golden/<set>.yaml.

A template change shows up here as a diff to review. After an intended change, regenerate:

    HEALTHSCALE_UPDATE_GOLDEN=1 python -m pytest tests/chart/test_helm_golden.py

and review the diff of tests/chart/golden/ before committing it.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml

from chartlib import VALUES_DIR, Helm

pytestmark = pytest.mark.chart

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("HEALTHSCALE_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("values", sorted(VALUES_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_rendered_chart_matches_golden_file(helm: Helm, values: Path) -> None:
    rendered = helm.template([values], release="healthscale", namespace="healthscale-system").stdout
    golden = GOLDEN_DIR / f"{values.stem}.yaml"
    if UPDATE:
        golden.write_text(rendered)
    if not golden.exists():
        pytest.fail(f"golden/{golden.name} is missing; create it with HEALTHSCALE_UPDATE_GOLDEN=1", pytrace=False)
    expected = golden.read_text()
    if rendered != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), rendered.splitlines(True),
                                            f"golden/{golden.name}", "helm template", n=2))
        pytest.fail(f"helm template output for values/{values.name} differs from golden/{golden.name} "
                    f"(if intended, regenerate with HEALTHSCALE_UPDATE_GOLDEN=1 and review):\n{diff}", pytrace=False)


def test_every_golden_file_has_a_values_set() -> None:
    stale = {path.stem for path in GOLDEN_DIR.glob("*.yaml")} - {path.stem for path in VALUES_DIR.glob("*.yaml")}
    assert not stale, f"golden files without a values set (delete them): {sorted(stale)}"


def test_golden_files_parse_as_kubernetes_objects() -> None:
    for golden in GOLDEN_DIR.glob("*.yaml"):
        objects = [document for document in yaml.safe_load_all(golden.read_text()) if document]
        assert objects and all({"apiVersion", "kind", "metadata"} <= set(item) for item in objects), golden.name
