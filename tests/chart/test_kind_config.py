"""kind-config.yaml makes a multi-region cluster on which residency can be tried: every worker
has a region and a zone label, in at least two regions, and the example ClinicalSLO's regions exist."""

from __future__ import annotations

from collections import defaultdict

import pytest
import yaml

from chartlib import REPO_ROOT
from healthscale.api import clinicalslo, manifests

pytestmark = pytest.mark.chart

REGION, ZONE = "topology.kubernetes.io/region", "topology.kubernetes.io/zone"
CONFIG = yaml.safe_load((REPO_ROOT / "kind-config.yaml").read_text())


def workers() -> list[dict[str, str]]:
    return [node.get("labels") or {} for node in CONFIG["nodes"] if node["role"] == "worker"]


def test_it_is_a_kind_cluster_with_one_control_plane() -> None:
    assert (CONFIG["kind"], CONFIG["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    assert [node["role"] for node in CONFIG["nodes"]].count("control-plane") == 1


def test_every_worker_has_a_region_and_a_zone_inside_it() -> None:
    assert len(workers()) >= 3
    for labels in workers():
        assert REGION in labels and ZONE in labels, labels
        assert labels[ZONE].startswith(labels[REGION]), f"zone {labels[ZONE]} is not in region {labels[REGION]}"


def test_the_workers_span_at_least_two_regions_and_one_has_two_zones() -> None:
    zones: dict[str, set[str]] = defaultdict(set)
    for labels in workers():
        zones[labels[REGION]].add(labels[ZONE])
    assert len(zones) >= 2
    assert max(len(found) for found in zones.values()) >= 2


def test_the_example_clinicalslos_regions_exist_and_one_region_is_outside_them() -> None:
    slo = manifests.load_one(clinicalslo.ClinicalSLO, REPO_ROOT / "examples" / "clinicalslo.yaml")
    assert slo.spec.residency is not None
    allowed = set(slo.spec.residency.regions)
    regions = {labels[REGION] for labels in workers()}
    assert allowed <= regions, f"the example's regions {allowed} are not all in kind-config.yaml"
    assert regions - allowed, "no region outside the example's, so a violation could not be shown"
