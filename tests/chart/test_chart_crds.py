"""The chart's CRDs are byte-identical copies of crds/ (tools/sync_chart_crds.py), and the
peering CRDs the chart adds are what Kopf looks for."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from chartlib import CHART, REPO_ROOT

pytestmark = pytest.mark.chart

SCRIPT = REPO_ROOT / "tools" / "sync_chart_crds.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart_crds", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_chart_crds_match_the_generated_crds() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_check_names_a_drifted_a_missing_and_a_stale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()
    source, copies = tmp_path / "crds", tmp_path / "chart-crds"
    source.mkdir()
    copies.mkdir()
    for name in ("a.yaml", "b.yaml"):
        (source / name).write_text(f"kind: CustomResourceDefinition # {name}\n")
    (copies / "a.yaml").write_text("kind: CustomResourceDefinition # edited by hand\n")
    (copies / "old.yaml").write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setattr(script, "ROOT", tmp_path)
    monkeypatch.setattr(script, "SOURCE", source)
    monkeypatch.setattr(script, "CHART_CRDS", copies)
    assert script.drift() == ["chart-crds/a.yaml: differs from crds/a.yaml", "chart-crds/b.yaml: missing",
                              "chart-crds/old.yaml: not in crds/ (a removed CRD?)"]
    assert script.main(["--check"]) == 1
    assert script.main([]) == 0
    assert script.drift() == []
    assert sorted(path.name for path in copies.iterdir()) == ["a.yaml", "b.yaml"]


def test_the_peering_crds_are_the_kopf_dev_kinds_kopf_watches() -> None:
    crds = {crd["metadata"]["name"]: crd for crd in yaml.safe_load_all((REPO_ROOT / "crds" / "kopf-peerings.yaml").read_text())}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    for crd in crds.values():
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1"
        # No status subresource: the chart grants patch on the object, which is where Kopf then writes.
        assert "subresources" not in version
        assert version["schema"]["openAPIV3Schema"]["properties"]["status"]["x-kubernetes-preserve-unknown-fields"]
