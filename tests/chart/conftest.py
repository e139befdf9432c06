"""Shared helpers for the chart, image, dashboard and GitOps tests (marker ``chart``).

These tests need `helm` (built from Go modules by `make helm`, i.e. tools/build-helm.sh, into
.devcluster/bin) and Debian's `lua5.4`. A missing tool FAILS the test with the command that
installs it: a chart that was never rendered must not pass as "skipped".

Every `helm template` here passes --kube-version, so the output does not depend on which
Kubernetes version the helm binary was built to assume.
"""

from __future__ import annotations

import pytest

from chartlib import HELM_HINT, Helm, find_helm


def pytest_configure(config: pytest.Config) -> None:
    # Registered here as well as in pyproject.toml, so --strict-markers accepts it either way.
    config.addinivalue_line(
        "markers", "chart: Helm chart, image, dashboard and GitOps tests (need helm from `make helm`, and lua5.4)")


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = find_helm()
    if binary is None:
        pytest.fail(f"helm not found in .devcluster/bin or on PATH: {HELM_HINT}", pytrace=False)
    return Helm(binary, tmp_path_factory.mktemp("helm-home"))
