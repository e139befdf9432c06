"""The chart's residency webhook: on with residency, highly available, and wired to what the
operator's code expects (the Service and certificate names, the Secret, the configuration).

The names are checked against the operator itself (``healthscale run``'s argument parser and
``adapters.certificates.names_for``), not against copies of them.
"""

from __future__ import annotations

from typing import Any

import pytest

from chartlib import Helm, by_kind
from healthscale import cli
from healthscale.adapters import certificates

pytestmark = pytest.mark.chart

URL = "prometheus.url=http://prometheus:9090"
RESIDENCY = "residency.enabled=true"


def render(helm: Helm, *settings: str) -> list[dict[str, Any]]:
    return helm.render(set_values=[URL, *settings], release="hs", namespace="healthscale-system")


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [item for item in by_kind(objects, kind) if name is None or item["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return found


def operator_webhook(objects: list[dict[str, Any]]) -> Any:
    """The webhook settings the operator would run with, parsed by its own command line."""
    arguments = cli._parser().parse_args(container(objects)["args"])
    return cli._webhook(arguments)


@pytest.mark.parametrize(("settings", "on"), [
    pytest.param([], False, id="no residency: no webhook"),
    pytest.param([RESIDENCY], True, id="residency on: the webhook is on (webhook.enabled auto)"),
    pytest.param([RESIDENCY, "webhook.enabled=false"], False, id="webhook.enabled=false turns it off anyway"),
    pytest.param(["webhook.enabled=true"], True, id="webhook.enabled=true turns it on without residency"),
])
def test_the_webhook_follows_residency_unless_set(helm: Helm, settings: list[str], on: bool) -> None:
    objects = render(helm, *settings)
    assert bool(by_kind(objects, "ValidatingWebhookConfiguration")) is on
    assert (operator_webhook(objects).port != 0) is on


def test_every_replica_serves_behind_a_service_rolls_one_at_a_time_and_keeps_one_through_drains(helm: Helm) -> None:
    objects = render(helm, RESIDENCY)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    config = operator_webhook(objects)
    assert config.service is not None
    namespace, name = config.service
    service = one(objects, "Service", name)
    assert namespace == "healthscale-system" and service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "webhook", "port": config.port, "targetPort": "webhook",
                                         "protocol": "TCP"}]
    probe = container(objects)["readinessProbe"]["httpGet"]
    assert probe == {"path": "/readyz", "port": "webhook", "scheme": "HTTPS"}
    assert "--peering=hs-healthscale" in container(objects)["args"]


def test_a_single_replica_with_the_webhook_still_rolls_over_and_gets_no_budget_that_blocks_drains(helm: Helm) -> None:
    objects = render(helm, RESIDENCY, "replicaCount=1")
    assert one(objects, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "--peering=hs-healthscale" in container(objects)["args"]
    assert not by_kind(objects, "PodDisruptionBudget")
    standalone = render(helm, "replicaCount=1")
    assert one(standalone, "Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_the_operator_gets_the_configuration_and_the_secret_the_chart_names_and_only_those(helm: Helm) -> None:
    objects = render(helm, RESIDENCY)
    config = operator_webhook(objects)
    assert [item["metadata"]["name"] for item in by_kind(objects, "ValidatingWebhookConfiguration")] == \
        [config.configuration_name] == ["hs-healthscale-residency"]
    assert config.secret == ("healthscale-system", "hs-healthscale-webhook-cert")
    role = one(objects, "Role", "hs-healthscale-webhook-cert")
    assert role["metadata"]["namespace"] == "healthscale-system"
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert named == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["hs-healthscale-webhook-cert"],
                      "verbs": ["get", "list", "watch", "update"]}]
    assert [rule["verbs"] for rule in role["rules"] if not rule.get("resourceNames")] == [["create"]]
    provided = one(render(helm, RESIDENCY, "webhook.certificate.source=secret",
                          "webhook.certificate.secretName=mine"), "Role", "hs-healthscale-webhook-cert")
    assert provided["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["mine"],
                                  "verbs": ["get", "list", "watch"]}], "a Secret you keep is only read"


@pytest.mark.parametrize("host", [pytest.param("", id="the Service"),
                                  pytest.param("webhook.example.org", id="a host name")])
def test_cert_manager_issues_for_the_names_the_operator_serves_and_injects_the_ca(helm: Helm, host: str) -> None:
    objects = render(helm, RESIDENCY, "webhook.certificate.source=cert-manager", f"webhook.host={host}")
    config = operator_webhook(objects)
    certificate = one(objects, "Certificate")
    assert certificate["spec"]["dnsNames"] == certificates.names_for(config.service, config.host)
    assert (config.secret[0], certificate["spec"]["secretName"]) == config.secret
    assert config.cert_source == "cert-manager"
    issuer = one(objects, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer",
                                                "group": "cert-manager.io"}
    configuration = one(objects, "ValidatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    role = one(objects, "Role", "hs-healthscale-webhook-cert")
    assert all("create" not in rule["verbs"] and "update" not in rule["verbs"] for rule in role["rules"])


def test_an_issuer_of_yours_replaces_the_self_signed_one(helm: Helm) -> None:
    objects = render(helm, RESIDENCY, "webhook.certificate.source=cert-manager",
                     "webhook.certificate.certManager.issuerRef.name=internal-ca",
                     "webhook.certificate.certManager.issuerRef.kind=ClusterIssuer")
    assert not by_kind(objects, "Issuer")
    assert one(objects, "Certificate")["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer",
                                                                 "group": "cert-manager.io"}
