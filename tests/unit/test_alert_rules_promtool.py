"""The generated rules as Prometheus itself reads them: ``promtool check rules`` on what
``healthscale rules`` writes, and ``promtool test rules`` with synthetic series: a fast burn pages
once the 1h window has burnt 14.4x, a slow burn opens a ticket only, a healthy journey alerts nothing.

promtool is required (Debian's prometheus package; tools/bootstrap.sh installs it): the tests fail,
never skip, without it.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from healthscale import cli
from healthscale.api import clinicalslo, manifests
from healthscale.service import rules

JOURNEY = 'ED "triage" {{ $value }} café'


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: install Debian's prometheus package (`apt-get install -y prometheus`; "
                    "tools/bootstrap.sh does)", pytrace=False)
    return found


def resource(name: str, *, histogram: bool = False) -> clinicalslo.ClinicalSLO:
    indicators: dict[str, Any] = {
        "demand": f'sum(rate(http_requests_total{{job="{name}"}}[5m]))',
        "errors": f'sum(rate(http_requests_total{{job="{name}", code="500"}}[5m]))',
        "total": f'sum(rate(http_requests_total{{job="{name}"}}[5m]))',
    }
    objectives: dict[str, Any] = {"availability": 99, "window": "28d"}
    if histogram:
        indicators["latencyHistogram"] = f'request_seconds_bucket{{job="{name}"}}'
        objectives["latency"] = {"percentile": 99, "thresholdSeconds": 1.5}
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": "ehr"},
        "spec": {"journey": JOURNEY, "criticality": "high", "targetRef": {"name": name}, "objectives": objectives,
                 "indicators": indicators, "capacity": {"perReplica": 40, "maxReplicas": 60}},
    })


SLOS = [resource("fast"), resource("slow"), resource("healthy"), resource("latency", histogram=True)]


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("rules")
    paths = []
    for slo_resource in SLOS:
        path = directory / f"{slo_resource.metadata.name}.yaml"
        path.write_text(yaml.safe_dump(slo_resource.model_dump(mode="json", by_alias=True, exclude_none=True)))
        paths.append(str(path))
    output = directory / "rules.yml"
    assert cli.main(["rules", "--slo", *paths, "--format", "rules", "--output", str(output)]) == 0
    return output


def test_promtool_accepts_the_rule_file(promtool: str, rule_file: pathlib.Path) -> None:
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 50 rules found" in result.stdout  # 4 SLOs + 1 latency objective: 5 x (8 records + 2 alerts)


def alert(name: str, objective: str, severity: str) -> dict[str, Any]:
    """The alert promtool should see: the recorded series' labels, the rule's, and its annotations
    with the labels filled in (the journey as given, never run as a template)."""
    slo_resource = next(item for item in SLOS if item.metadata.name == name)
    rule = next(rule for group in rules.groups(slo_resource) for rule in group["rules"]
                if rule.get("alert") and rule["labels"] == {"severity": severity, "objective": objective,
                                                            "namespace": "ehr", "clinicalslo": name})
    labels = {"journey": JOURNEY, "namespace": "ehr", "clinicalslo": name, "objective": objective,
              "criticality": "high", "severity": severity}
    annotations = {key: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda found: labels[found.group(1)], text)
                   for key, text in rule["annotations"].items()}
    return {"exp_labels": labels, "exp_annotations": annotations}


def counter(series: str, per_minute: float, minutes: int, start: int = 0) -> dict[str, str]:
    """A counter flat at 0 for ``start`` minutes, then growing ``per_minute``, sampled every minute."""
    values = f"0+0x{start} " if start else ""
    return {"series": series, "values": values + f"{per_minute if start else 0}+{per_minute}x{minutes}"}


def ratio(window: str, name: str, objective: str, value: float) -> dict[str, Any]:
    """The recorded error ratio at 60m, to six decimals (promtool compares floats exactly)."""
    return {"expr": f'round(healthscale:sli_error:ratio_rate{window}{{clinicalslo="{name}", objective="{objective}"}}, '
                    "0.000001)", "eval_time": "60m",
            "exp_samples": [{"labels": f'{{journey="ED \\"triage\\" {{{{ $value }}}} café", namespace="ehr", '
                                       f'clinicalslo="{name}", objective="{objective}", criticality="high"}}',
                             "value": value}]}


BURST = 180
"""The fast burn starts at minute 180 (three healthy hours before it)."""

TESTS: list[dict[str, Any]] = [
    {   # 50% errors from minute 180 against 1% allowed: 50x. The 1h window reaches 14.4x after ~11 minutes.
        "interval": "1m",
        "input_series": [counter('http_requests_total{job="fast", code="200"}', 60, 240),
                         counter('http_requests_total{job="fast", code="500"}', 60, 60, start=BURST)],
        "alert_rule_test": [
            {"eval_time": f"{BURST - 5}m", "alertname": rules.ALERT, "exp_alerts": []},
            # Eight minutes in: the 3d and 6h windows burn 1x already (a ticket), the 1h window not 14.4x yet.
            # (6h and 3d are recorded every 4m, from an offset Prometheus derives from the group.)
            {"eval_time": f"{BURST + 8}m", "alertname": rules.ALERT,
             "exp_alerts": [alert("fast", "availability", "ticket")]},
            {"eval_time": f"{BURST + 20}m", "alertname": rules.ALERT,
             "exp_alerts": [alert("fast", "availability", "page"), alert("fast", "availability", "ticket")]},
        ],
    },
    {   # 2% errors against 1% allowed: 2x, a slow burn: the 3d/6h pair (1x) fires, 1d/2h (3x) and the pages do not.
        "interval": "1m",
        "input_series": [counter('http_requests_total{job="slow", code="200"}', 98, 90),
                         counter('http_requests_total{job="slow", code="500"}', 2, 90)],
        "alert_rule_test": [{"eval_time": "60m", "alertname": rules.ALERT,
                             "exp_alerts": [alert("slow", "availability", "ticket")]}],
        "promql_expr_test": [ratio("1h", "slow", "availability", 0.02)],
    },
    {   # 0.1% errors against 1% allowed: nothing fires.
        "interval": "1m",
        "input_series": [counter('http_requests_total{job="healthy", code="200"}', 999, 90),
                         counter('http_requests_total{job="healthy", code="500"}', 1, 90)],
        "alert_rule_test": [{"eval_time": "60m", "alertname": rules.ALERT, "exp_alerts": []}],
    },
    {   # Every request succeeds, but 20% take over 1.5 s against 1% allowed: the latency objective pages alone.
        "interval": "1m",
        "input_series": [counter('http_requests_total{job="latency", code="200"}', 100, 90),
                         counter('request_seconds_bucket{job="latency", le="0.5"}', 40, 90),
                         counter('request_seconds_bucket{job="latency", le="1.5"}', 80, 90),
                         counter('request_seconds_bucket{job="latency", le="+Inf"}', 100, 90)],
        "alert_rule_test": [{"eval_time": "60m", "alertname": rules.ALERT,
                             "exp_alerts": [alert("latency", "latency", "page"), alert("latency", "latency", "ticket")]}],
        "promql_expr_test": [ratio("5m", "latency", "latency", 0.2), ratio("5m", "latency", "availability", 0.0)],
    },
]


@pytest.mark.parametrize("index", [
    pytest.param(0, id="a fast burn opens a ticket first and pages once the 1h window burns 14.4x"),
    pytest.param(1, id="a slow burn opens a ticket and never pages"),
    pytest.param(2, id="a healthy journey alerts nothing"),
    pytest.param(3, id="a latency burn pages on the latency objective alone"),
])
def test_promtool_unit_tests_of_the_rules(promtool: str, rule_file: pathlib.Path, index: int) -> None:
    test_file = rule_file.parent / f"test-{index}.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [rule_file.name], "evaluation_interval": "1m",
                                         "tests": [TESTS[index]]}, allow_unicode=True, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=300, cwd=rule_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
