"""The operator keeps a PrometheusRule per ClinicalSLO when the cluster serves them (issue 14, part 5).

The PrometheusRule CRD is the Prometheus Operator's own, from its Go module (the same file its
releases install), put into the dev cluster for this module and taken out again after it. A
`healthscale run` of its own watches the namespaces `hs-pr-*`. Deleting the ClinicalSLO leaves the
rule to the real kube-controller-manager's garbage collector (the rule is owned by the ClinicalSLO).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import (GROUP, VERSION, DevCluster, deployment, release_and_delete, running_operator, status_of,
                        wait_until)

pytestmark = pytest.mark.integration

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
CRD_FILE = "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
RULES = ("monitoring.coreos.com", "v1", "prometheusrules")


def prometheus_rule_crd() -> Path:
    """The PrometheusRule CRD from the Prometheus Operator's Go module (the module proxy, Go's cache)."""
    with tempfile.TemporaryDirectory() as empty:  # no go.mod around: download the module alone
        found = subprocess.run(["go", "mod", "download", "-json", PROMETHEUS_OPERATOR], cwd=empty, check=True,
                               capture_output=True, text=True, timeout=600,
                               env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    return Path(json.loads(found.stdout)["Dir"]) / CRD_FILE


@pytest.fixture(scope="module")
def rules_crd(devcluster: DevCluster) -> Iterator[None]:
    crd = prometheus_rule_crd()
    devcluster.kubectl("apply", "--server-side", "-f", str(crd))
    devcluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                       "crd/prometheusrules.monitoring.coreos.com")
    try:
        yield
    finally:
        devcluster.kubectl("delete", "--ignore-not-found", "--wait=false", "crd/prometheusrules.monitoring.coreos.com")


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, rules_crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("rules-operator") / "operator.log"
    with running_operator(devcluster, log, "hs-pr-*", "--no-residency"):
        yield log


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-pr-{uuid.uuid4().hex[:6]}"
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name)


def slo(namespace: str, errors: bool = True) -> dict[str, Any]:
    indicators: dict[str, Any] = {"demand": "vector(10)"}
    if errors:
        indicators |= {"errors": "vector(0)", "total": "vector(10)"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace},
        "spec": {"journey": "ED triage screens", "criticality": "critical", "mode": "Preview",
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                 "indicators": indicators, "objectives": {"availability": 99.9},
                 "capacity": {"perReplica": 10, "minReplicas": 1, "maxReplicas": 5},
                 "forecast": {"history": "1d", "step": "1m", "horizon": "30m"}},
    }


def rule(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
            *RULES[:2], namespace, RULES[2], "ed-triage")
        return found
    except k8s_client.ApiException as error:
        if error.status == 404:
            return None
        raise


def condition(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any] | None:
    return next((item for item in status_of(api, namespace, "ed-triage").get("conditions", [])
                 if item["type"] == "RulesApplied"), None)


def test_a_clinicalslo_gets_its_prometheusrule_owned_by_it_and_garbage_collected_with_it(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    custom = k8s_client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", slo(namespace))

    found = wait_until("the ClinicalSLO's PrometheusRule", lambda: rule(api, namespace))
    assert found["metadata"]["ownerReferences"] == [{
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO", "name": "ed-triage",
        "uid": created["metadata"]["uid"], "controller": True}]
    assert found["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "healthscale"}
    [group, slow] = found["spec"]["groups"]
    assert (group["name"], slow["name"]) == (f"healthscale-{namespace}-ed-triage-availability",
                                             f"healthscale-{namespace}-ed-triage-availability-slow")
    assert {item.get("alert") for item in group["rules"]} == {None, "ClinicalSLOErrorBudgetBurn"}
    assert slow["interval"] == "4m"
    applied = wait_until("RulesApplied=True", lambda: (found_ := condition(api, namespace)) and
                         found_["status"] == "True" and found_)
    assert applied["message"] == "PrometheusRule ed-triage: 8 recording rules and 2 alerts"
    reasons = {event.reason for event in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items
               if event.involved_object.name == "ed-triage"}
    assert "RulesApplied" in reasons, reasons

    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage")
    wait_until("the PrometheusRule garbage-collected with its ClinicalSLO", lambda: rule(api, namespace) is None)


def test_removing_the_last_objective_deletes_the_rule(api: k8s_client.ApiClient, operator: Path,
                                                      namespace: str) -> None:
    deployment(api, namespace, "ehr-api", 1)
    custom = k8s_client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", slo(namespace))
    wait_until("the ClinicalSLO's PrometheusRule", lambda: rule(api, namespace))
    custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "ed-triage", {
        **slo(namespace, errors=False),
        "metadata": custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos",
                                                        "ed-triage")["metadata"]})
    wait_until("the PrometheusRule deleted", lambda: rule(api, namespace) is None)
    wait_until("no RulesApplied condition once nothing is measured", lambda: condition(api, namespace) is None)
    reasons = {event.reason for event in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items
               if event.involved_object.name == "ed-triage"}
    assert "RulesDeleted" in reasons, reasons
