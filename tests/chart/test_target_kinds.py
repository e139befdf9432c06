"""One seam for target kinds (issue 13, part 4): the workload kinds in ``adapters.kinds`` are the ones
``ClinicalSLO.spec.targetRef.kind`` accepts, the CRD documents, and the RBAC test maps to rules, so
that adding a kind is one table entry plus its rules, and a kind added in one place only fails here.
"""

from __future__ import annotations

import typing

import kubernetes
import pytest
import yaml

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
