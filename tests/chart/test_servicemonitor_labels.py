"""The namespace of a ClinicalSLO survives the scrape and drives the dashboard: the ServiceMonitor
honours the operator's own labels (else Prometheus renames its `namespace` to `exported_namespace`
and writes the operator's namespace there), and the dashboard picks namespaces from that label and
filters every query of a namespaced metric by it (only the operator-wide cycle histograms, which
have no namespace label, are exempt).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest

import healthscale.runtime.metrics  # noqa: F401  (registers the operator's collectors)
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


# Metrics without a namespace label: a $namespace filter would match nothing.
OPERATOR_WIDE = ("healthscale_cycle_seconds_bucket",)


def test_the_operator_wide_metrics_really_have_no_namespace_label() -> None:
    # Unlabelled histograms expose their samples from the start, so their labels can be read.
    samples = [sample for family in prometheus_client.REGISTRY.collect() for sample in family.samples
               if sample.name in OPERATOR_WIDE]
    assert {sample.name for sample in samples} == set(OPERATOR_WIDE)
    assert all("namespace" not in sample.labels for sample in samples)


def test_every_panel_query_of_a_namespaced_metric_filters_by_the_namespace_picker() -> None:
    panel_queries = list(expressions(json.loads(DASHBOARD.read_text())["panels"]))
    assert any("healthscale_objective_" in expr for expr in panel_queries)
    unfiltered = [expr for expr in panel_queries
                  if 'namespace=~"$namespace"' not in expr and not any(name in expr for name in OPERATOR_WIDE)]
    assert not unfiltered, f"queries ignoring the namespace picker: {unfiltered}"
