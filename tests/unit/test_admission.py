"""The residency admission decision without a cluster (``service.admission``).

- default deny: in an enforced namespace an unlabelled pod is the namespace's default class, and
  only ``none`` exempts a pod;
- updates: a label change is checked against the node the pod already runs on;
- no pod data in what the decision says (hypothesis: whatever the pod is called and labelled);
- the AdmissionReview in and out, the webhook configuration, and the run command's webhook options.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from healthscale import cli
from healthscale.domain import residency as rules
from healthscale.runtime import webhook
from healthscale.service import admission, residency

with warnings.catch_warnings():  # see test_planning_properties.py
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

LABEL = rules.DEFAULT_REGION_LABEL
CLASS = residency.DATA_CLASS_LABEL
ENFORCED = {residency.OPT_IN_LABEL: residency.OPT_IN_VALUE}
EU = {residency.ALLOWED_REGIONS_ANNOTATION: "eu-west-1,eu-central-1"}
NODES = {"eu-node": {LABEL: "eu-west-1"}, "us-node": {LABEL: "us-east-1"}, "bare-node": {}}
IN_EU = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [{"key": LABEL, "operator": "In", "values": ["eu-west-1"]}]}]}}}}


def pinned_to(node: str) -> dict[str, Any]:
    """The required affinity the DaemonSet controller gives each of its pods: this node, by name."""
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}


def pod(labels: dict[str, str] | None = None, name: str = "chart-0", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def namespace(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> admission.Namespace:
    return admission.Namespace(ENFORCED if labels is None else labels, EU if annotations is None else annotations)


def decide(new: dict[str, Any], old: dict[str, Any] | None = None, space: admission.Namespace | None = None,
           operation: str | None = None, settings_: residency.Settings | None = None) -> admission.Decision:
    request = admission.Request("uid-1", operation or ("UPDATE" if old is not None else "CREATE"), "ehr", new, old)
    return admission.decide(request, space or namespace(), NODES.get, settings_ or residency.Settings())


CREATE_CASES = [
    pytest.param(pod(), namespace(), False, "phi", "no healthscale.io/data-class label, so the namespace's default phi",
                 id="an unlabelled pod in an enforced namespace is phi data and is refused without constraints"),
    pytest.param(pod(), namespace(annotations={**EU, residency.DEFAULT_CLASS_ANNOTATION: "pii"}), False, "pii",
                 "default pii", id="the namespace annotation sets the default class of unlabelled pods"),
    pytest.param(pod(**IN_EU), namespace(), True, "phi", "every required node affinity term restricts",
                 id="an unlabelled pod that requires an allowed region is admitted as the default class"),
    pytest.param(pod({CLASS: "none"}), namespace(), True, "none", "no patient data",
                 id="only an explicit data-class none exempts a pod"),
    pytest.param(pod({CLASS: "PHI"}), namespace(), False, "unknown", "is not phi, pii or none",
                 id="a data class the operator does not know is checked as patient data"),
    pytest.param(pod({CLASS: "pii"}, nodeSelector={LABEL: "eu-west-1"}), namespace(), True, "pii", "allowed region",
                 id="a patient-data pod pinned to an allowed region by nodeSelector is admitted"),
    pytest.param(pod({CLASS: "phi"}, nodeSelector={LABEL: "us-east-1"}), namespace(), False, "phi",
                 "nodeSelector topology.kubernetes.io/region=us-east-1 is outside the allowed regions",
                 id="a pod pinned outside the allowed regions is refused with the region it named"),
    pytest.param(pod({CLASS: "phi"}, nodeName="ghost", **IN_EU), namespace(), False, "phi", "spec.nodeName ghost has no",
                 id="a pod naming a node the cache does not know is refused"),
    pytest.param(pod(affinity=pinned_to("eu-node")), namespace(), True, "phi", "every required node affinity term",
                 id="a DaemonSet pod pinned by matchFields to a node in an allowed region is admitted"),
    pytest.param(pod(affinity=pinned_to("us-node")), namespace(), False, "phi",
                 "term 1 of 1 names node(s) us-node, not in an allowed region",
                 id="a DaemonSet pod pinned by matchFields to a node elsewhere is refused"),
    pytest.param(pod(affinity=pinned_to("ghost")), namespace(), False, "phi", "names node(s) ghost",
                 id="a pod pinned to a node the cache does not know is refused"),
    pytest.param(pod(), namespace(labels={}), True, "", "does not enforce",
                 id="a namespace that does not enforce residency is not checked"),
    pytest.param(pod(**IN_EU), namespace(annotations={}), False, "phi", "allows no region",
                 id="an enforced namespace without allowed regions admits no patient data"),
]


@pytest.mark.parametrize(("new", "space", "allowed", "data_class", "says"), CREATE_CASES)
def test_creating_a_pod_in_an_enforced_namespace(new: dict[str, Any], space: admission.Namespace, allowed: bool,
                                                 data_class: str, says: str) -> None:
    decision = decide(new, space=space)
    assert (decision.allowed, decision.data_class) == (allowed, data_class)
    assert says in decision.message
    assert "chart-0" not in decision.message
    assert bool(decision.missing) is not allowed


def test_without_the_annotation_the_operator_default_regions_apply_within_the_cluster_allow_list() -> None:
    space = namespace(annotations={})
    assert decide(pod(**IN_EU), space=space, settings_=residency.Settings(default_regions=("eu-west-1",))).allowed
    clipped = decide(pod(**IN_EU), space=namespace(), settings_=residency.Settings(allowed_regions=("eu-central-1",)))
    assert not clipped.allowed
    assert "must stay in eu-central-1" in clipped.message


def test_a_namespace_the_cache_does_not_know_is_refused_until_it_does() -> None:
    request = admission.Request("uid-1", "CREATE", "brand-new", pod(**IN_EU))
    decision = admission.decide(request, None, NODES.get, residency.Settings())
    assert not decision.allowed and "does not know namespace brand-new yet" in decision.message


UPDATE_CASES = [
    pytest.param(pod({CLASS: "none"}, nodeName="us-node"), pod({CLASS: "phi"}, nodeName="us-node"), False,
                 "it runs on node us-node, which has region us-east-1",
                 id="a running pod cannot be relabelled into a class whose regions exclude its node"),
    pytest.param(pod({CLASS: "none"}, nodeName="us-node"), pod({}, nodeName="us-node"), False, "us-east-1",
                 id="removing the none label from a running pod makes it the default class and is checked"),
    pytest.param(pod({CLASS: "none"}, nodeName="eu-node"), pod({CLASS: "phi"}, nodeName="eu-node"), True, "eu-node",
                 id="relabelling a pod that already runs in an allowed region is allowed"),
    pytest.param(pod({CLASS: "none"}, nodeName="bare-node"), pod({CLASS: "pii"}, nodeName="bare-node"), False,
                 "no topology.kubernetes.io/region label", id="a node without the region label is not allowed"),
    pytest.param(pod({CLASS: "phi"}), pod({CLASS: "pii"}), False, "it has neither a nodeSelector",
                 id="relabelling a pod that is not scheduled yet checks its constraints"),
    pytest.param(pod({CLASS: "phi"}, nodeName="us-node"), pod({CLASS: "phi", "app": "x"}, nodeName="us-node"), True,
                 "neither the data class nor the scheduling constraints changed",
                 id="an update that changes neither class nor constraints is left to the audit"),
    pytest.param(pod({CLASS: "phi"}, nodeName="us-node"), pod({CLASS: "none"}, nodeName="us-node"), True,
                 "no patient data", id="relabelling a pod none is a declaration, allowed"),
    pytest.param({**pod({CLASS: "none"}, nodeName="us-node"), "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}},
                 pod({CLASS: "phi"}, nodeName="us-node"), True, "being deleted",
                 id="a pod being deleted is not checked"),
    pytest.param(pod({CLASS: "phi"}), pod({CLASS: "phi"}, nodeSelector={LABEL: "us-east-1"}), False,
                 "us-east-1 is outside", id="a gated pod given constraints outside the regions is refused"),
]


@pytest.mark.parametrize(("old", "new", "allowed", "says"), UPDATE_CASES)
def test_updating_a_pod_checks_label_changes_against_where_it_runs(old: dict[str, Any], new: dict[str, Any],
                                                                     allowed: bool, says: str) -> None:
    decision = decide(new, old)
    assert decision.allowed is allowed
    assert says in decision.message


@pytest.mark.parametrize(("operation", "resource", "subresource"), [
    pytest.param("DELETE", "pods", "", id="deletions are not checked"),
    pytest.param("CREATE", "pods", "binding", id="subresources (binding, status) are not checked"),
    pytest.param("UPDATE", "deployments", "", id="other resources are not checked"),
])
def test_only_pod_creations_and_updates_are_checked(operation: str, resource: str, subresource: str) -> None:
    request = admission.Request("uid-1", operation, "ehr", pod(), None, resource, subresource)
    assert admission.decide(request, namespace(), NODES.get, residency.Settings()).allowed


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=6, max_size=40).map(lambda text: f"zq{text}")


@settings(max_examples=200, deadline=None)
@given(name=NAMES, key=NAMES, value=NAMES, data_class=st.sampled_from(["phi", "pii", "none", None, "zqsecret"]),
       update=st.booleans(), spec=st.sampled_from([{}, IN_EU, {"nodeSelector": {LABEL: "us-east-1"}},
                                                     {"nodeName": "us-node"}]))
def test_no_decision_repeats_the_pods_name_or_its_other_labels(name: str, key: str, value: str, data_class: str | None,
                                                                update: bool, spec: dict[str, Any]) -> None:
    labels = {f"example.org/{key}": value, **({CLASS: data_class} if data_class else {})}
    new = pod(labels, name=name, **spec)
    new["metadata"]["generateName"] = f"{name}-"
    old = pod({CLASS: "none"}, name=name, **spec) if update else None
    decision = decide(new, old)
    for text in (decision.message, decision.missing, decision.data_class):
        assert name not in text and key not in text and value not in text
        if data_class == "zqsecret":
            assert "zqsecret" not in text


def test_an_admission_review_is_read_and_answered() -> None:
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "705ab4f5", "operation": "CREATE", "namespace": "ehr",
                          "resource": {"group": "", "version": "v1", "resource": "pods"}, "object": pod()}}
    request = admission.parse(review)
    assert (request.uid, request.operation, request.namespace, request.resource) == ("705ab4f5", "CREATE", "ehr", "pods")
    decision = admission.decide(request, namespace(), NODES.get, residency.Settings())
    answer = admission.response(request.uid, decision)
    assert answer["response"]["uid"] == "705ab4f5" and answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 403
    assert answer["response"]["status"]["message"] == decision.message
    assert "status" not in admission.response("x", admission.Decision(True, "fine"))["response"]


@pytest.mark.parametrize("body", [
    pytest.param([], id="a list"),
    pytest.param({"kind": "Pod"}, id="another kind"),
    pytest.param({"kind": "AdmissionReview", "request": {}}, id="a request without uid"),
])
def test_anything_but_an_admission_review_is_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        admission.parse(body)


def test_the_configuration_selects_every_pod_but_none_in_enforced_namespaces_and_fails_closed() -> None:
    body = admission.configuration("hs", service=("healthscale-system", "hs-webhook", 9443), ca_bundle="Q0E=")
    (hook,) = body["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["namespaceSelector"] == {"matchLabels": {"healthscale.io/residency": "enforced"}}
    assert hook["objectSelector"] == {"matchExpressions": [
        {"key": "healthscale.io/data-class", "operator": "NotIn", "values": ["none"]}]}
    assert hook["rules"][0]["resources"] == ["pods"] and hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert hook["clientConfig"] == {"service": {"namespace": "healthscale-system", "name": "hs-webhook", "port": 9443,
                                               "path": "/residency"}, "caBundle": "Q0E="}
    assert hook["matchConditions"][0]["expression"].startswith("request.operation != 'UPDATE'")
    by_url = admission.configuration("hs", url="https://127.0.0.1:9443/residency")
    assert by_url["webhooks"][0]["clientConfig"] == {"url": "https://127.0.0.1:9443/residency"}


@pytest.mark.parametrize(("patterns", "expected"), [
    pytest.param((), None, id="an operator serving every namespace adds no condition"),
    pytest.param(("ehr", "portal"),
                 "(request.namespace.matches('^ehr$') || request.namespace.matches('^portal$'))",
                 id="named namespaces become one condition"),
    pytest.param(("hs-*", "!hs-test?"),
                 "(request.namespace.matches('^hs-.*$')) && !request.namespace.matches('^hs-test.$')",
                 id="globs become anchored regular expressions and ! excludes"),
    pytest.param(("!kube-system",), "(true) && !request.namespace.matches('^kube-system$')",
                 id="only exclusions serve every other namespace"),
])
def test_an_operator_limited_to_namespaces_judges_only_those(patterns: tuple[str, ...], expected: str | None) -> None:
    assert admission.served_namespaces(patterns) == expected
    conditions = admission.configuration("hs", url="https://127.0.0.1:9443/residency",
                                         namespaces=patterns)["webhooks"][0]["matchConditions"]
    assert [c["expression"] for c in conditions if c["name"] == "served-namespaces"] == ([expected] if expected else [])


def test_a_namespace_pattern_that_cannot_be_a_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match=r"--namespace 'ehr\[12\]'"):
        admission.served_namespaces(("ehr[12]",))


def test_the_run_command_passes_its_namespaces_to_the_webhook() -> None:
    arguments = cli._parser().parse_args(["run", "--prometheus-url", "http://p:9090", "--webhook-port", "9443",
                                          "--namespace", "ehr"])
    assert cli._webhook(arguments).namespaces == ("ehr",)


def test_the_run_command_takes_the_webhook_settings() -> None:
    arguments = cli._parser().parse_args([
        "run", "--prometheus-url", "http://p:9090", "--webhook-port", "9443", "--webhook-service", "hs/hs-webhook",
        "--webhook-cert-source", "cert-manager", "--webhook-cert-secret", "hs/hs-webhook-tls",
        "--webhook-cert-lifetime", "30d", "--webhook-configuration", "hs-residency"])
    config = cli._webhook(arguments)
    assert config == webhook.Config(port=9443, service=("hs", "hs-webhook"), configuration_name="hs-residency",
                                    cert_source="cert-manager", cert_secret=("hs", "hs-webhook-tls"),
                                    cert_lifetime=30 * 86400.0)
    assert config.names == ["hs-webhook.hs.svc", "hs-webhook.hs.svc.cluster.local"]
    defaults = cli._webhook(cli._parser().parse_args(["run", "--prometheus-url", "http://p:9090"]))
    assert defaults.port == 0 and defaults.cert_source == "operator" and defaults.cert_lifetime == 90 * 86400.0
    assert defaults.secret[1] == "healthscale-residency-cert" and defaults.names == ["127.0.0.1"]


@pytest.mark.parametrize(("option", "value", "says"), [
    pytest.param("--webhook-service", "hs-webhook", "must be NAMESPACE/NAME", id="a Service without its namespace"),
    pytest.param("--webhook-cert-lifetime", "30", "--webhook-cert-lifetime: '30' is not a duration",
                 id="a lifetime without unit"),
    pytest.param("--webhook-cert-lifetime", "30s", "must be at least 1m", id="a lifetime under a minute"),
])
def test_bad_webhook_options_name_the_option(option: str, value: str, says: str) -> None:
    arguments = cli._parser().parse_args(["run", "--prometheus-url", "http://p:9090", option, value])
    with pytest.raises(ValueError, match=says):
        cli._webhook(arguments)
