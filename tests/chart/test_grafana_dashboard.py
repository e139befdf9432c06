"""The Grafana dashboard is valid JSON, queries only metrics the operator exposes, and shows what
platform teams ask for (forecast vs demand, desired vs current replicas, decision reason, each
objective's compliance, error budget and burn rates, residency violations), laid out without
overlaps, in PromQL that Prometheus parses (``promtool check rules`` on every query as a recording
rule, the variables replaced by a regex; promtool is required: the test fails, never skips, without it).

The exposed names are read from the operator's own collectors (prometheus_client's registry after
importing healthscale.runtime.metrics), with the suffixes the exposition format adds per type.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest
import yaml

import healthscale.runtime.metrics  # noqa: F401  (registers the operator's collectors)
from chartlib import CHART, Helm, by_kind

pytestmark = pytest.mark.chart

DASHBOARD = CHART / "dashboards" / "healthscale.json"
# The sample names each metric type produces on /metrics (prometheus_client's family name has no
# _total for counters).
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created"), "info": ("_info",), "stateset": ("",), "enum": ("",),
            "unknown": ("",)}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def exposed_metrics() -> set[str]:
    names = set()
    for family in prometheus_client.REGISTRY.collect():
        if family.name.startswith("healthscale_"):
            names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and templating query, nested rows included."""
    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels") or [])
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            # label_values(<series selector>, <label>): only the selector names a metric.
            yield f"variable ${variable['name']}", re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query)


def metric_names(promql: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords, label names
    in matchers or grouping clauses, or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    tokens = re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*(?=\s*(\()?)", text)
    return {token.group(0) for token in tokens if token.group(1) is None and token.group(0).lower() not in PROMQL_WORDS}


def test_the_extraction_finds_metrics_and_only_metrics() -> None:
    assert metric_names('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~"$y"}[5m])))') == {"a_bucket"}
    assert metric_names('max by (namespace, reason) (b{namespace=~"$n"}) == 1 and on (x) c') == {"b", "c"}


def test_the_dashboard_is_valid_json_with_panels_and_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "healthscale"
    assert {variable["name"] for variable in dashboard["templating"]["list"]} == {
        "datasource", "namespace", "clinicalslo", "objective"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_queried_metric_is_exposed_by_the_operator() -> None:
    exposed = exposed_metrics()
    assert "healthscale_desired_replicas" in exposed and "healthscale_cycle_seconds_bucket" in exposed
    unknown = {(where, name) for where, promql in queries(json.loads(DASHBOARD.read_text()))
               for name in metric_names(promql) if name not in exposed}
    assert not unknown, f"the dashboard queries metrics the operator does not expose: {sorted(unknown)}"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    used = {name for _, promql in queries(json.loads(DASHBOARD.read_text())) for name in metric_names(promql)}
    wanted = {
        "forecast against actual demand": {"healthscale_forecast_peak_demand", "healthscale_current_demand"},
        "desired against current replicas": {"healthscale_desired_replicas", "healthscale_current_replicas"},
        "decision reason": {"healthscale_decision_reason"},
        "each objective's compliance, error budget and burn rates": {
            name for name in exposed_metrics() if name.startswith("healthscale_objective_")},
        "residency violations": {"healthscale_residency_violations"},
    }
    assert len(wanted["each objective's compliance, error budget and burn rates"]) == 3
    missing = {what: names - used for what, names in wanted.items() if names - used}
    assert not missing, f"panels missing: {missing}"


def test_panels_do_not_overlap_and_fit_the_24_column_grid() -> None:
    boxes = [(panel["title"], panel["gridPos"]) for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert all(box["x"] >= 0 and box["x"] + box["w"] <= 24 for _, box in boxes)
    overlapping = [(first, second) for index, (first, a) in enumerate(boxes) for second, b in boxes[index + 1:]
                   if a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                   and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]]
    assert not overlapping, f"panels overlapping: {overlapping}"


def test_promtool_parses_every_dashboard_query(tmp_path: pathlib.Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (`apt-get install -y prometheus`; "
                    "tools/bootstrap.sh does)", pytrace=False)
    found = list(queries(json.loads(DASHBOARD.read_text())))
    # Grafana replaces a variable by its value (a regex for these multi-value ones) before Prometheus sees it.
    rules = [{"record": f"dashboard:query_{index}", "expr": re.sub(r"\$\{?\w+\}?", ".*", promql)}
             for index, (_, promql) in enumerate(found)]
    assert not [rule for rule in rules if "$" in rule["expr"]]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(found)} rules found" in result.stdout


def test_the_chart_ships_the_dashboard_unchanged_in_its_configmap(helm: Helm) -> None:
    objects = helm.render(set_values=["prometheus.url=http://p:9090", "dashboard.enabled=true",
                                      "dashboard.namespace=grafana"])
    (configmap,) = by_kind(objects, "ConfigMap")
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["healthscale.json"]) == json.loads(DASHBOARD.read_text())
    assert yaml.safe_dump(configmap)
