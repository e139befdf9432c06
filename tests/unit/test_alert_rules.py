"""``healthscale rules``: recording and multi-window multi-burn-rate alert rules for a ClinicalSLO's
objectives, checked as data (windows, factors, labels, names, YAML) and against the very queries the
reconcile sends (service.cycle), so that the rules and the status compute the same ratios.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest
import yaml

from healthscale import cli
from healthscale.api import clinicalslo, manifests
from healthscale.domain import slo
from healthscale.service import cycle, rules

HISTOGRAM = 'http_request_duration_seconds_bucket{service="ehr-api"}'
ERRORS = 'sum(rate(http_requests_total{code=~"5.."}[5m]))'
TOTAL = "sum(rate(http_requests_total[5m]))"
FAST = 'sum(rate(http_requests_fast_total{service="ehr-api"}[5m]))'
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def resource(*, errors: bool = True, latency: str | None = "histogram", journey: str = "ED triage screens",
             name: str = "ed-triage", threshold: float = 1.5, window: str = "28d") -> clinicalslo.ClinicalSLO:
    indicators: dict[str, Any] = {"demand": TOTAL}
    objectives: dict[str, Any] = {"availability": 99.9, "window": window}
    if errors:
        indicators |= {"errors": ERRORS, "total": TOTAL}
    if latency == "histogram":
        indicators["latencyHistogram"] = HISTOGRAM
    elif latency == "good":
        indicators |= {"latencyGood": FAST, "total": TOTAL}
    if latency is not None:
        objectives["latency"] = {"percentile": 95, "thresholdSeconds": threshold}
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": "ehr"},
        "spec": {"journey": journey, "criticality": "critical", "targetRef": {"name": "ehr-api"},
                 "objectives": objectives, "indicators": indicators,
                 "capacity": {"perReplica": 40, "maxReplicas": 60}},
    })


def all_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


def records(groups: list[dict[str, Any]], objective: str) -> dict[str, dict[str, Any]]:
    return {rule["record"]: rule for rule in all_rules(groups)
            if "record" in rule and rule["labels"]["objective"] == objective}


def alerts(groups: list[dict[str, Any]], objective: str) -> dict[str, dict[str, Any]]:
    return {rule["labels"]["severity"]: rule for rule in all_rules(groups)
            if "alert" in rule and rule["labels"]["objective"] == objective}


@pytest.mark.parametrize("objective", [slo.AVAILABILITY, slo.LATENCY])
def test_every_burn_window_and_the_objective_window_is_recorded(objective: str) -> None:
    recorded = records(rules.groups(resource()), objective)
    expected = {slo.record_name(seconds) for seconds in (*slo.WINDOW_SECONDS, 28 * 86400)}
    assert set(recorded) == expected
    assert {"healthscale:sli_error:ratio_rate5m", "healthscale:sli_error:ratio_rate3d",
            "healthscale:sli_error:ratio_rate28d"} <= set(recorded)


@pytest.mark.parametrize(("severity", "fast"), [
    pytest.param(rules.PAGE, True, id="the page alert uses the fast pairs of BURN_WINDOWS"),
    pytest.param(rules.TICKET, False, id="the ticket alert uses the slow pairs of BURN_WINDOWS"),
])
def test_alert_pairs_and_factors_come_from_burn_windows(severity: str, fast: bool) -> None:
    expression = alerts(rules.groups(resource()), slo.AVAILABILITY)[severity]["expr"]
    found = re.findall(r"ratio_rate(\w+)\{[^}]*\} >= \(([\d.]+) \* ([\d.]+)\)", expression)
    pairs = [pair for pair in slo.BURN_WINDOWS if pair.fast == fast]
    expected = [(window, f"{pair.factor:g}", "0.001") for pair in pairs
                for window in (rules._label(pair.long), rules._label(pair.short))]
    assert found == expected
    assert expression.count("\nor\n") == len(pairs) - 1


def test_the_numbers_in_the_alerts_are_the_srE_workbooks() -> None:
    page = alerts(rules.groups(resource()), slo.AVAILABILITY)[rules.PAGE]["expr"]
    ticket = alerts(rules.groups(resource()), slo.AVAILABILITY)[rules.TICKET]["expr"]
    assert "ratio_rate1h" in page and "ratio_rate5m" in page and "(14.4 * 0.001)" in page
    assert "ratio_rate6h" in page and "ratio_rate30m" in page and "(6 * 0.001)" in page
    assert "ratio_rate1d" in ticket and "ratio_rate2h" in ticket and "(3 * 0.001)" in ticket
    assert "ratio_rate3d" in ticket and "(1 * 0.001)" in ticket


@pytest.mark.parametrize(("objective", "allowed"), [
    pytest.param(slo.AVAILABILITY, "0.001", id="availability 99.9 allows an error ratio of 0.001"),
    pytest.param(slo.LATENCY, "0.05", id="latency 95 allows an error ratio of 0.05"),
])
def test_each_objective_alerts_against_its_own_target(objective: str, allowed: str) -> None:
    for rule in alerts(rules.groups(resource()), objective).values():
        assert f"* {allowed})" in rule["expr"]
        assert f'objective="{objective}"' in rule["expr"]


def test_recorded_series_say_journey_namespace_name_objective_and_criticality() -> None:
    for objective in slo.OBJECTIVES:
        for rule in records(rules.groups(resource()), objective).values():
            assert rule["labels"] == {"journey": "ED triage screens", "namespace": "ehr", "clinicalslo": "ed-triage",
                                      "objective": objective, "criticality": "critical"}


def test_alerts_say_severity_and_explain_the_objective_with_its_numbers() -> None:
    page = alerts(rules.groups(resource()), slo.LATENCY)[rules.PAGE]
    assert page["alert"] == rules.ALERT
    assert page["labels"] == {"severity": "page", "objective": "latency", "namespace": "ehr",
                              "clinicalslo": "ed-triage"}
    assert page["annotations"]["summary"] == (
        "{{ $labels.journey }}: the latency objective is burning its error budget fast")
    description = page["annotations"]["description"]
    assert "95% of requests under 1.5s (bucket le=1.5) over 28d" in description
    assert "allows 5% of requests to fail it" in description
    assert "14.4x over 1h and 5m (spends 2.1% of the 28d budget in 1h)" in description
    assert "6x over 6h and 30m (spends 5.4% of the 28d budget in 6h)" in description


@pytest.mark.parametrize(("errors", "latency", "expected"), [
    pytest.param(True, None, {slo.AVAILABILITY}, id="an SLO without latency gets only availability rules"),
    pytest.param(False, "histogram", {slo.LATENCY}, id="an SLO without errors gets only latency rules"),
    pytest.param(True, "good", {slo.AVAILABILITY, slo.LATENCY}, id="latencyGood and errors get both"),
    pytest.param(False, None, set(), id="an SLO measuring nothing gets no rules"),
])
def test_only_measured_objectives_get_rules(errors: bool, latency: str | None, expected: set[str]) -> None:
    made = rules.groups(resource(errors=errors, latency=latency))
    assert {rule["labels"]["objective"] for rule in all_rules(made)} == expected


@pytest.mark.parametrize("window", [
    pytest.param("1d", id="an objective window of 1d reuses the 1d burn window's record"),
    pytest.param("3d", id="an objective window of 3d reuses the 3d burn window's record"),
])
def test_an_objective_window_equal_to_a_burn_window_is_recorded_once(window: str) -> None:
    made = rules.groups(resource(window=window))
    names = [(rule["record"], rule["labels"]["objective"]) for rule in all_rules(made) if "record" in rule]
    assert len(names) == len(set(names)) == 2 * len(slo.WINDOW_SECONDS)


def test_short_windows_run_with_the_alerts_and_slow_ones_every_4m_at_a_coarser_resolution() -> None:
    made = {group["name"]: group for group in rules.groups(resource())}
    fast, slow = made["healthscale-ehr-ed-triage-availability"], made["healthscale-ehr-ed-triage-availability-slow"]
    assert "interval" not in fast and slow["interval"] == slo.SLOW_INTERVAL == "4m"
    assert [rule.get("record", rule.get("alert")) for rule in fast["rules"]] == [
        *(slo.record_name(seconds) for seconds in (300, 1800, 3600, 7200)), rules.ALERT, rules.ALERT]
    steps = {rule["record"].removeprefix(slo.RECORD_PREFIX): re.findall(r"\[\d+s:(\w+)\]", rule["expr"])
             for rule in slow["rules"]}
    assert steps == {"6h": ["1m", "1m"], "1d": ["5m", "5m"], "3d": ["5m", "5m"], "28d": ["15m", "15m"]}


def test_names_are_valid_prometheus_names_and_groups_unique() -> None:
    made = rules.groups(resource(latency="good")) + rules.groups(resource(name="portal"))
    for rule in all_rules(made):
        assert METRIC_NAME.match(rule.get("record", rule.get("alert", "")))
        assert all(LABEL_NAME.match(label) for label in rule["labels"])
    assert len({group["name"] for group in made}) == len(made)


# ------------------------------------------------------------------ the same ratios as the reconcile


class RecordingMetrics:
    """A Prometheus that records the reconcile's window averages and answers nothing but buckets."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def range(self, query: str, start: int, end: int, step: int) -> list[Any]:
        return []

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        self.queries.append(query)
        return []

    def label_values(self, label: str, selector: str, start: int, end: int) -> list[str]:
        return ["0.5", "1.5", "+Inf"]


@pytest.mark.parametrize(("latency", "indicators"), [
    pytest.param("histogram", 4, id="with a latency histogram the rules average the reconcile's queries"),
    pytest.param("good", 3, id="with latencyGood (sharing total) the rules average the reconcile's queries"),
])
def test_the_rules_average_exactly_what_the_reconcile_reads(latency: str, indicators: int) -> None:
    slo_resource = resource(latency=latency)
    metrics = RecordingMetrics()
    cycle.measure(metrics, slo_resource.spec, cycle.Memory(), 1_700_000_000, 300)
    expressions = "\n".join(rule["expr"] for rule in all_rules(rules.groups(slo_resource)) if "record" in rule)
    found = set(re.findall(r"sum\((avg_over_time\(\(.*?\)\[\d+s:\d+m\]\))\)", expressions))
    assert found == set(metrics.queries)
    assert len(found) == indicators * (len(slo.WINDOW_SECONDS) + 1)  # every window and the objective window


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param(1.5, "1.5", id="1.5 s is le 1.5"),
    pytest.param(1.0, "1.0", id="a whole number gets .0 as Prometheus 3 stores it"),
    pytest.param(0.005, "0.005", id="5 ms stays fixed-point"),
    pytest.param(0.00001, "1e-05", id="below 1e-4 Go switches to an exponent"),
    pytest.param(86400.0, "86400.0", id="a day in seconds stays fixed-point"),
    pytest.param(1_000_000.0, "1e+06", id="a million switches to an exponent"),
])
def test_the_default_bucket_is_the_threshold_spelt_as_prometheus_does(value: float, expected: str) -> None:
    assert rules.prometheus_float(value) == expected


def test_a_histogram_is_read_at_the_given_bucket_and_refuses_one_that_is_not_the_threshold() -> None:
    made = rules.groups(resource(errors=False, threshold=1.0), latency_bucket="1")
    assert 'le="1"' in records(made, slo.LATENCY)["healthscale:sli_error:ratio_rate5m"]["expr"]
    assert 'le="1.0"' in records(rules.groups(resource(errors=False, threshold=1.0)),
                                 slo.LATENCY)["healthscale:sli_error:ratio_rate5m"]["expr"]
    with pytest.raises(ValueError, match=r"le='2' is not objectives.latency.thresholdSeconds 1"):
        rules.groups(resource(threshold=1.0), latency_bucket="2")


# ------------------------------------------------------------------ YAML and the CLI


HOSTILE_JOURNEY = 'ED "triage" {{ $value }} \\ café\nsecond line'


def test_journey_text_is_a_quoted_label_value_and_never_promql_or_template_source() -> None:
    slo_resource = resource(journey=HOSTILE_JOURNEY)
    text = rules.render([slo_resource], rules.RULE_FILE)
    loaded = yaml.safe_load(text)["groups"]
    for rule in all_rules(loaded):
        if "record" in rule:
            assert rule["labels"]["journey"] == HOSTILE_JOURNEY
        assert "café" not in rule["expr"]
        if "alert" in rule:
            assert "café" not in str(rule["labels"]) and "café" not in str(rule["annotations"])


def test_names_with_template_braces_print_themselves_in_alert_labels() -> None:
    assert rules.template_literal("a{{b") == 'a{{ "{{" }}b'
    assert slo.promql_string('x"y\\z\n') == '"x\\"y\\\\z\\n"'


@pytest.mark.parametrize("output_format", [rules.PROMETHEUS_RULE, rules.RULE_FILE])
def test_the_output_is_valid_yaml_of_its_kind(output_format: str) -> None:
    documents = list(yaml.safe_load_all(rules.render([resource(), resource(name="portal")], output_format)))
    if output_format == rules.RULE_FILE:
        assert len(documents) == 1 and len(documents[0]["groups"]) == 8
        return
    assert [document["kind"] for document in documents] == ["PrometheusRule", "PrometheusRule"]
    assert documents[0]["apiVersion"] == "monitoring.coreos.com/v1"
    assert documents[1]["metadata"] == {"name": "portal", "namespace": "ehr",
                                        "labels": {"app.kubernetes.io/managed-by": "healthscale"}}
    assert documents[1]["spec"]["groups"] == rules.groups(resource(name="portal"))


def write_slo(path: pathlib.Path, slo_resource: clinicalslo.ClinicalSLO) -> pathlib.Path:
    path.write_text(yaml.safe_dump(slo_resource.model_dump(mode="json", by_alias=True, exclude_none=True)))
    return path


def test_the_command_writes_the_rules_of_every_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write_slo(tmp_path / "a.yaml", resource())
    second = write_slo(tmp_path / "b.yaml", resource(name="portal", latency=None))
    output = tmp_path / "rules.yaml"
    assert cli.main(["rules", "--slo", str(first), str(second), "--format", "rules", "--output", str(output)]) == 0
    written = yaml.safe_load(output.read_text())["groups"]
    assert written == rules.groups(resource()) + rules.groups(resource(name="portal", latency=None))
    assert "2 ClinicalSLO(s)" in capsys.readouterr().err


@pytest.mark.parametrize(("arguments", "message"), [
    pytest.param(["--slo", "{missing}"], "--slo {missing}: the file does not exist", id="a missing file is named"),
    pytest.param(["--slo", "{bad}"], "{bad}: invalid manifest:\n  - spec.capacity: required field is missing",
                 id="an invalid manifest names the file and the field"),
    pytest.param(["--slo", "{slo}", "--latency-bucket", "2"],
                 "--slo {slo}: the latency bucket le='2' is not objectives.latency.thresholdSeconds 1.5",
                 id="a bucket that is not the threshold names the file and the field"),
    pytest.param(["--slo", "{slo}", "{slo}"], "ClinicalSLO ehr/ed-triage is also in {slo}",
                 id="the same ClinicalSLO twice is refused"),
    pytest.param(["--slo", "{nothing}"], "it measures no objective", id="an SLO measuring nothing is refused"),
    pytest.param(["--slo", "{plain}", "--latency-bucket", "1.5"], "no ClinicalSLO given reads",
                 id="a latency bucket without a histogram is refused"),
    pytest.param(["--slo", "{slo}", "--output", "{tmp}"], "is a directory", id="an output directory is refused"),
])
def test_bad_input_exits_2_with_a_message_naming_file_and_field(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str) -> None:
    places = {"missing": str(tmp_path / "missing.yaml"), "bad": str(tmp_path / "bad.yaml"), "tmp": str(tmp_path),
              "slo": str(write_slo(tmp_path / "slo.yaml", resource())),
              "nothing": str(write_slo(tmp_path / "nothing.yaml", resource(errors=False, latency=None))),
              "plain": str(write_slo(tmp_path / "plain.yaml", resource(latency=None)))}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": {"name": "x"},
        "spec": {"journey": "j", "targetRef": {"name": "t"}, "indicators": {"demand": "vector(1)"}}}))
    assert cli.main(["rules", *[argument.format(**places) for argument in arguments]]) == cli.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert message.format(**places) in error
    assert "Traceback" not in error
