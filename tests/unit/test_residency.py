"""Data residency without a cluster: the pure rules and the service with a fake cluster.

- ``merge``: the region requirement is ANDed into every required term, nothing else moves (table
  and hypothesis: existing terms survive, every term gains the requirement, merging is idempotent);
- ``check``: which scheduling constraints keep a pod in its regions, and the message when not;
- ``audit`` and ``shortfall``: where pods run, and what the scheduler could not place;
- the service: enforce before scaling, never write in Preview, evict only when replacements are safe;
- the run command's residency settings and the residency metrics (admission: test_admission*.py).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Any

import prometheus_client
import pytest
from hypothesis import assume, given, settings, strategies as st

from healthscale import cli
from healthscale.adapters import kube, placement
from healthscale.api import clinicalslo
from healthscale.domain import residency
from healthscale.runtime import metrics
from healthscale.service import residency as service

# See test_planning_properties.py: import hypothesis' patching module once with its warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

LABEL = residency.DEFAULT_REGION_LABEL
EU = residency.Policy(LABEL, ("eu-west-1", "eu-central-1"))
NOW = 1_780_000_200
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
NO_STATUS = clinicalslo.ClinicalSLOStatus()


def expression(key: str, operator: str, *values: str) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        found["values"] = list(values)
    return found


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": list(terms)}}}


def terms_of(affinity: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((affinity or {}).get("nodeAffinity") or {}).get(REQUIRED, {}).get("nodeSelectorTerms") or [])


ARCH = expression("kubernetes.io/arch", "In", "amd64")
ZONE = expression("topology.kubernetes.io/zone", "In", "eu-west-1a", "us-east-1a")
PREFERRED = {"preferredDuringSchedulingIgnoredDuringExecution": [
    {"weight": 10, "preference": {"matchExpressions": [expression("disk", "In", "ssd")]}}]}


# ---------------------------------------------------------------------------------------- merge


@pytest.mark.parametrize(
    ("affinity", "policy", "owned", "expected"),
    [
        pytest.param(None, EU, None, required({"matchExpressions": [EU.requirement()]}),
                     id="a pod spec without affinity gains one term requiring the regions"),
        pytest.param(required({"matchExpressions": [ARCH]}, {"matchExpressions": [ZONE]}), EU, None,
                     required({"matchExpressions": [ARCH, EU.requirement()]},
                              {"matchExpressions": [ZONE, EU.requirement()]}),
                     id="every existing required term gains the requirement because terms are ORed"),
        pytest.param({"nodeAffinity": {**PREFERRED}, "podAntiAffinity": {"x": 1}}, EU, None,
                     {"nodeAffinity": {**PREFERRED, REQUIRED: {"nodeSelectorTerms": [
                         {"matchExpressions": [EU.requirement()]}]}}, "podAntiAffinity": {"x": 1}},
                     id="preferred terms and pod anti-affinity are left exactly as they were"),
        pytest.param(required({}, {"matchExpressions": [ARCH]}), EU, None,
                     required({}, {"matchExpressions": [ARCH, EU.requirement()]}),
                     id="an empty term stays empty because it matches no node and filling it would widen placement"),
        pytest.param(required({"matchFields": [expression("metadata.name", "In", "n1")]}), EU, None,
                     required({"matchFields": [expression("metadata.name", "In", "n1")],
                               "matchExpressions": [EU.requirement()]}),
                     id="a term of only matchFields gains the requirement as a matchExpression"),
        pytest.param(required({"matchExpressions": [expression(LABEL, "In", "eu-central-1", "eu-west-1")]}), EU, None,
                     required({"matchExpressions": [expression(LABEL, "In", "eu-central-1", "eu-west-1")]}),
                     id="a term that already requires the same regions in another order is left alone"),
        pytest.param(required({"matchExpressions": [ARCH, EU.requirement()]}),
                     residency.Policy(LABEL, ("eu-west-1",)), EU,
                     required({"matchExpressions": [ARCH, expression(LABEL, "In", "eu-west-1")]}),
                     id="new regions replace only the expression healthscale added before"),
        pytest.param(required({"matchExpressions": [EU.requirement()]}, {"matchExpressions": [ARCH, EU.requirement()]}),
                     None, EU, required({"matchExpressions": [ARCH]}),
                     id="without a policy healthscale's own term goes and the user's term loses only its expression"),
        pytest.param(required({"matchExpressions": [EU.requirement()]}), None, EU, None,
                     id="without a policy an affinity healthscale created entirely is removed"),
        pytest.param(required({"matchExpressions": [expression(LABEL, "In", "eu-west-1", "us-east-1")]}), EU, None,
                     required({"matchExpressions": [expression(LABEL, "In", "eu-west-1", "us-east-1"),
                                                    EU.requirement()]}),
                     id="a user's own region expression stays and is ANDed with the policy"),
    ],
)
def test_merge_ands_the_requirement_into_each_term_and_keeps_the_rest(
        affinity: dict[str, Any] | None, policy: residency.Policy | None, owned: residency.Policy | None,
        expected: dict[str, Any] | None) -> None:
    before = copy.deepcopy(affinity)
    assert residency.merge(affinity, policy, owned) == expected
    assert affinity == before, "merge must not modify its input"


KEYS = st.sampled_from(["kubernetes.io/arch", "topology.kubernetes.io/zone", "disk", LABEL, "pool"])
VALUES = st.lists(st.sampled_from(["a", "b", "eu-west-1", "us-east-1", "amd64"]), min_size=1, max_size=3, unique=True)


@st.composite
def expressions(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    found = {"key": draw(KEYS), "operator": operator}
    if operator in ("In", "NotIn"):
        found["values"] = draw(VALUES)
    return found


@st.composite
def affinities(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    terms = []
    for _ in range(draw(st.integers(1, 4))):
        term: dict[str, Any] = {}
        chosen = draw(st.lists(expressions(), max_size=3))
        if chosen:
            term["matchExpressions"] = chosen
        if draw(st.integers(0, 4)) == 0:
            term["matchFields"] = [expression("metadata.name", "In", "node-1")]
        terms.append(term)
    affinity = required(*terms)
    if draw(st.booleans()):
        affinity["nodeAffinity"].update(copy.deepcopy(PREFERRED))
    return affinity


POLICIES = st.builds(residency.Policy, st.just(LABEL),
                     st.lists(st.sampled_from(["eu-west-1", "eu-central-1", "ap-south-1"]), min_size=1, max_size=3,
                              unique=True).map(tuple))
PROPERTIES = settings(max_examples=300, deadline=None)


@PROPERTIES
@given(affinities(), POLICIES)
def test_merging_keeps_every_existing_term_and_expression(affinity: dict[str, Any] | None,
                                                          policy: residency.Policy) -> None:
    merged = residency.merge(affinity, policy)
    before, after = terms_of(affinity), terms_of(merged)
    if before:
        assert len(after) == len(before)
        for old, new in zip(before, after):
            for item in old.get("matchExpressions", []):
                assert item in new.get("matchExpressions", [])
            assert old.get("matchFields") == new.get("matchFields")
    if affinity is not None:
        assert (merged or {})["nodeAffinity"].get("preferredDuringSchedulingIgnoredDuringExecution") == \
            affinity["nodeAffinity"].get("preferredDuringSchedulingIgnoredDuringExecution")


@PROPERTIES
@given(affinities(), POLICIES)
def test_after_merging_every_term_that_can_match_requires_the_regions(affinity: dict[str, Any] | None,
                                                                      policy: residency.Policy) -> None:
    merged = residency.merge(affinity, policy)
    for term in terms_of(merged):
        if term.get("matchExpressions") or term.get("matchFields"):
            assert any(item.get("key") == policy.label and item.get("operator") == "In"
                       and set(item["values"]) == set(policy.regions) for item in term["matchExpressions"])
    assert residency.check({"affinity": merged}, policy).allowed


@PROPERTIES
@given(affinities(), POLICIES)
def test_merging_twice_changes_nothing(affinity: dict[str, Any] | None, policy: residency.Policy) -> None:
    once = residency.merge(affinity, policy)
    assert residency.merge(once, policy, owned=policy) == once
    assert residency.merge(once, policy) == once


@PROPERTIES
@given(affinities(), POLICIES, POLICIES)
def test_changing_the_regions_is_the_same_as_merging_the_new_ones_from_scratch(
        affinity: dict[str, Any] | None, first: residency.Policy, second: residency.Policy) -> None:
    # Only when the user did not write healthscale's exact expression themselves (then it is theirs).
    assume(not any(item.get("key") == LABEL and item.get("operator") == "In"
                   and set(item.get("values", ())) == set(first.regions)
                   for term in terms_of(affinity) for item in term.get("matchExpressions", [])))
    assert residency.merge(residency.merge(affinity, first), second, owned=first) == residency.merge(affinity, second)


# ---------------------------------------------------------------------------------------- check


@pytest.mark.parametrize(
    ("pod_spec", "node_labels", "allowed", "says"),
    [
        pytest.param({}, None, False, "neither a nodeSelector on topology.kubernetes.io/region nor a required node",
                     id="a pod without constraints is refused and told what to add"),
        pytest.param({"nodeSelector": {LABEL: "eu-west-1"}}, None, True, "allowed region",
                     id="a nodeSelector on an allowed region is enough"),
        pytest.param({"nodeSelector": {LABEL: "us-east-1"}}, None, False,
                     "nodeSelector topology.kubernetes.io/region=us-east-1 is outside",
                     id="a nodeSelector on another region is refused and named"),
        pytest.param({"affinity": required({"matchExpressions": [EU.requirement()]})}, None, True, "every required",
                     id="a required term on the allowed regions is enough"),
        pytest.param({"affinity": required({"matchExpressions": [EU.requirement()]}, {"matchExpressions": [ARCH]})},
                     None, False, "term 2 of 2 does not restrict topology.kubernetes.io/region",
                     id="a second term without the region is a way around the first and is named"),
        pytest.param({"affinity": required({"matchExpressions": [expression(LABEL, "In", "eu-west-1", "us-east-1")]})},
                     None, False, "admits topology.kubernetes.io/region us-east-1",
                     id="a term that admits one region too many names that region"),
        pytest.param({"affinity": required({"matchExpressions": [expression(LABEL, "In", "eu-west-1", "us-east-1"),
                                                                 expression(LABEL, "NotIn", "us-east-1")]})},
                     None, True, "every required", id="In minus NotIn inside one term is what counts"),
        pytest.param({"affinity": required({"matchExpressions": [expression(LABEL, "DoesNotExist")]})}, None, False,
                     "only nodes without", id="a term for unlabelled nodes is refused"),
        pytest.param({"affinity": required({"matchExpressions": [expression(LABEL, "Exists")]})}, None, False,
                     "does not restrict", id="requiring only that the label exists is not a region"),
        pytest.param({"affinity": required({}, {"matchExpressions": [EU.requirement()]})}, None, True, "every required",
                     id="an empty term matches no node so it cannot leak"),
        pytest.param({"affinity": {"nodeAffinity": PREFERRED}}, None, False, "nor a required node affinity",
                     id="preferred terms alone guarantee nothing"),
        pytest.param({"nodeName": "kwok-us-east-1a", "nodeSelector": {LABEL: "eu-west-1"}}, {LABEL: "us-east-1"}, False,
                     "spec.nodeName kwok-us-east-1a has region us-east-1",
                     id="a pod that names a node in another region is refused"),
        pytest.param({"nodeName": "bare", "nodeSelector": {LABEL: "eu-west-1"}}, {}, False,
                     "has no topology.kubernetes.io/region label", id="a pod that names an unlabelled node is refused"),
    ],
)
def test_check_says_whether_constraints_keep_a_pod_in_its_regions(
        pod_spec: dict[str, Any], node_labels: dict[str, str] | None, allowed: bool, says: str) -> None:
    verdict = residency.check(pod_spec, EU, node_labels)
    assert verdict.allowed is allowed
    assert says in verdict.message


# ---------------------------------------------------------------------------------- audit, shortfall

NODES = {
    "kwok-eu-west-1a": {LABEL: "eu-west-1"},
    "kwok-us-east-1a": {LABEL: "us-east-1"},
    "bare": {},
}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([residency.Pod("a", "kwok-eu-west-1a", "Running")], [], id="a pod in an allowed region is fine"),
        pytest.param([residency.Pod("b", "kwok-us-east-1a", "Running"), residency.Pod("a", "kwok-eu-west-1a", "Running")],
                     [("b", "kwok-us-east-1a", "us-east-1")], id="a pod in another region is reported with its region"),
        pytest.param([residency.Pod("c", "bare", "Running")], [("c", "bare", "unlabelled")],
                     id="a pod on an unlabelled node is reported as unlabelled"),
        pytest.param([residency.Pod("d", "gone", "Running")], [("d", "gone", "unlabelled")],
                     id="a pod on a node that no longer exists is reported as unlabelled"),
        pytest.param([residency.Pod("e", None)], [], id="a pod not yet scheduled runs nowhere"),
        pytest.param([residency.Pod("f", "kwok-us-east-1a", "Succeeded")], [], id="a finished pod holds nothing"),
    ],
)
def test_audit_lists_each_pod_outside_the_regions(pods: list[residency.Pod],
                                                  expected: list[tuple[str, str, str]]) -> None:
    assert [(item.pod, item.node, item.region) for item in residency.audit(pods, NODES, EU)] == expected


def test_a_shortfall_counts_unschedulable_pods_and_names_regions_without_nodes() -> None:
    policy = residency.Policy(LABEL, ("eu-west-1", "ap-south-1"))
    pods = [
        residency.Pod("a", None, unschedulable=True, scheduler_message="0/6 nodes are available"),
        residency.Pod("b", None, unschedulable=True),
        residency.Pod("c", None),  # not tried yet
        residency.Pod("d", "kwok-eu-west-1a", "Running"),
    ]
    short = residency.shortfall(pods, NODES, policy)
    assert short == residency.Shortfall(2, ("eu-west-1", "ap-south-1"), ("ap-south-1",), "0/6 nodes are available")
    assert "2 replica(s) pending" in short.explain() and "no nodes at all in ap-south-1" in short.explain()
    assert "not relaxed" in short.explain()
    assert short.wire() == {"replicas": 2, "regions": ["eu-west-1", "ap-south-1"], "regionsWithoutNodes": ["ap-south-1"]}


def test_no_shortfall_while_every_pod_is_placed_or_untried() -> None:
    assert residency.shortfall([residency.Pod("a", "kwok-eu-west-1a", "Running"), residency.Pod("b")], NODES, EU) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("eu-west-1, eu-central-1", ("eu-west-1", "eu-central-1"), id="a comma list with spaces"),
        pytest.param("eu-west-1,,eu-west-1,", ("eu-west-1",), id="blanks and repeats are dropped"),
        pytest.param("", (), id="an empty annotation names no region"),
        pytest.param(None, (), id="a missing annotation names no region"),
    ],
)
def test_regions_are_parsed_from_a_comma_list(text: str | None, expected: tuple[str, ...]) -> None:
    assert residency.parse_regions(text) == expected


def test_a_policy_survives_its_annotation_and_garbage_decodes_to_none() -> None:
    assert residency.Policy.decode(EU.encode()) == EU
    assert residency.Policy.decode("{not json") is None
    assert residency.Policy.decode(None) is None
    with pytest.raises(ValueError, match="at least one region"):
        residency.Policy(LABEL, (" ",))


# ------------------------------------------------------------------------------ service (fake cluster)


@dataclasses.dataclass
class FakeCluster:
    """The residency client over in-memory objects; records writes and evictions."""

    affinity: dict[str, Any] | None = None
    owned: residency.Policy | None = None
    pods_: list[residency.Pod] = dataclasses.field(default_factory=list)
    nodes_: dict[str, dict[str, str]] = dataclasses.field(default_factory=lambda: dict(NODES))
    conflicts: int = 0
    blocked: set[str] = dataclasses.field(default_factory=set)
    writes: list[dict[str, Any] | None] = dataclasses.field(default_factory=list)
    evictions: list[str] = dataclasses.field(default_factory=list)
    namespace_labels: dict[str, str] = dataclasses.field(default_factory=dict)
    namespace_annotations: dict[str, str] = dataclasses.field(default_factory=dict)

    def read_template(self, namespace: str, kind: str, name: str) -> placement.Template:
        spec = {"affinity": copy.deepcopy(self.affinity)} if self.affinity else {}
        return placement.Template(kind, name, "7", "app=ehr-api", spec, self.owned)

    def write_required_affinity(self, namespace: str, template: placement.Template, required: dict[str, Any] | None,
                                owned: residency.Policy | None) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise kube.ApiError("HTTP 409 Conflict", retryable=True, status=409)
        self.writes.append(required)
        node_affinity = dict((self.affinity or {}).get("nodeAffinity") or {})
        node_affinity[REQUIRED] = required
        self.affinity = {**(self.affinity or {}), "nodeAffinity": node_affinity}
        self.owned = owned

    def pods(self, namespace: str, selector: str) -> list[residency.Pod]:
        return list(self.pods_)

    def nodes(self) -> dict[str, dict[str, str]]:
        return dict(self.nodes_)

    def evict(self, namespace: str, pod: str) -> placement.Eviction:
        if pod in self.blocked:
            return "blocked"
        self.evictions.append(pod)
        return "evicted"

    def namespace_metadata(self, name: str) -> tuple[dict[str, str], dict[str, str]]:
        return dict(self.namespace_labels), dict(self.namespace_annotations)


def slo(slo_document: dict[str, Any], mode: str = "Active", regions: list[str] | None = None) -> clinicalslo.ClinicalSLO:
    document = copy.deepcopy(slo_document)
    document["spec"]["mode"] = mode
    if regions is None:
        document["spec"].pop("residency")
    else:
        document["spec"]["residency"] = {"dataClass": "phi", "regions": regions}
    return clinicalslo.ClinicalSLO.model_validate(document)


def conditions(outcome: service.Outcome) -> dict[str, tuple[str, str]]:
    return {item.type: (item.status, item.reason) for item in outcome.conditions}


def test_an_active_slo_writes_the_merged_requirement_once_and_reports_compliance(
        slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(affinity=required({"matchExpressions": [ARCH]}),
                          pods_=[residency.Pod("p1", "kwok-eu-west-1a", "Running")])
    resource = slo(slo_document, regions=["eu-west-1", "eu-central-1"])
    outcome = service.run(resource, NOW, cluster, service.Settings(), NO_STATUS)
    assert cluster.writes == [{"nodeSelectorTerms": [{"matchExpressions": [ARCH, EU.requirement()]}]}]
    assert cluster.owned == EU
    assert conditions(outcome) == {"ResidencyCompliant": ("True", "PodsInAllowedRegions"),
                                   "ResidencyCapacityShortfall": ("False", "NoPendingReplicas"),
                                   "RegionLabelTrusted": ("False", "KubeletSettableLabel")}
    assert [event.reason for event in outcome.events] == ["ResidencyEnforced"]
    assert outcome.status == clinicalslo.ResidencyStatus(compliant=True, label=LABEL, regions=("eu-west-1", "eu-central-1"),
                                                         enforced=True, violations=(), shortfall=None, evicted=(),
                                                         label_trusted=False)
    again = service.run(resource, NOW + 60, cluster, service.Settings(),
                        clinicalslo.ClinicalSLOStatus(conditions=outcome.conditions))
    assert len(cluster.writes) == 1, "an enforced template is not written again"
    assert again.events == ()
    assert again.conditions[0].last_transition_time == outcome.conditions[0].last_transition_time


def test_preview_never_writes_and_says_the_template_is_not_restricted(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(pods_=[residency.Pod("p1", "kwok-eu-west-1a", "Running")])
    outcome = service.run(slo(slo_document, mode="Preview", regions=["eu-west-1"]), NOW, cluster, service.Settings(), NO_STATUS)
    assert cluster.writes == []
    assert conditions(outcome)["ResidencyCompliant"] == ("False", "TemplateNotRestricted")
    assert "Preview or dry run" in outcome.conditions[0].message
    assert outcome.status is not None and outcome.status.enforced is False


def test_a_concurrent_edit_is_merged_again_instead_of_failing(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(conflicts=1)
    service.run(slo(slo_document, regions=["eu-west-1"]), NOW, cluster, service.Settings(), NO_STATUS)
    assert len(cluster.writes) == 1


def test_violations_are_reported_with_pod_node_and_region_and_raise_an_event(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(pods_=[residency.Pod("p1", "kwok-us-east-1a", "Running"),
                                 residency.Pod("p2", "kwok-eu-west-1a", "Running")])
    outcome = service.run(slo(slo_document, regions=["eu-west-1"]), NOW, cluster, service.Settings(), NO_STATUS)
    assert outcome.report() == [{"pod": "p1", "node": "kwok-us-east-1a", "region": "us-east-1"}]
    assert conditions(outcome)["ResidencyCompliant"] == ("False", "PodsOutsideRegions")
    assert "1 on kwok-us-east-1a (us-east-1)" in outcome.conditions[0].message
    warning = next(event for event in outcome.events if event.reason == "ResidencyViolation")
    assert warning.type == "Warning" and "kwok-us-east-1a (us-east-1)" in warning.message
    assert "p1" not in warning.message and "p1" not in outcome.conditions[0].message, "pod names stay in status"
    assert cluster.evictions == [], "eviction is opt-in"


def test_evict_mode_evicts_violators_and_reports_those_a_budget_protects(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(pods_=[residency.Pod("p1", "kwok-us-east-1a", "Running"),
                                 residency.Pod("p2", "bare", "Running"),
                                 residency.Pod("p3", "kwok-us-east-1a", "Running", terminating=True)],
                          blocked={"p2"})
    outcome = service.run(slo(slo_document, regions=["eu-west-1"]), NOW, cluster, service.Settings(evict=True), NO_STATUS)
    assert cluster.evictions == ["p1"], "p2 is protected by its budget, p3 is already going"
    assert outcome.evicted == ("p1",)
    reasons = [event.reason for event in outcome.events]
    assert "ResidencyEvicted" in reasons and "ResidencyEvictionBlocked" in reasons


def test_evict_mode_holds_while_replacements_could_land_outside(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(pods_=[residency.Pod("p1", "kwok-us-east-1a", "Running")])
    outcome = service.run(slo(slo_document, mode="Preview", regions=["eu-west-1"]), NOW, cluster,
                          service.Settings(evict=True), NO_STATUS)
    assert cluster.evictions == []
    assert outcome.evicted == ()


def test_a_shortfall_is_a_condition_and_an_event_and_never_a_wider_requirement(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(pods_=[residency.Pod("p1", None, unschedulable=True)])
    outcome = service.run(slo(slo_document, regions=["ap-south-1"]), NOW, cluster, service.Settings(), NO_STATUS)
    assert conditions(outcome)["ResidencyCapacityShortfall"] == ("True", "AllowedRegionsFull")
    assert outcome.status is not None
    assert outcome.status.shortfall == clinicalslo.ResidencyShortfall(replicas=1, regions=("ap-south-1",),
                                                                      regions_without_nodes=("ap-south-1",))
    assert cluster.writes == [{"nodeSelectorTerms": [{"matchExpressions": [expression(LABEL, "In", "ap-south-1")]}]}]


def test_dropping_residency_from_the_slo_removes_only_what_healthscale_added(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(affinity=required({"matchExpressions": [ARCH, EU.requirement()]}), owned=EU)
    outcome = service.run(slo(slo_document, regions=None), NOW, cluster, service.Settings(), NO_STATUS)
    assert cluster.writes == [{"nodeSelectorTerms": [{"matchExpressions": [ARCH]}]}]
    assert cluster.owned is None
    assert outcome.status is None and outcome.conditions == ()


# ------------------------------------------------------------------------ settings and metrics


def test_the_run_command_takes_the_residency_settings() -> None:
    arguments = cli._parser().parse_args([
        "run", "--prometheus-url", "http://p:9090", "--region-label", "node-restriction.kubernetes.io/region",
        "--default-allowed-regions", "eu-west-1, eu-central-1", "--webhook-port", "9443", "--residency-evict"])
    assert arguments.region_label == "node-restriction.kubernetes.io/region"
    assert residency.parse_regions(arguments.default_allowed_regions) == ("eu-west-1", "eu-central-1")
    assert arguments.webhook_port == 9443 and arguments.webhook_host == "127.0.0.1"
    assert arguments.residency_evict is True
    defaults = cli._parser().parse_args(["run", "--prometheus-url", "http://p:9090"])
    assert defaults.region_label == LABEL and defaults.webhook_port == 0 and not defaults.residency_evict


def test_residency_metrics_follow_the_outcome_and_are_forgotten(slo_document: dict[str, Any]) -> None:
    cluster = FakeCluster(pods_=[residency.Pod("p1", "kwok-us-east-1a", "Running"), residency.Pod("p2", None, unschedulable=True)])
    outcome = service.run(slo(slo_document, regions=["eu-west-1", "ap-south-1"]), NOW, cluster, service.Settings(), NO_STATUS)
    metrics.record_residency("ehr", "metrics-test", outcome)
    registry = prometheus_client.REGISTRY
    assert registry.get_sample_value("healthscale_residency_target_violations", {"namespace": "ehr", "clinicalslo": "metrics-test"}) == 1
    assert registry.get_sample_value("healthscale_residency_shortfall_replicas",
                                     {"namespace": "ehr", "clinicalslo": "metrics-test", "region": "ap-south-1"}) == 1
    metrics.forget("ehr", "metrics-test")
    assert registry.get_sample_value("healthscale_residency_target_violations", {"namespace": "ehr", "clinicalslo": "metrics-test"}) is None
