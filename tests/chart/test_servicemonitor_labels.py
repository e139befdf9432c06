"""The namespace of a ClinicalSLO survives the scrape and drives the dashboard: the ServiceMonitor
honours the operator's own labels (else Prometheus renames its `namespace` to `exported_namespace`
and writes the operator's namespace there), and the dashboard picks namespaces from that label and
filters every per-ClinicalSLO query by it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chartlib import CHART, Helm, by_kind

pytestmark = pytest.mark.chart

DASHBOARD = CHART / "dashboards" / "healthscale.json"


def test_the_servicemonitor_keeps_the_namespace_label_healthscale_exports(helm: Helm) -> None:
    objects = helm.render(set_values=["prometheus.url=http://p:9090", "serviceMonitor.enabled=true"])
    (monitor,) = by_kind(objects, "ServiceMonitor")
    endpoints = monitor["spec"]["endpoints"]
    assert endpoints and all(endpoint.get("honorLabels") is True for endpoint in endpoints)


def expressions(items: list[dict[str, Any]]) -> Iterator[str]:
    for panel in items:
        yield from (target["expr"] for target in panel.get("targets") or [])
        yield from expressions(panel.get("panels") or [])


def test_the_namespace_picker_reads_the_namespace_label_and_every_clinicalslo_query_filters_by_it() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    picker = variables["namespace"]["query"]
    assert picker["query"].startswith("label_values(") and picker["query"].endswith(", namespace)")
    per_clinicalslo = [expr for expr in expressions(dashboard["panels"]) if "$clinicalslo" in expr]
    assert per_clinicalslo, "the dashboard has per-ClinicalSLO panels"
    unfiltered = [expr for expr in per_clinicalslo if 'namespace=~"$namespace"' not in expr]
    assert not unfiltered, f"queries ignoring the namespace picker: {unfiltered}"
