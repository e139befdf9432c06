"""Bad values fail `helm install`/`template` with a message that names the value and the rule.

values.schema.json catches types, patterns, enums, ranges and typos (no unknown keys); the
templates catch what a schema cannot say (a required URL, combinations of values).
"""

from __future__ import annotations

import json

import yaml

import pytest

from chartlib import CHART, Helm

pytestmark = pytest.mark.chart

URL = "prometheus.url=http://prometheus.monitoring:9090"
SCHEMA_ERROR = "values don't meet the specifications of the schema"


@pytest.mark.parametrize(("settings", "expected"), [
    pytest.param(["prometheus.url=prometheus:9090"], ["at '/prometheus/url'", "'prometheus:9090' does not match pattern"],
                 id="a Prometheus URL without scheme is rejected at /prometheus/url"),
    pytest.param(["watchNamespaces={team-*}"], ["at '/watchNamespaces/0'", "'team-*' does not match pattern"],
                 id="a namespace glob is rejected: RBAC cannot grant by pattern"),
    pytest.param(["replicaCount=0"], ["at '/replicaCount'", "minimum: got 0, want 1"],
                 id="zero replicas is rejected"),
    pytest.param(["dryrun=true"], ["additional properties 'dryrun' not allowed"],
                 id="a misspelt key (dryrun for dryRun) is rejected instead of ignored"),
    pytest.param(["logLevel=TRACE"], ["at '/logLevel'", "value must be one of 'INFO', 'DEBUG'"],
                 id="an unknown log level is rejected with the allowed ones"),
    pytest.param(["webhook.port=443"], ["at '/webhook/port'", "minimum: got 443"],
                 id="a privileged webhook port is rejected: the pod runs as non-root"),
    pytest.param(["residency.defaultAllowedRegions={EU West}"], ["at '/residency/defaultAllowedRegions/0'"],
                 id="a region that is not a label value is rejected"),
    pytest.param(["webhook.enabled=maybe"], ["at '/webhook/enabled'", "value must be one of 'auto', true, false"],
                 id="the webhook is auto, true or false"),
    pytest.param(["webhook.certificate.source=vault"], ["at '/webhook/certificate/source'"],
                 id="a certificate source other than operator, secret or cert-manager is rejected"),
    pytest.param(["webhook.certificate.lifetime=90 days"], ["at '/webhook/certificate/lifetime'"],
                 id="a certificate lifetime is a duration like 90d"),
    pytest.param(["nodeWarmup.priorityClass.value=0"],
                 ["at '/nodeWarmup/priorityClass/value'", "maximum: got 0, want -1"],
                 id="a placeholder priority of 0 is rejected: pods without a PriorityClass could not preempt them"),
    pytest.param(["nodeWarmup.priorityClass.value=1000"], ["at '/nodeWarmup/priorityClass/value'", "want -1"],
                 id="a positive placeholder priority is rejected"),
    pytest.param(["nodeWarmup.priorityClass.name=Low"],
                 ["at '/nodeWarmup/priorityClass/name'", "does not match pattern"],
                 id="a placeholder PriorityClass name that is not a Kubernetes name is rejected"),
    pytest.param(["nodeWarmup.image=pause 3.10"], ["at '/nodeWarmup/image'", "does not match pattern"],
                 id="a placeholder image with a space is rejected"),
])
def test_the_schema_rejects_bad_values_and_says_where(helm: Helm, settings: list[str], expected: list[str]) -> None:
    result = helm.template(set_values=[URL, *settings], check=False)
    assert result.returncode != 0, f"{settings} rendered without error"
    assert SCHEMA_ERROR in result.stderr
    for fragment in expected:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize(("settings", "expected"), [
    pytest.param([], "prometheus.url is required (e.g. --set prometheus.url=http://prometheus.monitoring:9090)",
                 id="no Prometheus URL: says it is required and gives an example"),
])
def test_the_templates_refuse_impossible_combinations(helm: Helm, settings: list[str], expected: str) -> None:
    result = helm.template(set_values=settings, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_the_defaults_satisfy_the_schema_once_the_url_is_set(helm: Helm) -> None:
    assert helm.template(set_values=[URL]).returncode == 0


def test_every_top_level_value_is_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"]), set(values) - set(schema["properties"])
    assert schema["additionalProperties"] is False
