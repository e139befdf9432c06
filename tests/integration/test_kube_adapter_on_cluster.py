"""The Kubernetes adapter (``kube.Workloads``, ``kube.ClinicalSLOs``) against the real API server.

- a write carries the object's uid: a Deployment, StatefulSet or HPA deleted and re-created under
  the same name is not written (``NotFound``, saying it was re-created), the object it was meant
  for is;
- the HPA list cache forgets a namespace when healthscale writes an HPA there;
- a workload whose selector has only ``matchExpressions`` lists exactly its own pods;
- a refused request (403 for an identity without rights) is a non-retryable ``ApiError``;
- ClinicalSLO records: ``status.originals``, the cluster-wide list, removing one finalizer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import GROUP, VERSION, DevCluster, deployment, wait_until
from healthscale import ports
from healthscale.adapters import kube

pytestmark = pytest.mark.integration

PAUSE = "registry.k8s.io/pause:3.10"
FINALIZER = "healthscale.io/restore"


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"kube-adapter-{uuid.uuid4().hex[:8]}"
    core = k8s_client.CoreV1Api(api)
    core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    custom = k8s_client.CustomObjectsApi(api)
    for item in custom.list_namespaced_custom_object(GROUP, VERSION, name, "clinicalslos")["items"]:
        custom.patch_namespaced_custom_object(GROUP, VERSION, name, "clinicalslos", item["metadata"]["name"],
                                              {"metadata": {"finalizers": None}})
    core.delete_namespace(name)


@pytest.fixture
def workloads(api: k8s_client.ApiClient) -> Iterator[kube.Workloads]:
    adapter = kube.Workloads(api)
    yield adapter
    adapter.close()


@pytest.fixture
def records(api: k8s_client.ApiClient) -> Iterator[kube.ClinicalSLOs]:
    adapter = kube.ClinicalSLOs(api)
    yield adapter
    adapter.close()


def stateful_set(api: k8s_client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    container = k8s_client.V1Container(name="app", image=PAUSE)
    k8s_client.AppsV1Api(api).create_namespaced_stateful_set(namespace, k8s_client.V1StatefulSet(
        metadata=k8s_client.V1ObjectMeta(name=name),
        spec=k8s_client.V1StatefulSetSpec(
            replicas=replicas, service_name=name, selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(metadata=k8s_client.V1ObjectMeta(labels=labels),
                                                  spec=k8s_client.V1PodSpec(containers=[container])),
        ),
    ))


def hpa(api: k8s_client.ApiClient, namespace: str, name: str, min_replicas: int) -> None:
    k8s_client.AutoscalingV2Api(api).create_namespaced_horizontal_pod_autoscaler(namespace, {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                 "minReplicas": min_replicas, "maxReplicas": 30,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 70}}}]},
    })


def gone(read: Callable[[], object]) -> bool:
    try:
        read()
    except k8s_client.ApiException as error:
        return error.status == 404
    return False


def recreate(api: k8s_client.ApiClient, namespace: str, kind: str, name: str, replicas: int) -> None:
    """Delete the object and create another one of the same kind and name."""
    apps, autoscaling = k8s_client.AppsV1Api(api), k8s_client.AutoscalingV2Api(api)
    if kind == "Deployment":
        apps.delete_namespaced_deployment(name, namespace)
        wait_until(f"{name} deleted", lambda: gone(lambda: apps.read_namespaced_deployment(name, namespace)), 60, 0.2)
        deployment(api, namespace, name, replicas)
    elif kind == "StatefulSet":
        apps.delete_namespaced_stateful_set(name, namespace)
        wait_until(f"{name} deleted", lambda: gone(lambda: apps.read_namespaced_stateful_set(name, namespace)), 60, 0.2)
        stateful_set(api, namespace, name, replicas)
    else:
        autoscaling.delete_namespaced_horizontal_pod_autoscaler(name, namespace)
        wait_until(f"{name} deleted", lambda: gone(
            lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(name, namespace)), 60, 0.2)
        hpa(api, namespace, name, replicas)


CREATE: dict[str, Callable[[k8s_client.ApiClient, str, str, int], None]] = {
    "Deployment": deployment, "StatefulSet": stateful_set,
}


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        pytest.param("Deployment", "replicas", id="a re-created Deployment is not scaled through its old uid"),
        pytest.param("StatefulSet", "replicas", id="a re-created StatefulSet is not scaled through its old uid"),
        pytest.param("HorizontalPodAutoscaler", "minReplicas", id="a re-created HPA does not get the old one's floor"),
    ],
)
def test_a_write_reaches_only_the_object_with_the_recorded_uid(
        api: k8s_client.ApiClient, namespace: str, workloads: kube.Workloads, kind: str, field: ports.Field) -> None:
    name = "ehr-api"
    if kind == "HorizontalPodAutoscaler":
        deployment(api, namespace, name, 2)
        hpa(api, namespace, name, 2)
    else:
        CREATE[kind](api, namespace, name, 2)
    first = workloads.read_field(namespace, kind, name, field)
    assert first.value == 2 and first.uid

    workloads.write_field(namespace, kind, name, first.uid, field, 4)  # the object it was meant for
    assert workloads.read_field(namespace, kind, name, field) == ports.Written(kind, name, first.uid, 4)

    recreate(api, namespace, kind, name, 3)
    with pytest.raises(ports.NotFound, match="re-created"):
        workloads.write_field(namespace, kind, name, first.uid, field, 9)
    second = workloads.read_field(namespace, kind, name, field)
    assert second.value == 3 and second.uid != first.uid

    workloads.write_field(namespace, kind, name, second.uid, field, 5)
    assert workloads.read_field(namespace, kind, name, field).value == 5


def test_a_deleted_workload_is_not_found_for_reads_and_writes(
        api: k8s_client.ApiClient, namespace: str, workloads: kube.Workloads) -> None:
    deployment(api, namespace, "ehr-api", 2)
    uid = workloads.read(namespace, "Deployment", "ehr-api").uid
    k8s_client.AppsV1Api(api).delete_namespaced_deployment("ehr-api", namespace)
    with pytest.raises(ports.NotFound):
        workloads.write_field(namespace, "Deployment", "ehr-api", uid, "replicas", 5)
    with pytest.raises(ports.NotFound):
        workloads.read(namespace, "Deployment", "ehr-api")
    with pytest.raises(ports.NotFound):
        workloads.read_field(namespace, "HorizontalPodAutoscaler", "ehr-api", "minReplicas")


def test_an_hpa_floor_written_by_healthscale_shows_in_the_next_read_despite_the_cache(
        api: k8s_client.ApiClient, namespace: str, workloads: kube.Workloads) -> None:
    deployment(api, namespace, "ehr-api", 2)
    hpa(api, namespace, "ehr-api", 2)
    target = workloads.read(namespace, "Deployment", "ehr-api")
    assert target.floor is not None and (target.floor.min_replicas, target.floor.max_replicas) == (2, 30)
    assert target.uid and target.floor.uid and target.floor.uid != target.uid

    workloads.write_field(namespace, "HorizontalPodAutoscaler", "ehr-api", target.floor.uid, "minReplicas", 7)
    again = workloads.read(namespace, "Deployment", "ehr-api")
    assert again.floor == ports.Floor("ehr-api", target.floor.uid, 7, 30)
    managers = {entry.manager for entry in k8s_client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler(
        "ehr-api", namespace).metadata.managed_fields}
    assert kube.FIELD_MANAGER in managers


def test_a_selector_of_only_match_expressions_lists_only_the_workloads_pods(
        api: k8s_client.ApiClient, namespace: str, workloads: kube.Workloads) -> None:
    labels = {"app": "triage", "tier": "web"}
    container = k8s_client.V1Container(name="app", image=PAUSE)
    k8s_client.AppsV1Api(api).create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "triage"},
        "spec": {"replicas": 2,
                 "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["triage"]},
                                                   {"key": "tier", "operator": "Exists"}]},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": container.name, "image": PAUSE}]}}},
    })
    core = k8s_client.CoreV1Api(api)
    for name, decoy in (("other-app", {"app": "billing", "tier": "web"}), ("no-tier", {"app": "triage"})):
        core.create_namespaced_pod(namespace, k8s_client.V1Pod(
            metadata=k8s_client.V1ObjectMeta(name=name, labels=decoy),
            spec=k8s_client.V1PodSpec(containers=[container])))

    target = workloads.read(namespace, "Deployment", "triage")
    assert target.selector == "app in (triage),tier"
    assert target.selector is not None
    selector = target.selector
    pods = wait_until("the Deployment's two pods", lambda: (found := workloads.pods(namespace, selector))
                      and len(found) == 2 and found, 120, 0.5)
    assert all(pod.startswith("triage-") for pod in pods)
    assert len(core.list_namespaced_pod(namespace).items) == 4


def test_a_refused_request_is_not_retryable_and_carries_its_status(
        devcluster: DevCluster, namespace: str) -> None:
    base = devcluster.api_client()
    base.default_headers["Impersonate-User"] = "system:serviceaccount:default:healthscale-nobody"
    adapter = kube.Workloads(base)
    try:
        with pytest.raises(ports.ApiError) as raised:
            adapter.read(namespace, "Deployment", "ehr-api")
    finally:
        adapter.close()
        base.close()  # type: ignore[no-untyped-call]
    assert (raised.value.status, raised.value.retryable) == (403, False)
    assert "forbidden" in str(raised.value)


def slo(api: k8s_client.ApiClient, namespace: str, document: dict[str, Any], name: str,
        finalizers: list[str]) -> None:
    body = {**document, "metadata": {"name": name, "namespace": namespace, "finalizers": finalizers}}
    k8s_client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", body)


def read_slo(api: k8s_client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = k8s_client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "clinicalslos", name)
    return found


def test_originals_are_saved_in_the_clinicalslo_status_and_replaced_whole(
        api: k8s_client.ApiClient, namespace: str, records: kube.ClinicalSLOs, slo_document: dict[str, Any]) -> None:
    slo(api, namespace, slo_document, "chart", [])
    first = [{"kind": "Deployment", "name": "ehr-api", "uid": "u-1", "field": "replicas", "value": 3},
             {"kind": "HorizontalPodAutoscaler", "name": "ehr-api", "uid": "u-2", "field": "minReplicas", "value": 2}]
    records.save_originals(namespace, "chart", first)
    assert read_slo(api, namespace, "chart")["status"]["originals"] == first
    records.save_originals(namespace, "chart", first[1:])
    assert read_slo(api, namespace, "chart")["status"]["originals"] == first[1:]
    with pytest.raises(ports.NotFound):
        records.save_originals(namespace, "no-such-slo", first)


def test_release_lists_every_clinicalslo_and_removes_exactly_one_finalizer(
        api: k8s_client.ApiClient, namespace: str, records: kube.ClinicalSLOs, slo_document: dict[str, Any]) -> None:
    slo(api, namespace, slo_document, "chart", ["example.com/keep", FINALIZER, "example.com/also-keep"])
    listed = [(item["metadata"]["namespace"], item["metadata"]["name"]) for item in records.list_all()]
    assert (namespace, "chart") in listed

    records.remove_finalizer(namespace, "chart", FINALIZER)
    assert read_slo(api, namespace, "chart")["metadata"]["finalizers"] == ["example.com/keep", "example.com/also-keep"]
    records.remove_finalizer(namespace, "chart", FINALIZER)  # already gone: nothing to do

    k8s_client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", "chart")
    records.remove_finalizer(namespace, "chart", "example.com/keep")
    records.remove_finalizer(namespace, "chart", "example.com/also-keep")  # the last one: the object goes
    wait_until("the ClinicalSLO deleted", lambda: gone(lambda: read_slo(api, namespace, "chart")), 30, 0.2)
    records.remove_finalizer(namespace, "chart", FINALIZER)  # the object is gone: nothing to do


@pytest.mark.parametrize(
    ("subresource", "status", "message"),
    [
        pytest.param(True, 409, "Precondition failed: UID in precondition", id="the scale subresource treats a "
                     "foreign uid as a failed precondition (409)"),
        pytest.param(False, 422, "metadata.uid: Invalid value", id="the Deployment itself refuses a foreign uid as "
                     "an immutable field (422)"),
    ],
)
def test_what_the_api_server_answers_to_a_foreign_uid_in_a_merge_patch(
        api: k8s_client.ApiClient, namespace: str, subresource: bool, status: int, message: str) -> None:
    """The two answers ``kube.Workloads.write_field`` maps to NotFound; neither writes anything."""
    deployment(api, namespace, "ehr-api", 2)
    apps = k8s_client.AppsV1Api(api)
    patch = apps.patch_namespaced_deployment_scale if subresource else apps.patch_namespaced_deployment
    with pytest.raises(k8s_client.ApiException) as raised:
        patch("ehr-api", namespace, {"metadata": {"uid": str(uuid.uuid4())}, "spec": {"replicas": 7}},
              _content_type=kube.MERGE_PATCH)
    assert raised.value.status == status and message in str(raised.value.body)
    assert apps.read_namespaced_deployment("ehr-api", namespace).spec.replicas == 2
