"""``adapters.kube.Workloads`` with KEDA ScaledObjects (issue 13, part 3), against a fake API server
(``ApiClient.call_api`` answering by URL): which object holds a workload's floor, what is written
where, and when healthscale must leave a floor alone. The real KEDA is in
tests/integration/test_keda_floor.py.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from healthscale import ports
from healthscale.adapters import kinds, kube

SCALED_OBJECTS = "/apis/keda.sh/v1alpha1/namespaces/ehr/scaledobjects"
HPAS = "/apis/autoscaling/v2/namespaces/ehr/horizontalpodautoscalers"
DEPLOYMENT = "/apis/apps/v1/namespaces/ehr/deployments/ehr-api"


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()
        self.status, self.reason = 200, "OK"
        self.response = self


@dataclasses.dataclass
class FakeApi:
    """Lists by path; a path missing from ``lists`` answers 404 (a resource the cluster does not serve)."""

    lists: dict[str, list[dict[str, Any]]]
    sent: list[tuple[str, str, Any, str]] = dataclasses.field(default_factory=list)

    def call_api(self, method: str, url: str, header_params: dict[str, str] | None = None, body: Any = None,
                 *args: Any, **kwargs: Any) -> _Answer:
        parts = urllib.parse.urlsplit(url)
        if isinstance(body, (str, bytes)):
            body = json.loads(body)
        self.sent.append((method, parts.path, body, (header_params or {}).get("Content-Type", "")))
        if parts.path == DEPLOYMENT:
            return _Answer({"metadata": {"name": "ehr-api", "uid": "d-1"},
                            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "ehr-api"}}},
                            "status": {"readyReplicas": 2}})
        if method == "PATCH":
            return _Answer(body or {})
        if parts.path not in self.lists:
            raise kubernetes.client.ApiException(status=404, reason="Not Found")
        query = urllib.parse.parse_qs(parts.query)
        items = self.lists[parts.path]
        if "fieldSelector" in query:
            wanted = query["fieldSelector"][0].removeprefix("metadata.name=")
            items = [item for item in items if item["metadata"]["name"] == wanted]
        return _Answer({"metadata": {}, "items": items})


def scaled_object(name: str = "ehr-api", floor: int | None = 1, ceiling: int | None = 10,
                  annotations: dict[str, str] | None = None, target: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"scaleTargetRef": target or {"name": "ehr-api"}, "triggers": []}
    if floor is not None:
        spec["minReplicaCount"] = floor
    if ceiling is not None:
        spec["maxReplicaCount"] = ceiling
    return {"metadata": {"name": name, "uid": "so-1", "annotations": annotations or {}}, "spec": spec}


def keda_hpa(owner: str = "ehr-api") -> dict[str, Any]:
    """The HPA KEDA makes for a ScaledObject: named keda-hpa-<name>, controlled by the ScaledObject."""
    return {"metadata": {"name": f"keda-hpa-{owner}", "uid": "h-1",
                         "ownerReferences": [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": owner,
                                              "uid": "so-1", "controller": True}]},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                     "minReplicas": 1, "maxReplicas": 10}}


def plain_hpa() -> dict[str, Any]:
    return {"metadata": {"name": "ehr-api", "uid": "h-2"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "ehr-api"}, "minReplicas": 2, "maxReplicas": 30}}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    api = FakeApi({})
    monkeypatch.setattr(kubernetes.client.ApiClient, "call_api",
                        lambda self, *args, **kwargs: api.call_api(*args, **kwargs))
    yield api


def workloads(options: tuple[str, ...] | None = None) -> kube.Workloads:
    configuration = kubernetes.client.Configuration(host="http://fake-apiserver.invalid")
    return kube.Workloads(kubernetes.client.ApiClient(configuration), options=options)


WHO_HOLDS_THE_FLOOR = [
    pytest.param({SCALED_OBJECTS: [scaled_object()], HPAS: [keda_hpa()]}, ("keda",),
                 ports.Floor("ehr-api", "so-1", 1, 10, kind="ScaledObject", field="minReplicaCount"),
                 id="a ScaledObject scaling the workload holds its floor, not the HPA KEDA made for it"),
    pytest.param({SCALED_OBJECTS: [scaled_object(floor=None, ceiling=None)], HPAS: []}, ("keda",),
                 ports.Floor("ehr-api", "so-1", 0, 100, kind="ScaledObject", field="minReplicaCount"),
                 id="a ScaledObject without minReplicaCount and maxReplicaCount has KEDA's defaults 0 and 100"),
    pytest.param({SCALED_OBJECTS: [scaled_object(target={"kind": "StatefulSet", "name": "ehr-api"})],
                  HPAS: [plain_hpa()]}, ("keda",),
                 ports.Floor("ehr-api", "h-2", 2, 30),
                 id="a ScaledObject scaling a StatefulSet of the same name is not the Deployment's"),
    pytest.param({HPAS: [plain_hpa()]}, ("keda",), ports.Floor("ehr-api", "h-2", 2, 30),
                 id="without KEDA installed the ScaledObject list is a 404 and the HPA holds the floor"),
    pytest.param({SCALED_OBJECTS: [], HPAS: []}, ("keda",), None, id="a workload nothing scales has no floor owner"),
]


@pytest.mark.parametrize(("lists", "options", "expected"), WHO_HOLDS_THE_FLOOR)
def test_the_floor_owner_of_a_workload(fake: FakeApi, lists: dict[str, list[dict[str, Any]]],
                                       options: tuple[str, ...], expected: ports.Floor | None) -> None:
    fake.lists = lists
    target = workloads(options).read("ehr", "Deployment", "ehr-api")
    assert target.floor == expected


HANDS_OFF = [
    pytest.param({SCALED_OBJECTS: [scaled_object(annotations={"autoscaling.keda.sh/paused-replicas": "3"})]},
                 ("keda",), "ScaledObject", "autoscaling.keda.sh/paused-replicas",
                 id="a ScaledObject paused at a replica count is left alone, and the status says why"),
    pytest.param({SCALED_OBJECTS: [scaled_object(annotations={"autoscaling.keda.sh/paused": "true"})]},
                 ("keda",), "ScaledObject", "autoscaling.keda.sh/paused",
                 id="a ScaledObject paused where it is is left alone"),
    pytest.param({HPAS: [keda_hpa()]}, (), "HorizontalPodAutoscaler", "controlled by ScaledObject ehr-api",
                 id="with --no-keda the HPA KEDA controls is left alone, never fought over"),
]


@pytest.mark.parametrize(("lists", "options", "kind", "why"), HANDS_OFF)
def test_a_floor_healthscale_must_not_move_says_why(fake: FakeApi, lists: dict[str, list[dict[str, Any]]],
                                                    options: tuple[str, ...], kind: str, why: str) -> None:
    fake.lists = {HPAS: [], **lists}
    floor = workloads(options).read("ehr", "Deployment", "ehr-api").floor
    assert floor is not None and floor.kind == kind
    assert floor.hands_off is not None and why in floor.hands_off


def test_with_keda_off_no_scaled_object_is_ever_listed(fake: FakeApi) -> None:
    fake.lists = {SCALED_OBJECTS: [scaled_object()], HPAS: [plain_hpa()]}
    workloads(()).read("ehr", "Deployment", "ehr-api")
    assert not [path for _, path, _, _ in fake.sent if "scaledobjects" in path]


def test_the_floor_is_written_to_the_scaled_object_as_a_merge_patch_holding_its_uid(fake: FakeApi) -> None:
    fake.lists = {SCALED_OBJECTS: [scaled_object()]}
    workloads().write_field("ehr", "ScaledObject", "ehr-api", "so-1", "minReplicaCount", 4)
    method, path, body, content_type = fake.sent[-1]
    assert (method, path, content_type) == ("PATCH", f"{SCALED_OBJECTS}/ehr-api", kube.MERGE_PATCH)
    assert body == {"metadata": {"uid": "so-1"}, "spec": {"minReplicaCount": 4}}
    assert not [path for _, path, _, _ in fake.sent if "horizontalpodautoscalers" in path]


def test_a_restore_writes_a_scaled_object_whatever_the_options(fake: FakeApi) -> None:
    # Options decide what is looked for; records are restored whatever they are.
    workloads(()).write_field("ehr", "ScaledObject", "ehr-api", "so-1", "minReplicaCount", 1)
    assert fake.sent[-1][:2] == ("PATCH", f"{SCALED_OBJECTS}/ehr-api")


def test_reading_a_scaled_objects_floor_lists_it_by_name(fake: FakeApi) -> None:
    fake.lists = {SCALED_OBJECTS: [scaled_object(floor=3), scaled_object("other", floor=9)]}
    written = workloads().read_field("ehr", "ScaledObject", "ehr-api", "minReplicaCount")
    assert written == ports.Written("ScaledObject", "ehr-api", "so-1", 3)


@pytest.mark.parametrize(
    ("kind", "field"),
    [pytest.param("ScaledObject", "minReplicas", id="minReplicas of a ScaledObject is refused"),
     pytest.param("HorizontalPodAutoscaler", "minReplicaCount", id="minReplicaCount of an HPA is refused")],
)
def test_a_floor_field_of_another_kind_is_refused_without_a_call(fake: FakeApi, kind: str, field: ports.Field) -> None:
    with pytest.raises(ports.ApiError, match="healthscale writes"):
        workloads().write_field("ehr", kind, "ehr-api", "u", field, 4)
    assert fake.sent == []


def test_the_floor_kinds_are_looked_for_scaled_objects_first() -> None:
    assert list(kinds.FLOORS) == ["ScaledObject", "HorizontalPodAutoscaler"]
