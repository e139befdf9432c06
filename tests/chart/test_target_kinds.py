"""One seam for target kinds (issue 13, part 4): the workload kinds in ``adapters.kinds`` are the ones
``ClinicalSLO.spec.targetRef.kind`` accepts, the CRD documents, and the RBAC test maps to rules, so
that adding a kind is one table entry plus its rules, and a kind added in one place only fails here.
The floor kinds (``kinds.FLOORS``: HPA, KEDA ScaledObject) likewise: the records in status accept
exactly them and their fields, their calls have RBAC rules under their option, and an optional
kind is an operator flag, a chart value (off by default) and documented.
"""

from __future__ import annotations

import typing
from typing import Any

import kubernetes
import pytest
import yaml

from healthscale import ports
from healthscale.adapters import kinds
from healthscale.api import clinicalslo

from chartlib import REPO_ROOT
from test_rbac_least_privilege import CLIENT_CALLS, needs_of

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
