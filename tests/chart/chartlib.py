"""Helpers for the chart tests: find and run helm, the values sets, object lookups.

A plain module (not conftest.py) so that test modules can import it by a name no other test
directory uses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "healthscale"
VALUES_DIR = Path(__file__).resolve().parent / "values"
KUBE_VERSION = "1.36.3"  # the dev cluster's version (tools/k8s/go.mod)
HELM_HINT = "run `make helm` (tools/build-helm.sh builds helm from Go modules into .devcluster/bin)"


def find_helm() -> Path | None:
    """.devcluster/bin/helm (what `make helm` builds), else helm on PATH."""
    local = REPO_ROOT / ".devcluster" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("helm")
    return Path(found) if found else None


class Helm:
    """Runs helm with its config, cache and data in a private directory (never the user's)."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {**os.environ, "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_DATA_HOME": str(home / "data")}

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        process = subprocess.run([str(self.binary), *args], capture_output=True, text=True, env=self.env,
                                 timeout=timeout)
        if check and process.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} exited {process.returncode}:\n{process.stderr}", pytrace=False)
        return process

    def template(self, values_files: Sequence[Path] = (), set_values: Sequence[str] = (),
                 release: str = "healthscale", namespace: str = "healthscale-system",
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        for path in values_files:
            args += ["--values", str(path)]
        for item in set_values:
            args += ["--set", item]
        return self.run(*args, check=check)

    def render(self, values_files: Sequence[Path] = (), set_values: Sequence[str] = (),
               release: str = "healthscale", namespace: str = "healthscale-system") -> list[dict[str, Any]]:
        """The rendered objects (CRDs excluded, as `helm template` does by default)."""
        output = self.template(values_files, set_values, release, namespace).stdout
        return [document for document in yaml.safe_load_all(output) if document]


def values_file(name: str) -> Path:
    """A named values set under tests/chart/values/ (the golden tests render each of them)."""
    return VALUES_DIR / f"{name}.yaml"


def by_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item.get("kind") == kind]
