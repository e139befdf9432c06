"""The chart grants the operator's ServiceAccount exactly what the operator uses: no more, no less.

What the operator needs is derived from its code, not copied from the chart:

* the Kubernetes client calls: every ``<api>.<verb>_<resource>`` in operator/healthscale (called, or
  passed to ``kube.Api.json``) whose method belongs to a kubernetes.client API class is found by AST, and mapped to (apiGroup,
  resource, verb), where it is needed (where ClinicalSLOs are served, or cluster-wide) and under
  which chart setting, through CLIENT_CALLS below. A new call without a row fails the test; each
  row is checked against the request the client really sends (HTTP method and URL), so a wrong
  row fails too;
* what Kopf does for the handlers: the resources the handlers are registered for (AST of
  runtime/handlers.py) get list/watch/patch, and patch on /status where their CRD has that
  subresource; plus Events, CRD and namespace observation and peering, per the KOPF_* tables,
  which cite the Kopf code that makes each request.

Then the chart is rendered for each RBAC shape (cluster-wide or namespaced, with or without
peering and discovery) and for every combination of the features that need rights of their own
(residency on or off, the webhook on or off, pod-deletion-cost on or off; PrometheusRules and node
warm-up on their own, and node warm-up with residency, since both patch Deployments), and the
effective grants of the ServiceAccount (its bindings' roles, expanded to single (scope, apiGroup,
resource, verb, resourceName) tuples) are compared with the expected set. The integration test
(tests/integration/test_chart_install.py) then runs the real operator with the chart's
ServiceAccount token to show that the set suffices.
"""

from __future__ import annotations

import ast
import json
import dataclasses
import inspect
import re
import itertools
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from chartlib import REPO_ROOT, Helm
from healthscale.runtime import webhook

pytestmark = pytest.mark.chart

OPERATOR_SOURCE = REPO_ROOT / "operator" / "healthscale"
HANDLERS = OPERATOR_SOURCE / "runtime" / "handlers.py"
CRDS = REPO_ROOT / "crds"

# A grant: (scope, apiGroup, resource, verb, resourceName). scope is "*" for a cluster-wide grant
# (ClusterRoleBinding) or a namespace name (RoleBinding); resourceName "*" means any name.
Grant = tuple[str, str, str, str, str]
Rule = tuple[str, str, str]  # (apiGroup, resource, verb)
# Client methods that make an API request: <verb>_<resource...>. (Excludes helpers like close().)
REQUEST_METHOD = re.compile(r"^(read|list|create|patch|replace|delete|connect|get)_")



@dataclasses.dataclass(frozen=True)
class Need:
    """One permission the operator needs for a client call."""

    rule: Rule
    where: str = "served"
    """"served": in each watched namespace (everywhere when cluster-wide); "cluster": cluster-wide;
    "release": the release's (the operator's own) namespace."""
    when: str | None = None
    """The chart features that turn the code path on; None: always. Alternatives joined by " or ",
    features that must all be on by "+": "residency or deletion-cost", "residency+evict". Features:
    residency, webhook, evict, deletion-cost, prometheus-rules, node-warmup, keda, deferral, peering, clusterwide,
    namespaced (and namespace-observation, which Kopf's own rules cover, see KOPF_NAMESPACE_OBSERVATION)."""
    name: str = "*"
    """The one object it applies to, when the call names a fixed object."""
    api: str | None = None
    """The client class the operator calls it on, when several classes have the method."""

    def applies(self, features: set[str]) -> bool:
        return self.when is None or any(set(alternative.split("+")) <= features
                                        for alternative in self.when.split(" or "))


def needs_of(method: str) -> tuple[Need, ...]:
    found = CLIENT_CALLS[method]
    return found if isinstance(found, tuple) else (found,)


FULLNAME, RELEASE_SCOPE = "hs-healthscale", "healthscale-system"
"""The release the RBAC shapes are rendered as (names with {fullname} in them are its objects)."""
SECRET = "{fullname}-webhook-cert"

# The operator's Kubernetes client calls -> the RBAC rule each needs. Explicit on purpose: a
# reviewer sees every permission next to the call that needs it.
CLIENT_CALLS: dict[str, Need | tuple[Need, ...]] = {
    # adapters/kube.py: read the target, scale it, move an HPA's floor, order a scale-down.
    "read_namespaced_deployment": Need(("apps", "deployments", "get")),
    "read_namespaced_stateful_set": Need(("apps", "statefulsets", "get")),
    "patch_namespaced_deployment_scale": Need(("apps", "deployments/scale", "patch")),
    "patch_namespaced_stateful_set_scale": Need(("apps", "statefulsets/scale", "patch")),
    "list_namespaced_horizontal_pod_autoscaler": Need(("autoscaling", "horizontalpodautoscalers", "list")),
    "patch_namespaced_horizontal_pod_autoscaler": Need(("autoscaling", "horizontalpodautoscalers", "patch")),
    # adapters/kube.py (the pods a scale-down costs), adapters/placement.py (a target's pods) and
    # adapters/audit.py (every pod of an enforced namespace).
    "list_namespaced_pod": Need(("", "pods", "list"), when="residency or deletion-cost"),
    "patch_namespaced_pod": Need(("", "pods", "patch"), when="deletion-cost"),
    # runtime/handlers.py via adapters/kube.py: SurgeSchedules' next windows, refreshed each cycle.
    # (The same call writes ClinicalSLO status.originals, which Kopf's rules grant already.)
    "patch_namespaced_custom_object_status": Need(("healthscale.io", "surgeschedules/status", "patch")),
    # adapters/kube.py ClinicalSLOs, for runtime/sweeper.py and `healthscale release`: list the
    # ClinicalSLOs (all namespaces only when serving the whole cluster) and remove healthscale's
    # finalizer; rules Kopf's own watching and patching need anyway.
    # adapters/audit.py: the residency audit reads Kopf's peering object to know whether this
    # replica is the active one (rights Kopf's peering needs anyway).
    "list_cluster_custom_object": (Need(("healthscale.io", "clinicalslos", "list")),
                                   Need(("kopf.dev", "clusterkopfpeerings", "list"),
                                        when="residency+peering+clusterwide")),
    # adapters/kube.py Workloads (keda.enabled): the KEDA ScaledObjects scaling a target, whose
    # minReplicaCount healthscale moves (adapters/kinds.py FLOORS names the calls).
    # adapters/deferrables.py (deferral.enabled): what a SurgeSchedule's spec.defer selects, by label,
    # and one object by name (a list by field selector, so no get); adapters/kinds.py DEFERRABLES
    # names the kinds. The SurgeSchedules and HPAs it lists are Kopf's and the floor's rules already.
    "list_namespaced_custom_object": (Need(("healthscale.io", "clinicalslos", "list")),
                                      Need(("kopf.dev", "kopfpeerings", "list"), when="residency+peering+namespaced"),
                                      Need(("keda.sh", "scaledobjects", "list"), when="keda"),
                                      Need(("healthscale.io", "surgeschedules", "list")),
                                      Need(("autoscaling", "horizontalpodautoscalers", "list")),
                                      Need(("apps", "deployments", "list"), when="deferral"),
                                      Need(("apps", "statefulsets", "list"), when="deferral"),
                                      Need(("batch", "cronjobs", "list"), when="deferral"),
                                      Need(("batch", "jobs", "list"), when="deferral")),
    # ... and (prometheusRules.enabled) service/rule_sync.py via adapters/kube.py: a PrometheusRule per
    # ClinicalSLO, server-side applied, created when missing, deleted when nothing is measured.
    "patch_namespaced_custom_object": (
        Need(("healthscale.io", "clinicalslos", "patch")),
        Need(("monitoring.coreos.com", "prometheusrules", "patch"), when="prometheus-rules"),
        Need(("keda.sh", "scaledobjects", "patch"), when="keda"),
        Need(("healthscale.io", "surgeschedules", "patch")),
        Need(("apps", "deployments", "patch"), when="deferral"),
        Need(("apps", "statefulsets", "patch"), when="deferral"),
        Need(("batch", "cronjobs", "patch"), when="deferral"),
        Need(("batch", "jobs", "patch"), when="deferral")),
    "create_namespaced_custom_object": Need(("monitoring.coreos.com", "prometheusrules", "create"),
                                            when="prometheus-rules"),
    "delete_namespaced_custom_object": Need(("monitoring.coreos.com", "prometheusrules", "delete"),
                                            when="prometheus-rules"),
    # runtime/sweeper.py: a Warning/Normal Event on each ClinicalSLO it releases (core v1, as Kopf's);
    # adapters/audit.py: a Warning Event on each pod outside its namespace's regions.
    "create_namespaced_event": Need(("", "events", "create"), api="CoreV1Api"),
    # runtime/sweeper.py, serving listed namespaces: which are Terminating. The chart grants it with
    # rbac.clusterDiscovery (Kopf's namespace observation); without it the sweeper falls back to
    # the exact names, so the chart does not need it for the sweeper ("when" never set).
    # adapters/audit.py (residency): the namespaces labelled healthscale.io/residency=enforced.
    # runtime/webhook.py via adapters/watchcache.py: every namespace's labels and annotations and
    # every node's labels, kept by list and watch.
    "list_namespace": (Need(("", "namespaces", "list"), where="cluster", when="namespace-observation or residency or webhook"),
                       Need(("", "namespaces", "watch"), where="cluster", when="webhook")),
    # adapters/placement.py, the residency cycle: the pod template's required node affinity, where
    # the pods run, and (residency.evict) evictions; adapters/audit.py: node labels.
    # ... and (nodeWarmup.enabled) service/room.py via adapters/kube.py Placeholders: a placeholder
    # Deployment per ClinicalSLO, server-side applied, created when missing, deleted when it is to
    # hold no room.
    "patch_namespaced_deployment": Need(("apps", "deployments", "patch"), when="residency or node-warmup"),
    "create_namespaced_deployment": Need(("apps", "deployments", "create"), when="node-warmup"),
    "delete_namespaced_deployment": Need(("apps", "deployments", "delete"), when="node-warmup"),
    "patch_namespaced_stateful_set": Need(("apps", "statefulsets", "patch"), when="residency"),
    "list_node": (Need(("", "nodes", "list"), where="cluster", when="residency or webhook"),
                  Need(("", "nodes", "watch"), where="cluster", when="webhook")),
    "create_namespaced_pod_eviction": Need(("", "pods/eviction", "create"), when="residency+evict"),
    # adapters/placement.py, the residency cycle (the ClinicalSLO's namespace bounds its regions),
    # and the admission webhook's own configuration
    # (created empty by the chart; the operator fills it in).
    "read_namespace": Need(("", "namespaces", "get"), where="cluster", when="residency"),
    "patch_validating_webhook_configuration": Need(
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations", "patch"), where="cluster",
        when="webhook", name="{fullname}-residency"),
    # adapters/certificates.py and the webhook's Secret cache: its certificate, in the release
    # namespace, by name; issued (created, then renewed in place) only with certificate source operator.
    "read_namespaced_secret": Need(("", "secrets", "get"), where="release", when="webhook", name=SECRET),
    "list_namespaced_secret": (Need(("", "secrets", "list"), where="release", when="webhook", name=SECRET),
                               Need(("", "secrets", "watch"), where="release", when="webhook", name=SECRET)),
    "replace_namespaced_secret": Need(("", "secrets", "update"), where="release", when="webhook+operator-cert",
                                      name=SECRET),
    "create_namespaced_secret": Need(("", "secrets", "create"), where="release", when="webhook+operator-cert"),
}

# What Kopf (1.45) requests by itself, wherever the operator serves ClinicalSLOs:
KOPF_SERVING: set[Rule] = {
    # kopf/_cogs/clients/events.py post_event: core v1 Events for kopf.event/kopf.warn and for
    # handler failures.
    ("", "events", "create"),
}
# Cluster-wide, read-only, in every mode: kopf/_core/reactor/observation.py resource_observer
# watches CRDs to notice served resources being added or changed (without it: a warning, and the
# resources are only rescanned at restart).
KOPF_CRD_OBSERVATION: set[Rule] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}
# Cluster-wide, read-only, only when serving listed namespaces: observation.py namespace_observer
# lists and watches namespaces (without it: a warning, and the names are taken as they are).
KOPF_NAMESPACE_OBSERVATION: set[Rule] = {("", "namespaces", "list"), ("", "namespaces", "watch")}


def kopf_peering(resource: str, name: str) -> set[tuple[str, str, str, str]]:
    """kopf/_core/engines/peering.py: watch the peering objects, patch our own (heartbeat).

    Our peering CRD (crds/kopf-peerings.yaml) has no status subresource, so
    Kopf's patching.patch_obj patches the object itself, by name.
    """
    return {("kopf.dev", resource, "list", "*"), ("kopf.dev", resource, "watch", "*"),
            ("kopf.dev", resource, "patch", name)}


# --------------------------------------------------------------------------- derived from code

def api_classes() -> list[type]:
    # dir()/getattr, not vars(): the client package may populate its attributes lazily.
    classes = [getattr(kubernetes.client, name) for name in dir(kubernetes.client) if name.endswith("Api")]
    return [cls for cls in classes if isinstance(cls, type) and cls is not kubernetes.client.ApiClient]


def client_calls(source_root: Path = OPERATOR_SOURCE) -> dict[str, list[str]]:
    """Every Kubernetes client API method called in the operator's code -> where it is called."""
    methods = {name for cls in api_classes() for name in dir(cls) if REQUEST_METHOD.match(name)}
    found: dict[str, list[str]] = {}
    for path in sorted(source_root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            # Called (api.read_x(...)), handed to the adapters' request helper (kube.Api.json(doing, api.read_x, ...)),
            # or named in a table of them (adapters/kinds.py: "read_namespaced_deployment").
            if isinstance(node, ast.Attribute) and node.attr in methods:
                found.setdefault(node.attr, []).append(f"{path.relative_to(source_root)}:{node.lineno}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in methods:
                found.setdefault(node.value, []).append(f"{path.relative_to(source_root)}:{node.lineno}")
    return found


def kopf_handled_plurals(handlers: Path = HANDLERS) -> set[str]:
    """The resources Kopf handlers, timers and indexes are registered for: @kopf.x.y(GROUP, VERSION, "plural")."""
    plurals = set()
    for node in ast.walk(ast.parse(handlers.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and ast.unparse(decorator.func).startswith("kopf.")
                    and len(decorator.args) == 3 and isinstance(decorator.args[2], ast.Constant)):
                plurals.add(str(decorator.args[2].value))
    return plurals


def crd_for(plural: str) -> dict[str, Any]:
    for path in CRDS.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd["spec"]["names"]["plural"] == plural:
                return dict(crd)
    raise AssertionError(f"no CRD in crds/ for the handled resource {plural!r}")


def kopf_resource_rules() -> set[Rule]:
    """Kopf watches each handled resource, patches it (finalizer, progress and diff-base
    annotations: _cogs/clients/patching.py) and patches its status through the status
    subresource when the CRD has one."""
    rules: set[Rule] = set()
    for plural in kopf_handled_plurals():
        crd = crd_for(plural)
        group = crd["spec"]["group"]
        rules |= {(group, plural, "list"), (group, plural, "watch"), (group, plural, "patch")}
        if any("status" in (version.get("subresources") or {}) for version in crd["spec"]["versions"]):
            rules.add((group, f"{plural}/status", "patch"))
    return rules


def operator_needs(features: set[str]) -> list[Need]:
    """What the operator's calls need with these chart features on (see ``Need.when``)."""
    return [need for method in client_calls() if method in CLIENT_CALLS for need in needs_of(method)
            if need.applies(features)]


def expected_grants(namespaces: list[str], peering: str | None, features: set[str],
                    discovery: bool = True) -> set[Grant]:
    features = features | {"namespaced" if namespaces else "clusterwide"} | ({"peering"} if peering else set())
    needs = operator_needs(features)
    served = ({(*need.rule, need.name) for need in needs if need.where == "served"}
              | {(*rule, "*") for rule in kopf_resource_rules() | KOPF_SERVING})
    cluster = {(*need.rule, need.name.format(fullname=FULLNAME)) for need in needs if need.where == "cluster"}
    release = {(RELEASE_SCOPE, *need.rule, need.name.format(fullname=FULLNAME))
               for need in needs if need.where == "release"}
    if not namespaces:
        everywhere = served | cluster | {(*rule, "*") for rule in KOPF_CRD_OBSERVATION}
        if peering:
            everywhere |= kopf_peering("clusterkopfpeerings", peering)
        return {("*", *grant) for grant in everywhere} | release
    grants: set[Grant] = release
    for namespace in namespaces:
        local = served | (kopf_peering("kopfpeerings", peering) if peering else set())
        grants |= {(namespace, *grant) for grant in local}
    if discovery:
        cluster |= {(*rule, "*") for rule in KOPF_CRD_OBSERVATION | KOPF_NAMESPACE_OBSERVATION}
    return grants | {("*", *grant) for grant in cluster}


# --------------------------------------------------------------------------- granted by the chart

def granted(objects: list[dict[str, Any]], service_account: str, namespace: str) -> set[Grant]:
    """What the bindings in the rendered chart grant to the ServiceAccount, one tuple per permission."""
    roles = {(item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]): item
             for item in objects if item["kind"] in ("Role", "ClusterRole")}
    grants: set[Grant] = set()
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(subject["kind"] == "ServiceAccount" and subject["name"] == service_account
                   and subject.get("namespace") == namespace for subject in subjects):
            continue
        ref = binding["roleRef"]
        role_namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_namespace, ref["name"]))
        assert role is not None, f"{binding['kind']} {binding['metadata']['name']} refers to a missing {ref}"
        scope = "*" if binding["kind"] == "ClusterRoleBinding" else binding["metadata"]["namespace"]
        grants |= set(expand(role.get("rules") or [], scope))
    return grants


def expand(rules: Iterable[dict[str, Any]], scope: str) -> Iterator[Grant]:
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (rule.get(field) or []), f"wildcard in {field}: {rule}"
        names = rule.get("resourceNames") or ["*"]
        yield from itertools.product([scope], rule["apiGroups"], rule["resources"], rule["verbs"], names)


# --------------------------------------------------------------------------- the tests

def test_every_client_call_in_the_operator_has_an_rbac_rule() -> None:
    calls = client_calls()
    assert calls, "found no Kubernetes client calls in operator/healthscale: has the AST scan broken?"
    unmapped = {method: places for method, places in calls.items() if method not in CLIENT_CALLS}
    assert not unmapped, (
        f"the operator makes Kubernetes API calls the RBAC test does not know: {unmapped}. Add each to "
        "CLIENT_CALLS in tests/chart/test_rbac_least_privilege.py and its rule to "
        "helm/healthscale/templates/_rbac.tpl")
    unused = set(CLIENT_CALLS) - set(calls)
    assert not unused, f"CLIENT_CALLS lists calls the operator no longer makes (remove them): {sorted(unused)}"


class _Sent(Exception):
    """Raised instead of sending: carries the HTTP method and URL the client built."""


class _RecordingClient(kubernetes.client.ApiClient):
    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        raise _Sent(method, url)


# Bodies the client validates before sending (the least it accepts).
BODIES: dict[str, dict[str, Any]] = {"create_namespaced_event": {"metadata": {}, "involvedObject": {}},
                                     "create_namespaced_deployment": {"spec": {"selector": {}, "template": {}}}}


def request_of(api_class: type, method: str, rule: Rule = ("", "", "")) -> tuple[str, str]:
    api = api_class(_RecordingClient(kubernetes.client.Configuration()))
    function = getattr(api, method)
    arguments = {name: (BODIES.get(method, {}) if name == "body" else "x")
                 for name, parameter in inspect.signature(function).parameters.items()
                 if parameter.default is inspect.Parameter.empty
                 and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)}
    if "custom_object" in method:
        # The generic custom-object calls take the group and plural as arguments: pass the ones
        # the operator passes, so the URL names the real resource.
        group, resource, _ = rule
        arguments.update(group=group, version="v1alpha1", plural=resource.split("/")[0])
    if rule[2] == "watch":
        arguments["watch"] = True  # a watch is the list call with watch=true (adapters/watchcache.py)
    try:
        function(**arguments)
    except _Sent as sent:
        return str(sent.args[0]), str(sent.args[1])
    raise AssertionError(f"{api_class.__name__}.{method} sent no request")


def rule_of_request(http_method: str, url: str) -> Rule:
    """The RBAC (apiGroup, resource, verb) the API server checks for a request."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[0] == "namespaces" and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    named = len(rest) > 1
    verb = {"GET": "get" if named else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if named else "deletecollection"}[http_method]
    if verb == "list" and urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("watch") == ["true"]:
        verb = "watch"
    return group, resource, verb


MAPPED = [(method, need) for method in sorted(CLIENT_CALLS) for need in needs_of(method)]


@pytest.mark.parametrize(("method", "need"), MAPPED, ids=[f"{method} is {need.rule}" for method, need in MAPPED])
def test_the_mapping_matches_the_request_the_client_sends(method: str, need: Need) -> None:
    classes = [cls for cls in api_classes() if hasattr(cls, method) and need.api in (None, cls.__name__)]
    assert classes, f"no kubernetes.client API class has {method}"
    for api_class in classes:
        assert rule_of_request(*request_of(api_class, method, need.rule)) == need.rule, api_class.__name__


def test_kopf_handles_the_two_custom_resources() -> None:
    assert kopf_handled_plurals() == {"clinicalslos", "surgeschedules"}


URL = "prometheus.url=http://prometheus:9090"
TWO_NAMESPACES = "watchNamespaces={ehr,telehealth}"
# name -> (--set values, watched namespaces, peering?, chart features, cluster discovery?)
RESIDENCY, DELETION_COST = "residency.enabled=true", "podDeletionCost.enabled=true"
NODE_WARMUP = "nodeWarmup.enabled=true"
KEDA = "keda.enabled=true"
SHAPES: dict[str, tuple[list[str], list[str], bool, set[str], bool]] = {
    "cluster-wide": ([], [], False, set(), True),
    "cluster-wide with peering": (["replicaCount=2"], [], True, set(), True),
    "cluster-wide with residency and peering": ([RESIDENCY, "replicaCount=2"], [], True, {"residency"}, True),
    "cluster-wide with webhook and eviction": ([RESIDENCY, "webhook.enabled=true", "residency.evict=true"], [], False,
                                               {"residency", "webhook", "evict"}, True),
    "cluster-wide with eviction but residency off": (["residency.evict=true"], [], False, {"evict"}, True),
    "namespaced": ([TWO_NAMESPACES], ["ehr", "telehealth"], False, set(), True),
    "namespaced with peering": ([TWO_NAMESPACES, "replicaCount=2"], ["ehr", "telehealth"], True, set(), True),
    "namespaced with residency and peering": ([TWO_NAMESPACES, RESIDENCY, "replicaCount=2"], ["ehr", "telehealth"],
                                              True, {"residency"}, True),
    "namespaced with webhook": ([TWO_NAMESPACES, "webhook.enabled=true"], ["ehr", "telehealth"], False,
                                {"webhook"}, True),
    "namespaced with the webhook's certificate from cert-manager": (
        [TWO_NAMESPACES, RESIDENCY, "webhook.certificate.source=cert-manager"], ["ehr", "telehealth"], False,
        {"residency", "webhook"}, True),
    "cluster-wide with the webhook's certificate from a Secret of yours": (
        ["webhook.enabled=true", "webhook.certificate.source=secret"], [], False, {"webhook"}, True),
    "cluster-wide with PrometheusRules": (["prometheusRules.enabled=true"], [], False, {"prometheus-rules"}, True),
    "namespaced with PrometheusRules": ([TWO_NAMESPACES, "prometheusRules.enabled=true"], ["ehr", "telehealth"],
                                        False, {"prometheus-rules"}, True),
    "cluster-wide with node warm-up": ([NODE_WARMUP], [], False, {"node-warmup"}, True),
    "cluster-wide with KEDA": ([KEDA], [], False, {"keda"}, True),
    "cluster-wide with deferral": (["deferral.enabled=true"], [], False, {"deferral"}, True),
    "namespaced with deferral and KEDA": ([TWO_NAMESPACES, "deferral.enabled=true", KEDA], ["ehr", "telehealth"], False,
                                          {"deferral", "keda"}, True),
    "namespaced with KEDA and peering": ([TWO_NAMESPACES, KEDA, "replicaCount=2"], ["ehr", "telehealth"], True,
                                         {"keda"}, True),
    "namespaced with node warm-up": ([TWO_NAMESPACES, NODE_WARMUP], ["ehr", "telehealth"], False, {"node-warmup"},
                                     True),
    # Both patch deployments: residency its targets' pod templates, node warm-up its placeholders.
    "namespaced with node warm-up and residency, without the webhook": (
        [TWO_NAMESPACES, NODE_WARMUP, RESIDENCY, "webhook.enabled=false"], ["ehr", "telehealth"], False,
        {"node-warmup", "residency"}, True),
    "namespaced with eviction, without discovery": (
        ["watchNamespaces={ehr}", RESIDENCY, "residency.evict=true", "rbac.clusterDiscovery=false"], ["ehr"], False,
        {"residency", "evict"}, False),
}
# Every combination of the features with rights of their own, cluster-wide and namespaced.
for _residency, _webhook, _cost in itertools.product((False, True), repeat=3):
    _on = {name for name, on in (("residency", _residency), ("webhook", _webhook), ("deletion-cost", _cost)) if on}
    _values = [value for value, on in ((RESIDENCY, _residency), (DELETION_COST, _cost)) if on]
    _values.append(f"webhook.enabled={'true' if _webhook else 'false'}")
    _name = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in (
        ("residency", _residency), ("webhook", _webhook), ("deletion-cost", _cost)))
    SHAPES[f"cluster-wide, {_name}"] = (_values, [], False, _on, True)
    SHAPES[f"namespaced without discovery, {_name}"] = (
        [TWO_NAMESPACES, "rbac.clusterDiscovery=false", *_values], ["ehr", "telehealth"], False, _on, False)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"{shape}: grants exactly what the operator uses")
def test_the_chart_grants_exactly_what_the_operator_uses(helm: Helm, shape: str) -> None:
    settings, namespaces, peering, features, discovery = SHAPES[shape]
    # One replica unless the shape says otherwise; the webhook (on with residency unless set off)
    # keeps peering on whatever the count, and issues its own certificate unless told otherwise.
    if "residency" in features and "webhook.enabled=false" not in settings:
        features = features | {"webhook"}
    if "webhook" in features:
        peering = True
        if not any(item.startswith("webhook.certificate.source=") for item in settings):
            features = features | {"operator-cert"}
    objects = helm.render(set_values=[URL, "replicaCount=1", *settings], release="hs", namespace=RELEASE_SCOPE)
    expected = expected_grants(namespaces, FULLNAME if peering else None, features, discovery)
    actual = granted(objects, "hs-healthscale", "healthscale-system")
    more, less = sorted(actual - expected), sorted(expected - actual)
    assert not more and not less, (
        "the chart's RBAC differs from what the operator uses\n"
        f"  grants more than needed: {more}\n  grants less than needed: {less}")


def test_the_webhook_configuration_the_operator_patches_is_the_one_the_chart_creates(helm: Helm) -> None:
    objects = helm.render(set_values=[URL, "webhook.enabled=true"])
    names = [item["metadata"]["name"] for item in objects if item["kind"] == "ValidatingWebhookConfiguration"]
    assert names == [webhook.CONFIGURATION_NAME]


def test_rbac_create_false_grants_nothing(helm: Helm) -> None:
    objects = helm.render(set_values=["prometheus.url=http://prometheus:9090", "rbac.create=false"])
    assert not [item for item in objects if item["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


def test_the_test_notices_a_call_without_a_rule(tmp_path: Path) -> None:
    # The AST scan finds calls by method name, whatever the client object is called.
    (tmp_path / "new.py").write_text("def f(api):\n    api.delete_namespaced_pod('p', 'ns')\n")
    assert "delete_namespaced_pod" in client_calls(tmp_path)
    assert "delete_namespaced_pod" not in CLIENT_CALLS


# --------------------------------------------------------------------------- the uninstall hook
#
# The pre-delete hook (templates/release-hook.yaml) runs `healthscale release` as its own
# ServiceAccount. What it needs is taken from the command itself: it runs in-process against a fake
# API server that answers every request, and each request's (scope, apiGroup, resource, verb,
# resourceName) is recorded. The chart must grant the hook's account exactly those. With node warm-up
# on, the ClinicalSLOs it answers with record a placeholder Deployment (status.reservation), which
# the command deletes; with it off, no operator of this release made one.

RELEASE_NAMESPACE = "healthscale-system"
HOOK_ACCOUNT = "hs-healthscale-release"
OPERATOR_DEPLOYMENT = "hs-healthscale"


class _Answer:
    """What ``ApiClient.call_api`` returns (a RESTResponse): status, and the raw response's data."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()
        self.status = 200
        self.reason = "OK"
        self.response = self


def _slo(namespace: str, features: set[str]) -> dict[str, Any]:
    """A ClinicalSLO that raised a Deployment, a StatefulSet and an HPA: every restore path; and,
    with node warm-up on, that holds node room in a placeholder Deployment."""
    originals = [{"kind": "Deployment", "name": "ehr-api", "uid": "u1", "field": "replicas", "value": 2},
                 {"kind": "StatefulSet", "name": "ehr-db", "uid": "u2", "field": "replicas", "value": 3},
                 {"kind": "HorizontalPodAutoscaler", "name": "ehr-web", "uid": "u3", "field": "minReplicas", "value": 2}]
    status: dict[str, Any] = {"originals": originals}
    if "keda" in features:
        originals.append({"kind": "ScaledObject", "name": "ehr-keda", "uid": "u4", "field": "minReplicaCount",
                          "value": 0})
    if "node-warmup" in features:
        status["reservation"] = {"replicas": 5, "needed": 6, "reachSeconds": 1260, "placeholders": "ed-triage-room",
                                 "applied": True}
    return {"metadata": {"name": "ed-triage", "namespace": namespace, "uid": "u0",
                         "finalizers": ["healthscale.io/restore-scale"]}, "status": status}


DEFERRED_OBJECTS = {"Deployment": ("apps", "deployments", "replicas", {"replicas": 3}, {"replicas": 0}),
                    "StatefulSet": ("apps", "statefulsets", "replicas", {"replicas": 2}, {"replicas": 0}),
                    "CronJob": ("batch", "cronjobs", "suspend", {"suspend": False}, {"suspend": True}),
                    "Job": ("batch", "jobs", "suspend", {"suspend": False}, {"suspend": True}),
                    "ScaledObject": ("keda.sh", "scaledobjects", "pausedReplicas", {}, {"pausedReplicas": "0"})}
"""What a SurgeSchedule deferred, one of each kind: (group, resource, field, original, written)."""


def _deferring_schedule(namespace: str, features: set[str]) -> dict[str, Any]:
    """A SurgeSchedule that deferred one object of each kind (a ScaledObject only with KEDA on)."""
    records = [{"kind": kind, "name": f"batch-{kind.lower()}", "uid": f"d-{kind}", "field": field,
                "original": original, "written": written, "since": "2026-11-30T08:00:00Z", "cause": "Surge",
                "causeName": "flu-clinic"}
               for kind, (_, _, field, original, written) in DEFERRED_OBJECTS.items()
               if kind != "ScaledObject" or "keda" in features]
    return {"metadata": {"name": "flu-clinic", "namespace": namespace, "uid": "s0", "resourceVersion": "7",
                         "finalizers": ["healthscale.io/restore-deferred"]},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "surges": [{"name": "flu-clinic", "start": "2026-11-30"}]},
            "status": {"deferred": records}}


def _deferred_object(resource: str, name: str) -> dict[str, Any]:
    """The object a record names, as deferred (its uid, and the value healthscale wrote)."""
    kind = next(kind for kind, entry in DEFERRED_OBJECTS.items() if entry[1] == resource)
    written = DEFERRED_OBJECTS[kind][4]
    metadata: dict[str, Any] = {"name": name, "uid": f"d-{kind}", "resourceVersion": "5"}
    if kind == "ScaledObject":
        metadata["annotations"] = {"autoscaling.keda.sh/paused-replicas": written["pausedReplicas"]}
        return {"metadata": metadata, "spec": {"scaleTargetRef": {"name": "batch"}}}
    return {"metadata": metadata, "spec": written}


def release_requests(monkeypatch: pytest.MonkeyPatch, namespaces: list[str], served: list[str],
                     features: set[str]) -> set[Grant]:
    from healthscale import cli
    from healthscale.adapters import kube

    sent: set[Grant] = set()

    def call_api(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> _Answer:
        path = urllib.parse.urlsplit(url).path.strip("/").split("/")
        scope = path[path.index("namespaces") + 1] if "namespaces" in path else "*"
        group, resource, verb = rule_of_request(method, url)
        rest = path[path.index(resource.split("/")[0]) + 1:]
        name = rest[0] if rest and resource == "deployments/scale" and scope == RELEASE_NAMESPACE else "*"
        sent.add((scope, group, resource, verb, name))
        if resource == "deployments/scale":
            return _Answer({"status": {"selector": "app.kubernetes.io/name=healthscale"}})
        if verb == "list" and resource == "clinicalslos":
            return _Answer({"metadata": {}, "items": [_slo(namespace, features) for namespace in served
                                                      if scope in ("*", namespace)]})
        selected = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("fieldSelector", [""])[0]
        if verb == "list" and resource == "surgeschedules":
            schedules = [_deferring_schedule(namespace, features) for namespace in served if scope in ("*", namespace)]
            return _Answer({"metadata": {}, "items": [item for item in schedules if not selected
                                                      or selected == f"metadata.name={item['metadata']['name']}"]})
        if verb == "list" and selected and resource in {entry[1] for entry in DEFERRED_OBJECTS.values()}:
            return _Answer({"metadata": {}, "items": [_deferred_object(resource, selected.removeprefix("metadata.name="))]})
        return _Answer({"metadata": {}, "items": []})

    configuration = kubernetes.client.Configuration()
    configuration.host = "http://fake-apiserver.invalid"
    previous = kubernetes.client.Configuration.get_default_copy()
    monkeypatch.setattr(kube, "load_config", lambda: None)
    monkeypatch.setattr(kubernetes.client.ApiClient, "call_api", call_api)
    kubernetes.client.Configuration.set_default(configuration)
    try:
        code = cli.main(["release", f"--stop-operator={RELEASE_NAMESPACE}/{OPERATOR_DEPLOYMENT}",
                         *(f"--namespace={namespace}" for namespace in namespaces),
                         *(() if "deferral" in features else ("--no-deferral",)),
                         *(() if "keda" in features else ("--no-keda",))])
    finally:
        kubernetes.client.Configuration.set_default(previous)
    assert code == 0
    return sent


def hook_expected(requests: set[Grant], clusterwide: bool) -> set[Grant]:
    """Stopping the operator is granted in the release namespace (its Deployment by name); the
    rest wherever ClinicalSLOs are served: cluster-wide, or in each watched namespace."""
    return {request if request[0] == RELEASE_NAMESPACE else ("*" if clusterwide else request[0], *request[1:])
            for request in requests}


# name -> (--set values, watched namespaces, chart features)
HOOK_SHAPES: dict[str, tuple[list[str], list[str], set[str]]] = {
    "cluster-wide": ([], [], set()),
    "namespaced": ([TWO_NAMESPACES], ["ehr", "telehealth"], set()),
    "cluster-wide with node warm-up": ([NODE_WARMUP], [], {"node-warmup"}),
    "namespaced with node warm-up": ([TWO_NAMESPACES, NODE_WARMUP], ["ehr", "telehealth"], {"node-warmup"}),
    "cluster-wide with KEDA": ([KEDA], [], {"keda"}),
    "namespaced with KEDA": ([TWO_NAMESPACES, KEDA], ["ehr", "telehealth"], {"keda"}),
    "cluster-wide with deferral": (["deferral.enabled=true"], [], {"deferral"}),
    "namespaced with deferral and KEDA": ([TWO_NAMESPACES, "deferral.enabled=true", KEDA], ["ehr", "telehealth"],
                                          {"deferral", "keda"}),
}


@pytest.mark.parametrize("shape", HOOK_SHAPES, ids=lambda shape: f"{shape}: the uninstall hook is granted exactly "
                                                                 "what `healthscale release` sends")
def test_the_uninstall_hook_grants_exactly_what_the_release_command_uses(
        helm: Helm, monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    settings, namespaces, features = HOOK_SHAPES[shape]
    requests = release_requests(monkeypatch, namespaces, namespaces or ["ehr"], features)
    objects = helm.render(set_values=[URL, *settings], release="hs", namespace=RELEASE_NAMESPACE)
    expected = hook_expected(requests, clusterwide=not namespaces)
    actual = granted(objects, HOOK_ACCOUNT, RELEASE_NAMESPACE)
    more, less = sorted(actual - expected), sorted(expected - actual)
    assert not more and not less, (
        "the hook's RBAC differs from what `healthscale release` uses\n"
        f"  grants more than needed: {more}\n  grants less than needed: {less}")
    # Every restore path ran: replicas of both workload kinds, an HPA floor, the finalizer, status.
    rules = {request[1:4] for request in requests}
    assert {("apps", "deployments/scale", "patch"), ("apps", "statefulsets/scale", "patch"),
            ("autoscaling", "horizontalpodautoscalers", "patch"), ("healthscale.io", "clinicalslos", "patch"),
            ("healthscale.io", "clinicalslos/status", "patch"), ("", "events", "create")} <= rules
    # ... a ScaledObject's floor exactly when KEDA is on (only then can an operator have raised one) ...
    assert (("keda.sh", "scaledobjects", "patch") in rules) == ("keda" in features)
    # ... and the placeholder Deployment was deleted exactly when node warm-up makes one.
    assert (("apps", "deployments", "delete") in rules) == ("node-warmup" in features)
    # ... and, with deferral on, every deferred kind was put back and the schedule's finalizer removed.
    deferred = {("apps", "deployments", "patch"), ("apps", "statefulsets", "patch"), ("batch", "cronjobs", "patch"),
                ("batch", "jobs", "patch"), ("healthscale.io", "surgeschedules", "patch")}
    assert (deferred <= rules) == ("deferral" in features)


def test_the_uninstall_hook_runs_release_as_its_own_account_after_its_rbac(helm: Helm) -> None:
    objects = helm.render(set_values=[URL, TWO_NAMESPACES], release="hs", namespace=RELEASE_NAMESPACE)
    hooks = [item for item in objects if (item["metadata"].get("annotations") or {}).get("helm.sh/hook")]
    assert {item["metadata"]["annotations"]["helm.sh/hook"] for item in hooks} == {"pre-delete"}
    weight = {(item["kind"], item["metadata"].get("namespace")): int(item["metadata"]["annotations"]["helm.sh/hook-weight"])
              for item in hooks}
    job = next(item for item in hooks if item["kind"] == "Job")
    assert all(weight[key] < weight[("Job", RELEASE_NAMESPACE)] for key in weight if key[0] != "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == HOOK_ACCOUNT
    assert pod["containers"][0]["args"] == ["release", f"--stop-operator={RELEASE_NAMESPACE}/{OPERATOR_DEPLOYMENT}",
                                            "--namespace=ehr", "--namespace=telehealth", "--exit-zero",
                                            "--no-deferral", "--no-keda"]
    # The hook's pod is not one of the operator's: stopping the operator does not wait for it.
    deployment = next(item for item in objects if item["kind"] == "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"].items()
    assert not selector <= job["spec"]["template"]["metadata"]["labels"].items()
    off = helm.render(set_values=[URL, "release.onUninstall=false"], release="hs", namespace=RELEASE_NAMESPACE)
    assert not [item for item in off if (item["metadata"].get("annotations") or {}).get("helm.sh/hook")]
