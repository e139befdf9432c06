"""One seam for target kinds (issue 13, part 4): the workload kinds in ``adapters.kinds`` are the ones
``ClinicalSLO.spec.targetRef.kind`` accepts, the CRD documents, and the RBAC test maps to rules, so
that adding a kind is one table entry plus its rules, and a kind added in one place only fails here.
The floor kinds (``kinds.FLOORS``: HPA, KEDA ScaledObject) likewise: the records in status accept
exactly them and their fields, their calls have RBAC rules under their option, and an optional
kind is an operator flag, a chart value (off by default) and documented. The deferrable kinds
(``kinds.DEFERRABLES``: how the API lists and patches each, ``domain.deferral.KINDS``: what
deferring it means) list the same kinds, the SurgeSchedule's records accept exactly them, and the
chart's deferral RBAC grants list and patch on each (an optional kind under its option).
"""

from __future__ import annotations

import typing
from typing import Any

import kubernetes
import pytest
import yaml

from healthscale import ports
from healthscale.adapters import kinds
from healthscale.api import clinicalslo, surgeschedule
from healthscale.domain import deferral

from chartlib import REPO_ROOT, Helm
from test_rbac_least_privilege import CLIENT_CALLS, FULLNAME, RELEASE_SCOPE, URL, granted, needs_of

pytestmark = pytest.mark.chart


def test_the_target_ref_accepts_exactly_the_kinds_the_adapters_can_scale() -> None:
    accepted = typing.get_args(clinicalslo.TargetRef.model_fields["kind"].annotation)
    assert set(accepted) == set(kinds.WORKLOADS)


def test_the_crd_documents_every_kind() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "clinicalslos.healthscale.io.yaml").read_text())
    kind = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["targetRef"][
        "properties"]["kind"]
    assert set(kind["enum"]) == set(kinds.WORKLOADS)
    for name in kinds.WORKLOADS:
        assert name in kind["description"]


@pytest.mark.parametrize("entry", kinds.WORKLOADS.values(), ids=lambda entry: entry.kind)
def test_every_kind_names_real_client_methods_each_with_its_rbac_rule(entry: kinds.WorkloadKind) -> None:
    for method, resource in ((entry.read, entry.resource), (entry.patch, entry.resource),
                             (entry.patch_scale, f"{entry.resource}/scale")):
        assert callable(getattr(kubernetes.client.AppsV1Api, method))
        assert method in CLIENT_CALLS, f"{method}: add its rule to CLIENT_CALLS and the chart's _rbac.tpl"
        assert {need.rule[1] for need in needs_of(method)} == {resource}


# --------------------------------------------------------------------------- floor owners (HPA, ScaledObject)

def _original_schema() -> dict[str, Any]:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "clinicalslos.healthscale.io.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return dict(status["properties"]["originals"]["items"]["properties"])


def test_the_records_accept_exactly_the_workload_and_floor_kinds_and_fields() -> None:
    kinds_accepted = typing.get_args(clinicalslo.Original.model_fields["kind"].annotation)
    fields_accepted = typing.get_args(clinicalslo.Original.model_fields["field"].annotation)
    floor_fields = {entry.field for entry in kinds.FLOORS.values()}
    assert set(kinds_accepted) == set(kinds.WORKLOADS) | set(kinds.FLOORS)
    assert set(fields_accepted) == {"replicas"} | floor_fields == set(typing.get_args(ports.Field))
    schema = _original_schema()
    assert set(schema["kind"]["enum"]) == set(kinds_accepted) and set(schema["field"]["enum"]) == set(fields_accepted)


@pytest.mark.parametrize("entry", kinds.FLOORS.values(), ids=lambda entry: f"{entry.kind} names real client methods, "
                                                                         "each with its RBAC rule under its option")
def test_every_floor_kind_names_real_client_methods_each_with_its_rbac_rule(entry: kinds.FloorKind) -> None:
    api = getattr(kubernetes.client, entry.api)
    for method, verb in ((entry.list, "list"), (entry.patch, "patch")):
        assert callable(getattr(api, method))
        assert method in CLIENT_CALLS, f"{method}: add its rule to CLIENT_CALLS and the chart's _rbac.tpl"
        rules = {need.rule: need.when for need in needs_of(method)}
        assert rules.get((entry.group, entry.resource, verb), "missing") == entry.option, (
            f"{entry.kind}: {method} needs ({entry.group}, {entry.resource}, {verb}) when {entry.option or 'always'}")


@pytest.mark.parametrize("entry", [entry for entry in kinds.FLOORS.values() if entry.option],
                         ids=lambda entry: f"{entry.kind}'s option is an operator flag, a chart value and documented")
def test_every_optional_floor_kind_is_a_flag_a_chart_value_and_documented(entry: kinds.FloorKind) -> None:
    from healthscale import cli

    run = next(action for action in cli._parser()._actions if action.dest == "command").choices["run"]
    help_text = run.format_help()
    values = yaml.safe_load((REPO_ROOT / "helm" / "healthscale" / "values.yaml").read_text())
    deployment = (REPO_ROOT / "helm" / "healthscale" / "templates" / "deployment.yaml").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert values[entry.option] == {"enabled": False}, "off by default: RBAC only for what is used"
    assert f"- --no-{entry.option}" in deployment and f".Values.{entry.option}.enabled" in deployment
    assert f"--{entry.option}" in help_text and f"--no-{entry.option}" in help_text
    assert entry.field in readme and entry.kind in readme


# --------------------------------------------------------------------------- deferrable kinds (spec.defer)

def test_the_adapter_and_the_domain_list_the_same_deferrable_kinds_in_order_with_one_api_version() -> None:
    assert list(kinds.DEFERRABLES) == list(deferral.KINDS)
    assert {kind: entry.api_version for kind, entry in kinds.DEFERRABLES.items()} == {
        kind: rule.api_version for kind, rule in deferral.KINDS.items()}
    assert {kind: rule.field for kind, rule in deferral.KINDS.items()} == surgeschedule.FIELDS


def test_the_surge_schedule_records_accept_exactly_the_deferrable_kinds_and_fields() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "surgeschedules.healthscale.io.yaml").read_text())
    record = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "deferred"]["items"]["properties"]
    accepted = list(typing.get_args(surgeschedule.DeferrableKind))
    assert accepted == list(kinds.DEFERRABLES) == record["kind"]["enum"]
    assert list(typing.get_args(surgeschedule.DeferredField)) == record["field"]["enum"]
    assert set(record["field"]["enum"]) == {rule.field for rule in deferral.KINDS.values()}


@pytest.mark.parametrize("entry", kinds.DEFERRABLES.values(), ids=lambda entry: (
    f"the chart's deferral rules grant list and patch on {entry.resource}"
    + (f" with {entry.option}.enabled" if entry.option else "")))
def test_every_deferrable_kind_is_listed_and_patched_under_the_chart_s_deferral_rbac(
        helm: Helm, entry: kinds.DeferrableKind) -> None:
    options = ["deferral.enabled=true", *([f"{entry.option}.enabled=true"] if entry.option else [])]
    objects = helm.render(set_values=[URL, "replicaCount=1", *options], release="hs", namespace=RELEASE_SCOPE)
    grants = {grant[1:4] for grant in granted(objects, FULLNAME, RELEASE_SCOPE) if grant[0] == "*"}
    for verb in ("list", "patch"):
        assert (entry.group, entry.resource, verb) in grants, f"{entry.kind}: {verb} on {entry.resource}"
        # The adapter's generic call (adapters/deferrables.py) has its row in the RBAC test's table.
        rules = {need.rule: need.when for need in needs_of(f"{verb}_namespaced_custom_object")}
        assert rules.get((entry.group, entry.resource, verb), "missing") in ("deferral", entry.option), (
            f"{entry.kind}: CLIENT_CALLS needs ({entry.group}, {entry.resource}, {verb}) when deferral")
    if entry.option:
        without = helm.render(set_values=[URL, "replicaCount=1", "deferral.enabled=true"], release="hs",
                              namespace=RELEASE_SCOPE)
        assert (entry.group, entry.resource, "patch") not in {
            grant[1:4] for grant in granted(without, FULLNAME, RELEASE_SCOPE)}, \
            f"{entry.kind} is not granted without {entry.option}.enabled"
