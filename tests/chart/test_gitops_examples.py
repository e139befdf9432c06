"""The GitOps examples under examples/gitops/ stay consistent with the chart and the operator:
they parse, point at paths that exist, pass the chart's values schema, and keep GitOps tools
off the fields the operator writes (field manager healthscale)."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from chartlib import CHART, REPO_ROOT, Helm
from healthscale.adapters import kube
from healthscale.api import clinicalslo, manifests, surgeschedule
from healthscale.runtime import webhook

pytestmark = pytest.mark.chart

GITOPS = REPO_ROOT / "examples" / "gitops"
MANIFESTS = sorted(GITOPS.rglob("*.yml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def one(path: str, kind: str) -> dict[str, Any]:
    (found,) = [document for document in documents(GITOPS / path) if document["kind"] == kind]
    return found


def test_there_are_argo_cd_and_flux_examples() -> None:
    kinds = {document["kind"] for path in MANIFESTS for document in documents(path)}
    assert {"Application", "HelmRelease", "GitRepository", "Kustomization", "ConfigMap"} <= kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: str(path.relative_to(GITOPS)))
def test_every_manifest_parses_with_api_version_and_kind(path: Path) -> None:
    for document in documents(path):
        assert {"apiVersion", "kind"} <= set(document), path


def test_the_argo_cd_health_check_in_argocd_cm_is_the_lua_file_verbatim() -> None:
    configmap = one("argocd/argocd-cm.clinicalslo-health.yml", "ConfigMap")
    embedded = configmap["data"]["resource.customizations.health.healthscale.io_ClinicalSLO"]
    assert embedded == (GITOPS / "argocd" / "clinicalslo-health.lua").read_text()


def ignored(application: dict[str, Any], kind: str) -> dict[str, Any]:
    (rule,) = [rule for rule in application["spec"]["ignoreDifferences"] if rule["kind"] == kind]
    return dict(rule)


def test_argo_cd_ignores_what_the_operator_writes_on_workloads() -> None:
    application = one("argocd/ehr-api.application.yml", "Application")
    for kind, pointer in (("Deployment", "/spec/replicas"), ("StatefulSet", "/spec/replicas"),
                          ("HorizontalPodAutoscaler", "/spec/minReplicas")):
        rule = ignored(application, kind)
        assert pointer in rule["jsonPointers"], kind
        assert rule["managedFieldsManagers"] == [kube.FIELD_MANAGER], kind
    # Without it, a sync would still write the ignored fields back.
    assert "RespectIgnoreDifferences=true" in application["spec"]["syncPolicy"]["syncOptions"]


def test_argo_cd_and_flux_leave_the_webhook_configuration_to_the_operator() -> None:
    application = one("argocd/healthscale-operator.application.yml", "Application")
    rule = ignored(application, "ValidatingWebhookConfiguration")
    assert rule["name"] == webhook.CONFIGURATION_NAME and rule["managedFieldsManagers"] == [kube.FIELD_MANAGER]
    release = one("flux/healthscale.helmrelease.yml", "HelmRelease")
    (ignore,) = release["spec"]["driftDetection"]["ignore"]
    assert ignore["target"] == {"kind": "ValidatingWebhookConfiguration", "name": webhook.CONFIGURATION_NAME}


def test_flux_drops_what_the_operator_writes_from_the_workload_manifests() -> None:
    kustomization = one("flux/ehr-api.kustomization.yml", "Kustomization")
    removed = {(patch["target"]["kind"], operation["path"]) for patch in kustomization["spec"]["patches"]
               for operation in yaml.safe_load(patch["patch"]) if operation["op"] == "remove"}
    assert removed == {("Deployment", "/spec/replicas"), ("HorizontalPodAutoscaler", "/spec/minReplicas")}


def test_the_chart_sources_point_at_the_chart() -> None:
    application = one("argocd/healthscale-operator.application.yml", "Application")
    assert REPO_ROOT / application["spec"]["source"]["path"] == CHART
    release = one("flux/healthscale.helmrelease.yml", "HelmRelease")
    assert (REPO_ROOT / release["spec"]["chart"]["spec"]["chart"]).resolve() == CHART


@pytest.mark.parametrize("values_of", [
    pytest.param(lambda: one("argocd/healthscale-operator.application.yml", "Application")["spec"]["source"]["helm"]
                 ["valuesObject"], id="Argo CD valuesObject"),
    pytest.param(lambda: one("flux/healthscale.helmrelease.yml", "HelmRelease")["spec"]["values"],
                 id="Flux HelmRelease values"),
])
def test_the_example_values_pass_the_chart_schema(helm: Helm, values_of: Any, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(values_of()))
    assert helm.render([values])


def load(path: Path) -> Any:
    """The example as the operator's models parse it."""
    if yaml.safe_load(path.read_text())["kind"] == "ClinicalSLO":
        return manifests.load_one(clinicalslo.ClinicalSLO, path)
    return manifests.load_one(surgeschedule.SurgeSchedule, path)


def test_the_argo_cd_slo_application_selects_the_two_examples() -> None:
    source = one("argocd/clinical-slos.application.yml", "Application")["spec"]["source"]
    pattern = source["directory"]["include"]
    alternatives = pattern.strip("{}").split(",")
    selected = sorted(path.name for path in (REPO_ROOT / source["path"]).glob("*.yaml")
                      if any(fnmatch.fnmatch(path.name, item) for item in alternatives))
    assert selected == ["clinicalslo.yaml", "surgeschedule.yaml"]
    assert {load(REPO_ROOT / source["path"] / name).kind for name in selected} == {"ClinicalSLO", "SurgeSchedule"}


def test_the_flux_slo_kustomization_builds_from_the_two_examples() -> None:
    flux = one("flux/clinical-slos.kustomization.yml", "Kustomization")
    directory = REPO_ROOT / flux["spec"]["path"]
    kustomization = yaml.safe_load((directory / "kustomization.yml").read_text())
    resources = [(directory / item).resolve() for item in kustomization["resources"]]
    assert [path.relative_to(REPO_ROOT).as_posix() for path in resources] == [
        "examples/clinicalslo.yaml", "examples/surgeschedule.yaml"]
    assert {load(path).kind for path in resources} == {"ClinicalSLO", "SurgeSchedule"}
