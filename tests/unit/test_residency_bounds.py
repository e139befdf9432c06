"""Residency that holds against the workload owner, without a cluster: regions bounded by policy,
a region label that can be trusted, every pod of an enforced namespace audited, least privilege.

- ``allowed_regions``/``outside``: what a namespace allows, clipped to the cluster-wide allow-list
  (table and hypothesis: nothing outside the allow-list is ever allowed);
- the ClinicalSLO cycle: regions outside the namespace's are Ready=False RegionsNotAllowed and
  nothing is written or scaled, not even a change of regions on an SLO already enforced;
- ``kubelet_settable`` and RegionLabelTrusted: NodeRestriction's rule, and the remedy;
- the namespace audit: unlabelled pods are the default class, ``none`` is exempt, counts by data
  class, one Event per violating pod and node, none from a replica that is not the active one;
- ``--no-pod-deletion-cost`` and ``--no-residency``: what the operator does without those rights.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

import prometheus_client
import pytest
from hypothesis import given, settings, strategies as st

from healthscale import cli, ports
from healthscale.adapters import audit as audit_adapter
from healthscale.adapters import placement
from healthscale.api import clinicalslo
from healthscale.domain import residency
from healthscale.runtime import audit as runtime_audit
from healthscale.runtime import metrics
from healthscale.runtime import residency as runtime_residency
from healthscale.service import audit, cycle
from healthscale.service import residency as service

from reconcile_fakes import Harness
from reconcile_fakes import slo as reconcile_slo

LABEL = residency.DEFAULT_REGION_LABEL
TRUSTED_LABEL = "node-restriction.kubernetes.io/region"
NOW = 1_780_000_200
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
EU = ("eu-west-1", "eu-central-1")
NODES = {"kwok-eu-west-1a": {LABEL: "eu-west-1"}, "kwok-us-east-1a": {LABEL: "us-east-1"}, "bare": {}}
ENFORCED = {service.OPT_IN_LABEL: service.OPT_IN_VALUE}
EU_ANNOTATION = {service.ALLOWED_REGIONS_ANNOTATION: "eu-west-1,eu-central-1"}
DEPLOYMENT = "Deployment"


# ------------------------------------------------------------------------------ allowed regions


@pytest.mark.parametrize(
    ("namespace", "default", "cluster", "expected"),
    [
        pytest.param(EU, ("us-east-1",), (), residency.Allowed(EU, "namespace"),
                     id="the namespace's own regions win over the default"),
        pytest.param((), ("us-east-1",), (), residency.Allowed(("us-east-1",), "default"),
                     id="without its own regions a namespace gets the operator's default"),
        pytest.param((), (), EU, residency.Allowed((), "none"),
                     id="with neither the namespace allows no region even under an allow-list"),
        pytest.param(("eu-west-1", "us-east-1"), (), EU, residency.Allowed(("eu-west-1",), "namespace", ("us-east-1",)),
                     id="a namespace region outside the cluster-wide allow-list is clipped and reported"),
        pytest.param((), ("us-east-1",), EU, residency.Allowed((), "default", ("us-east-1",)),
                     id="the default is bounded by the cluster-wide allow-list too"),
        pytest.param(("eu-west-1", "eu-west-1"), (), (), residency.Allowed(("eu-west-1",), "namespace"),
                     id="duplicates are dropped"),
    ],
)
def test_a_namespace_allows_its_regions_within_the_cluster_wide_list(
        namespace: tuple[str, ...], default: tuple[str, ...], cluster: tuple[str, ...],
        expected: residency.Allowed) -> None:
    assert residency.allowed_regions(namespace, default, cluster) == expected


REGIONS = st.lists(st.sampled_from(["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"]), max_size=4)


@settings(max_examples=300, deadline=None)
@given(REGIONS, REGIONS, REGIONS)
def test_nothing_outside_the_cluster_wide_list_is_ever_allowed(namespace: list[str], default: list[str],
                                                               cluster: list[str]) -> None:
    found = residency.allowed_regions(namespace, default, cluster)
    listed = set(namespace) or set(default)
    assert set(found.regions) <= listed
    if cluster:
        assert set(found.regions) <= set(cluster)
        assert set(found.regions) | set(found.clipped) == listed
        assert not set(found.clipped) & set(cluster)
    else:
        assert set(found.regions) == listed and found.clipped == ()


def test_outside_lists_the_requested_regions_that_are_not_allowed_in_order() -> None:
    assert residency.outside(("us-east-1", "eu-west-1", "ap-south-1"), EU) == ("us-east-1", "ap-south-1")
    assert residency.outside(EU, EU) == ()


# ---------------------------------------------------------------------------- trusted labels


@pytest.mark.parametrize(
    ("label", "settable"),
    [
        pytest.param("topology.kubernetes.io/region", True, id="the well-known region label is kubelet-settable"),
        pytest.param("failure-domain.beta.kubernetes.io/region", True, id="so is its deprecated beta form"),
        pytest.param("node-restriction.kubernetes.io/region", False, id="node-restriction labels are admin-only"),
        pytest.param("eu.node-restriction.kubernetes.io/region", False, id="so are those of its subdomains"),
        pytest.param("example.com/region", True, id="any custom-domain label is kubelet-settable"),
        pytest.param("region", True, id="a label without a domain is kubelet-settable"),
        pytest.param("node.kubernetes.io/region", True, id="node.kubernetes.io labels are the kubelet's own"),
        pytest.param("region.k8s.io/name", False, id="other k8s.io labels are forbidden to kubelets"),
        pytest.param("example.kubernetes.io/region", False, id="other kubernetes.io labels are forbidden to kubelets"),
    ],
)
def test_kubelet_settable_follows_the_node_restriction_rules(label: str, settable: bool) -> None:
    assert residency.kubelet_settable(label) is settable


def test_the_trust_message_gives_the_remedy_only_when_the_label_is_kubelet_settable() -> None:
    trusted, remedy = service.label_trust(LABEL)
    assert trusted is False
    assert "--region-label=node-restriction.kubernetes.io/region" in remedy and "residency.regionLabel" in remedy
    assert "NodeRestriction" in remedy
    assert service.label_trust(TRUSTED_LABEL)[0] is True


def test_start_up_warns_loudly_about_a_kubelet_settable_label(caplog: pytest.LogCaptureFixture) -> None:
    runtime_residency.warn_if_untrusted(runtime_residency.Config(region_label=LABEL))
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "node-restriction.kubernetes.io/region" in caplog.records[0].getMessage()
    caplog.clear()
    runtime_residency.warn_if_untrusted(runtime_residency.Config(region_label=TRUSTED_LABEL))
    assert caplog.records == []


# --------------------------------------------------------------------- the ClinicalSLO cycle


@dataclasses.dataclass
class Cluster:
    """The residency client over one namespace and one workload; records writes."""

    labels: dict[str, str] = dataclasses.field(default_factory=lambda: dict(ENFORCED))
    annotations: dict[str, str] = dataclasses.field(default_factory=lambda: dict(EU_ANNOTATION))
    affinity: dict[str, Any] | None = None
    owned: residency.Policy | None = None
    pods_: list[residency.Pod] = dataclasses.field(default_factory=list)
    writes: list[dict[str, Any] | None] = dataclasses.field(default_factory=list)

    def read_template(self, namespace: str, kind: str, name: str) -> placement.Template:
        spec = {"affinity": copy.deepcopy(self.affinity)} if self.affinity else {}
        return placement.Template(kind, name, "7", "app=ehr-api", spec, self.owned)

    def write_required_affinity(self, namespace: str, template: placement.Template, required: dict[str, Any] | None,
                                owned: residency.Policy | None) -> None:
        self.writes.append(required)
        self.affinity = {"nodeAffinity": {REQUIRED: required}}
        self.owned = owned

    def pods(self, namespace: str, selector: str) -> list[residency.Pod]:
        return list(self.pods_)

    def nodes(self) -> dict[str, dict[str, str]]:
        return copy.deepcopy(NODES)

    def evict(self, namespace: str, pod: str) -> placement.Eviction:
        raise AssertionError("no eviction expected")

    def namespace_metadata(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        return dict(self.labels), dict(self.annotations)


class Untouchable:
    """A port the cycle must not use: any call fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the cycle used {name} although the ClinicalSLO was refused")


UNTOUCHABLE = cycle.Ports(Untouchable(), Untouchable(), Untouchable())  # type: ignore[arg-type]


def slo(slo_document: dict[str, Any], regions: list[str] | None, generation: int = 1) -> clinicalslo.ClinicalSLO:
    document = copy.deepcopy(slo_document)
    document["spec"]["mode"] = "Active"
    document["metadata"]["generation"] = generation
    if regions is None:
        document["spec"].pop("residency", None)
    else:
        document["spec"]["residency"] = {"dataClass": "phi", "regions": regions}
    return clinicalslo.ClinicalSLO.model_validate(document)


def conditions(status: clinicalslo.ClinicalSLOStatus) -> dict[str, tuple[str, str]]:
    return {item.type: (item.status, item.reason) for item in status.conditions}


def refused_cycle(resource: clinicalslo.ClinicalSLO, cluster: Cluster, settings_: service.Settings,
                  previous: clinicalslo.ClinicalSLOStatus | None = None) -> tuple[cycle.Result, service.Outcome]:
    return service.run_cycle(resource, (), NOW, UNTOUCHABLE, cluster, settings_, cycle.Memory(),
                             previous or clinicalslo.ClinicalSLOStatus())


def test_regions_the_namespace_does_not_allow_are_refused_and_nothing_is_written_or_scaled(
        slo_document: dict[str, Any]) -> None:
    cluster = Cluster()
    result, outcome = refused_cycle(slo(slo_document, ["eu-west-1", "us-east-1"]), cluster, service.Settings())
    assert cluster.writes == []
    assert result.decision is None and not result.scaled
    found = conditions(result.status)
    assert found["Ready"] == ("False", "RegionsNotAllowed")
    message = next(item.message for item in result.status.conditions if item.type == "Ready")
    assert message.startswith("spec.residency.regions lists us-east-1, which namespace ")
    assert "allows eu-west-1, eu-central-1 (annotation healthscale.io/allowed-regions of namespace" in message
    assert [event.reason for event in result.events] == ["RegionsNotAllowed"]
    assert result.status.residency is not None and result.status.residency.namespace_regions == EU
    assert outcome.status is not None and outcome.status.compliant is False


def test_widening_the_regions_of_an_enforced_slo_keeps_the_previous_requirement(slo_document: dict[str, Any]) -> None:
    previous = residency.Policy(LABEL, ("eu-west-1",))
    before = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [previous.requirement()]}]}}}
    cluster = Cluster(affinity=copy.deepcopy(before), owned=previous)
    first, _ = refused_cycle(slo(slo_document, ["eu-west-1", "us-east-1"], generation=2), cluster, service.Settings())
    again, _ = refused_cycle(slo(slo_document, ["eu-west-1", "us-east-1"], generation=2), cluster, service.Settings(),
                             first.status)
    assert cluster.writes == [] and cluster.affinity == before and cluster.owned == previous
    assert [event.reason for event in first.events] == ["RegionsNotAllowed"]
    assert again.events == (), "the Warning Event is posted once per generation"
    assert conditions(again.status)["Ready"] == ("False", "RegionsNotAllowed")


@pytest.mark.parametrize(
    ("labels", "annotations", "cluster_list", "regions", "refused"),
    [
        pytest.param(ENFORCED, EU_ANNOTATION, (), ["eu-central-1"], False,
                     id="a subset of the namespace's regions is enforced"),
        pytest.param({}, EU_ANNOTATION, (), ["us-east-1"], False,
                     id="a namespace that does not enforce residency leaves the regions to the owner"),
        pytest.param(ENFORCED, {}, (), ["eu-west-1"], True,
                     id="an enforced namespace with no regions at all allows none"),
        pytest.param(ENFORCED, {service.ALLOWED_REGIONS_ANNOTATION: "eu-west-1,us-east-1"}, EU, ["us-east-1"], True,
                     id="a namespace cannot allow a region the cluster-wide list does not"),
        pytest.param(ENFORCED, {service.ALLOWED_REGIONS_ANNOTATION: "eu-west-1,us-east-1"}, EU, ["eu-west-1"], False,
                     id="the namespace's regions inside the cluster-wide list stay allowed"),
    ],
)
def test_the_namespace_bounds_the_regions_only_when_it_enforces_residency(
        slo_document: dict[str, Any], labels: dict[str, str], annotations: dict[str, str],
        cluster_list: tuple[str, ...], regions: list[str], refused: bool) -> None:
    cluster = Cluster(labels=dict(labels), annotations=dict(annotations))
    outcome = service.run(slo(slo_document, regions), NOW, cluster, service.Settings(allowed_regions=cluster_list),
                          clinicalslo.ClinicalSLOStatus())
    reasons = {item.type: item.reason for item in outcome.conditions}
    assert (reasons.get("Ready") == "RegionsNotAllowed") is refused
    assert bool(cluster.writes) is not refused


def test_a_clipped_namespace_region_is_named_in_the_refusal_and_in_status(slo_document: dict[str, Any]) -> None:
    cluster = Cluster(annotations={service.ALLOWED_REGIONS_ANNOTATION: "eu-west-1,us-east-1"})
    result, _ = refused_cycle(slo(slo_document, ["us-east-1"]), cluster, service.Settings(allowed_regions=EU))
    message = next(item.message for item in result.status.conditions if item.type == "Ready")
    assert "us-east-1 dropped: not in the cluster-wide --allowed-regions" in message
    assert result.status.residency is not None
    assert result.status.residency.clipped_regions == ("us-east-1",)
    assert result.status.residency.namespace_regions == ("eu-west-1",)


@pytest.mark.parametrize(("label", "status", "reason"), [
    pytest.param(LABEL, "False", "KubeletSettableLabel", id="a kubelet-settable label is not trusted"),
    pytest.param(TRUSTED_LABEL, "True", "AdminOnlyLabel", id="a node-restriction label is trusted"),
])
def test_every_slo_with_residency_says_whether_its_region_label_is_trusted(
        slo_document: dict[str, Any], label: str, status: str, reason: str) -> None:
    nodes = {name: {label: value for value in labels.values()} for name, labels in NODES.items()}
    cluster = Cluster(pods_=[residency.Pod("p1", "kwok-eu-west-1a", "Running")])
    cluster.nodes = lambda: nodes  # type: ignore[method-assign]
    settings_ = service.Settings(region_label=label)
    outcome = service.run(slo(slo_document, ["eu-west-1"]), NOW, cluster, settings_, clinicalslo.ClinicalSLOStatus())
    assert conditions_of(outcome)["RegionLabelTrusted"] == (status, reason)
    assert outcome.status is not None and outcome.status.label_trusted is (status == "True")
    refused, _ = refused_cycle(slo(slo_document, ["us-east-1"]), Cluster(), settings_)
    assert conditions(refused.status)["RegionLabelTrusted"] == (status, reason), "said even when refused"
    without = service.run(slo(slo_document, None), NOW, Cluster(), settings_, clinicalslo.ClinicalSLOStatus())
    assert "RegionLabelTrusted" not in conditions_of(without), "only ClinicalSLOs with residency"


def conditions_of(outcome: service.Outcome) -> dict[str, tuple[str, str]]:
    return {item.type: (item.status, item.reason) for item in outcome.conditions}


def test_an_operator_without_residency_does_not_scale_a_slo_that_names_regions(slo_document: dict[str, Any]) -> None:
    memo = {"residency": runtime_residency.Runtime(runtime_residency.Config(enabled=False), Untouchable())}  # type: ignore[arg-type]
    result = runtime_residency.run_cycle(memo, slo(slo_document, ["eu-west-1"]), [], NOW, UNTOUCHABLE, cycle.Memory(),
                                         clinicalslo.ClinicalSLOStatus(), False)
    assert conditions(result.status)["Ready"] == ("False", "ResidencyDisabled")
    assert not result.scaled and [event.reason for event in result.events] == ["ResidencyDisabled"]
    again = runtime_residency.run_cycle(memo, slo(slo_document, ["eu-west-1"]), [], NOW, UNTOUCHABLE, cycle.Memory(),
                                        result.status, False)
    assert again.events == ()


def test_without_pod_deletion_cost_the_operator_never_patches_pods() -> None:
    harness = Harness(resource=reconcile_slo(pod_load=True), schedules=())
    harness.workloads.deployment("ehr-api", 10)
    harness.metrics.loads = {"ehr-api-0": 5.0, "ehr-api-1": 1.0}
    ports_ = dataclasses.replace(harness.ports, deletion_cost=False)
    cycle.run(harness.resource, (), NOW, ports_, harness.memory, harness.status)
    assert harness.workloads.value(DEPLOYMENT, "ehr-api") < 10, "the scale-down still happens"
    assert harness.workloads.deletion_costs == [] and "workloads.pods" not in harness.log


def test_the_run_command_takes_the_bounds_and_feature_switches() -> None:
    arguments = cli._parser().parse_args([
        "run", "--prometheus-url", "http://p:9090", "--allowed-regions", "eu-west-1, eu-central-1",
        "--no-residency", "--no-pod-deletion-cost", "--residency-audit-seconds", "5"])
    assert residency.parse_regions(arguments.allowed_regions) == EU
    assert arguments.residency is False and arguments.pod_deletion_cost is False
    assert arguments.residency_audit_seconds == 5
    defaults = cli._parser().parse_args(["run", "--prometheus-url", "http://p:9090"])
    assert defaults.residency is True and defaults.pod_deletion_cost is True and defaults.allowed_regions == ""
    assert defaults.residency_audit_seconds == 60


# --------------------------------------------------------------------------- namespace audit


def pod(name: str, node: str | None, data_class: str | None = None, phase: str = "Running") -> residency.Pod:
    return residency.Pod(name, node, phase, data_class=data_class, uid=f"uid-{name}")


@pytest.mark.parametrize(
    ("pods", "default", "expected"),
    [
        pytest.param([pod("job-1", "kwok-us-east-1a")], None, [("job-1", "us-east-1", "phi")],
                     id="an unlabelled pod outside the regions counts as phi"),
        pytest.param([pod("job-1", "kwok-us-east-1a")], "pii", [("job-1", "us-east-1", "pii")],
                     id="an unlabelled pod counts as the namespace's default class"),
        pytest.param([pod("cache", "kwok-us-east-1a", "none")], None, [],
                     id="a pod labelled none is not patient data"),
        pytest.param([pod("cache", "kwok-us-east-1a")], "none", [("cache", "us-east-1", "phi")],
                     id="a namespace default of none exempts nobody: unlabelled pods count as phi"),
        pytest.param([pod("odd", "bare", "secret")], None, [("odd", "unlabelled", "unknown")],
                     id="an unknown data class is patient data counted as unknown"),
        pytest.param([pod("db-0", "kwok-eu-west-1a", "phi"), pod("done", "kwok-us-east-1a", phase="Succeeded"),
                      pod("pending", None)], None, [],
                     id="pods in the regions, finished or not yet placed are not violations"),
        pytest.param([pod("job-1", "gone-node", "pii")], "bogus", [("job-1", "unlabelled", "pii")],
                     id="a pod on a node that is gone counts as unlabelled"),
    ],
)
def test_the_namespace_audit_covers_every_patient_data_pod(pods: list[residency.Pod], default: str | None,
                                                          expected: list[tuple[str, str, str]]) -> None:
    found = residency.audit_namespace(pods, NODES, LABEL, EU, default)
    assert [(item.pod, item.region, item.data_class) for item in found] == expected


def test_with_no_allowed_region_every_running_patient_data_pod_is_a_violation() -> None:
    found = residency.audit_namespace([pod("a", "kwok-eu-west-1a"), pod("b", "bare", "none")], NODES, LABEL, ())
    assert [item.pod for item in found] == ["a"]


@dataclasses.dataclass
class AuditCluster:
    """``ports.NamespaceAudit`` over in-memory namespaces; records Events posted."""

    namespaces: dict[str, tuple[dict[str, str], dict[str, str]]]
    pods: dict[str, list[residency.Pod]]
    nodes_: dict[str, dict[str, str]] = dataclasses.field(default_factory=lambda: copy.deepcopy(NODES))
    failing: set[str] = dataclasses.field(default_factory=set)
    posted: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)

    def enforced_namespaces(self) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        return copy.deepcopy(self.namespaces)

    def namespace_pods(self, namespace: str) -> list[residency.Pod]:
        if namespace in self.failing:
            raise ports.ApiError(f"list pods in {namespace}: HTTP 500", retryable=True, status=500)
        return list(self.pods.get(namespace, []))

    def nodes(self) -> dict[str, dict[str, str]]:
        return copy.deepcopy(self.nodes_)

    def post_pod_event(self, namespace: str, pod_: str, uid: str, type_: str, reason: str, message: str) -> None:
        self.posted.append((namespace, pod_, reason, message))


def _cluster() -> AuditCluster:
    return AuditCluster(
        namespaces={"ehr": (dict(ENFORCED), dict(EU_ANNOTATION)),
                    "labs": (dict(ENFORCED), {service.DEFAULT_CLASS_ANNOTATION: "pii",
                                              service.ALLOWED_REGIONS_ANNOTATION: "eu-west-1"}),
                    "broken": (dict(ENFORCED), {})},
        pods={"ehr": [pod("patient-zz9canary-report-x1", "kwok-us-east-1a"), pod("ehr-api-1", "kwok-eu-west-1a", "phi"),
                      pod("cache", "kwok-us-east-1a", "none")],
              "labs": [pod("results-0", "bare")]},
        failing={"broken"})


def test_the_audit_reports_each_namespace_and_one_unreadable_namespace_stops_no_other() -> None:
    cluster = _cluster()
    report = audit.run(cluster, service.Settings(), lambda namespace: True)
    assert [item.namespace for item in report.namespaces] == ["ehr", "labs"]
    assert report.namespaces[0].counts() == {"phi": 1, "pii": 0}
    assert report.namespaces[1].counts() == {"phi": 0, "pii": 1}
    assert len(report.failures) == 1 and report.failures[0].startswith("namespace broken:")
    served = audit.run(cluster, service.Settings(), lambda namespace: namespace == "labs")
    assert [item.namespace for item in served.namespaces] == ["labs"], "only served namespaces are audited"


def test_the_event_on_a_violating_pod_names_regions_not_the_pod() -> None:
    report = audit.run(_cluster(), service.Settings(), lambda namespace: namespace == "ehr")
    (event,) = audit.events(report, service.Settings())
    assert (event.namespace, event.pod, event.uid, event.reason) == (
        "ehr", "patient-zz9canary-report-x1", "uid-patient-zz9canary-report-x1", "ResidencyViolation")
    assert event.message == ("this phi pod runs on node kwok-us-east-1a, in region us-east-1, outside the regions "
                             "namespace ehr allows: eu-west-1, eu-central-1 (annotation "
                             "healthscale.io/allowed-regions of namespace ehr)")
    assert "zz9canary" not in event.message


def sample(name: str, **labels: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, labels)


def auditor(cluster: AuditCluster, leader: bool = True) -> runtime_audit.Auditor:
    config = runtime_audit.Config(service.Settings(), interval=5.0, namespaces=("ehr", "labs", "broken"))
    return runtime_audit.Auditor(config, cluster, cluster, lambda audited: leader)


def test_the_auditor_exports_counts_and_posts_each_violation_once_until_the_pod_moves(
        caplog: pytest.LogCaptureFixture) -> None:
    cluster = _cluster()
    running = auditor(cluster)
    running.audit_once()
    assert sample("healthscale_residency_violations", namespace="ehr", data_class="phi") == 1
    assert sample("healthscale_residency_violations", namespace="labs", data_class="pii") == 1
    assert sample("healthscale_residency_violations", namespace="ehr", data_class="pii") == 0
    assert [(namespace, name) for namespace, name, _, _ in cluster.posted] == [
        ("ehr", "patient-zz9canary-report-x1"), ("labs", "results-0")]
    running.audit_once()
    assert len(cluster.posted) == 2, "a violation already reported is not posted again"
    cluster.pods["labs"] = [pod("results-0", "kwok-us-east-1a")]
    running.audit_once()
    assert [name for _, name, _, _ in cluster.posted[2:]] == ["results-0"], "a pod that moved is reported again"
    assert "zz9canary" not in caplog.text, "logs carry counts, never pod names"
    assert "namespace ehr has 1 phi pod(s) outside eu-west-1, eu-central-1" in caplog.text
    cluster.namespaces.pop("labs")
    running.audit_once()
    assert sample("healthscale_residency_violations", namespace="labs", data_class="pii") is None, \
        "a namespace no longer enforcing residency loses its series"


def test_a_replica_that_is_not_active_neither_audits_nor_exports() -> None:
    cluster = _cluster()
    auditor(cluster).audit_once()
    assert sample("healthscale_residency_violations", namespace="ehr", data_class="phi") == 1
    assert auditor(cluster, leader=False).audit_once() is None
    assert sample("healthscale_residency_violations", namespace="ehr", data_class="phi") is None
    assert len(cluster.posted) == 2


def test_a_clipped_namespace_region_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    cluster = _cluster()
    cluster.namespaces["labs"] = (dict(ENFORCED), {service.ALLOWED_REGIONS_ANNOTATION: "eu-west-1,us-east-1"})
    config = runtime_audit.Config(service.Settings(allowed_regions=EU), interval=5.0)
    running = runtime_audit.Auditor(config, cluster, cluster, lambda audited: True)
    running.audit_once()
    running.audit_once()
    clipped = [record for record in caplog.records if "outside the cluster-wide --allowed-regions" in record.getMessage()]
    assert len(clipped) == 1 and "namespace labs allows us-east-1" in clipped[0].getMessage()


NOW_UTC = dt.datetime(2026, 5, 28, 20, 30, tzinfo=dt.timezone.utc)


def peer(priority: int, seconds_ago: int = 5, lifetime: int = 60) -> dict[str, Any]:
    return {"priority": priority, "lifetime": lifetime,
            "lastseen": (NOW_UTC - dt.timedelta(seconds=seconds_ago)).isoformat()}


@pytest.mark.parametrize(
    ("peerings", "active"),
    [
        pytest.param([{"me": peer(10), "other": peer(5)}], True, id="the highest live priority is active"),
        pytest.param([{"me": peer(10), "other": peer(20)}], False, id="a live higher peer makes this one wait"),
        pytest.param([{"me": peer(10), "other": peer(20, seconds_ago=120)}], True,
                     id="a higher peer that stopped renewing is dead and does not count"),
        pytest.param([{"me": peer(10), "twin": peer(10)}], False, id="equal priorities pause both as Kopf does"),
        pytest.param([{"other": peer(5)}], False, id="a replica Kopf has not announced yet is not active"),
        pytest.param([{"me": peer(10)}, {"other": peer(30)}], False,
                     id="a higher peer in any namespace's peering pauses the replica"),
        pytest.param([], False, id="no peering object read: not active"),
    ],
)
def test_only_the_replica_kopf_keeps_active_audits(peerings: list[dict[str, dict[str, Any]]], active: bool) -> None:
    assert runtime_audit.active(peerings, 10, NOW_UTC) is active


def test_leadership_reads_the_cluster_peering_or_the_served_namespaces_ones() -> None:
    asked: list[str | None] = []

    class Peering:
        def peers(self, name: str, namespace: str | None) -> dict[str, dict[str, Any]]:
            asked.append(namespace)
            return {"me": {"priority": 7, "lastseen": dt.datetime.now(dt.timezone.utc).isoformat()}}

    settings_ = service.Settings()
    assert runtime_audit.Leadership(runtime_audit.Config(settings_), Peering())(set()) is True
    assert asked == [], "standalone: no peering to read"
    clusterwide = runtime_audit.Config(settings_, peering="hs", priority=7)
    assert runtime_audit.Leadership(clusterwide, Peering())({"ehr"}) is True and asked == [None]
    namespaced = runtime_audit.Config(settings_, namespaces=("ehr", "team-*"), peering="hs", priority=7)
    runtime_audit.Leadership(namespaced, Peering())({"team-a"})
    assert asked[1:] == ["ehr", "team-a"]


def test_the_audit_adapter_reads_a_pods_data_class_and_uid() -> None:
    raw = {"metadata": {"name": "p", "uid": "u1", "labels": {service.DATA_CLASS_LABEL: "pii"}},
           "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert audit_adapter.pod_of(raw) == residency.Pod("p", "n1", "Running", data_class="pii", uid="u1")
    assert audit_adapter.DATA_CLASS_LABEL == service.DATA_CLASS_LABEL


def test_metrics_never_carry_pod_names() -> None:
    auditor(_cluster()).audit_once()
    for family in prometheus_client.REGISTRY.collect():
        if family.name.startswith("healthscale_residency"):
            for item in family.samples:
                assert "pod" not in item.labels and "zz9canary" not in str(item.labels)
    metrics.record_audit(None)
