"""The reconcile with a KEDA ScaledObject scaling the target (issue 13, part 3), against in-memory fakes.

The ScaledObject's ``minReplicaCount`` is the floor healthscale raises, with the same bookkeeping and
fault guarantees as an HPA's ``minReplicas``: recorded before the first write, put back in Preview,
on delete and when the ScaledObject goes; never the Deployment's replicas (KEDA's to set) and never
KEDA's own HPA. A ScaledObject its owner paused is left alone and the status says so. Unless a test
says otherwise, the surge ``vaccination-drive`` holds a floor of 20 at NOW.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from healthscale import explain, ports
from healthscale.service import cycle, release
from reconcile_fakes import HPA, NOW, FakeWorkloads, Harness, Object, Write, refused, slo

DEPLOYMENT, SCALED_OBJECT = "Deployment", "ScaledObject"
PAUSED = "ScaledObject ehr-api is paused (autoscaling.keda.sh/paused-replicas: '3')"


@dataclasses.dataclass
class KedaWorkloads(FakeWorkloads):
    """``reconcile_fakes.FakeWorkloads`` plus ScaledObjects, which hold the floor of the workload
    they scale before any HPA does (as ``adapters.kinds.FLOORS`` orders them). ``paused``: the
    reason a paused ScaledObject is left alone (as the adapter words it), or None."""

    paused: str | None = None

    def scaled_object(self, name: str, floor: int, ceiling: int = 30, target: str = "ehr-api") -> Object:
        made = Object(SCALED_OBJECT, name, self._uid(), floor, max_replicas=ceiling, target=(DEPLOYMENT, target))
        self.objects[(SCALED_OBJECT, name)] = made
        return made

    def read(self, namespace: str, kind: str, name: str) -> ports.Target:
        target = super().read(namespace, kind, name)
        owner = next((item for item in self.objects.values()
                      if item.kind == SCALED_OBJECT and item.target == (kind, name)), None)
        if owner is None:
            return target
        return dataclasses.replace(target, floor=ports.Floor(owner.name, owner.uid, owner.value, owner.max_replicas,
                                                             SCALED_OBJECT, "minReplicaCount", self.paused))

    def write_field(self, namespace: str, kind: str, name: str, uid: str, field: ports.Field, value: int) -> None:
        if kind != SCALED_OBJECT:
            super().write_field(namespace, kind, name, uid, field, value)
            return
        self.log.append(f"workloads.write {kind}/{name}")
        if self.refuse and (error := self.refuse.pop(0)) is not None:
            raise error
        found = self.objects.get((kind, name))
        if found is None or uid != found.uid:
            raise ports.NotFound(f"{kind} {namespace}/{name} with uid {uid} not found")
        assert field == "minReplicaCount", f"wrote {field} of a ScaledObject"
        found.value = value
        self.writes.append(Write(kind, name, found.uid, field, value))


def world(replicas: int = 3, floor: int | None = 1, ceiling: int = 30, keda_hpa: bool = True,
          resource_mode: str = "Active") -> tuple[Harness, KedaWorkloads]:
    """A Deployment ``ehr-api`` scaled by a ScaledObject ``ehr-api`` (minReplicaCount ``floor``, none
    when None) and KEDA's HPA ``keda-hpa-ehr-api`` for it."""
    harness = Harness(resource=slo(mode=resource_mode))
    keda = KedaWorkloads(harness.log)
    harness.workloads = keda
    keda.deployment("ehr-api", replicas)
    if floor is not None:
        keda.scaled_object("ehr-api", floor, ceiling)
    if keda_hpa:
        keda.hpa("keda-hpa-ehr-api", max(floor or 1, 1), ceiling)
    return harness, keda


def record(keda: KedaWorkloads, value: int) -> tuple[str, str, str, int]:
    return (SCALED_OBJECT, "ehr-api", keda.get(SCALED_OBJECT, "ehr-api").uid, value)


def owner(harness: Harness) -> tuple[str, str, str] | None:
    found = next((item for item in harness.result.status.conditions if item.type == cycle.FLOOR_OWNER), None)
    return None if found is None else (found.status, found.reason, found.message)


@pytest.mark.parametrize(("floor", "ceiling", "raised"), [
    pytest.param(1, 30, 20, id="a ScaledObject at minReplicaCount 1 is raised to the surge floor 20"),
    pytest.param(0, 30, 20, id="a ScaledObject that scales to zero is raised to the surge floor 20"),
    pytest.param(1, 12, 12, id="the floor is never written above the ScaledObject's maxReplicaCount"),
    pytest.param(25, 30, 25, id="a ScaledObject already above the surge floor is not lowered"),
])
def test_the_floor_goes_to_the_scaled_object_never_to_keda_s_hpa_or_the_replicas(floor: int, ceiling: int,
                                                                                  raised: int) -> None:
    harness, keda = world(floor=floor, ceiling=ceiling)
    harness.cycle_at(0)
    assert keda.value(SCALED_OBJECT, "ehr-api") == raised
    assert {write.kind for write in keda.writes} <= {SCALED_OBJECT}, "only the ScaledObject is ever written"
    assert keda.value(DEPLOYMENT, "ehr-api") == 3 and keda.value(HPA, "keda-hpa-ehr-api") == max(floor, 1)
    if raised != floor:
        assert harness.originals() == [record(keda, floor)]
        assert harness.status.originals[0].field == "minReplicaCount"
        assert harness.status.originals[0].scales == "Deployment/ehr-api"
        message = next(event.message for event in harness.result.events if event.reason == "RaisedFloor")
        assert message.startswith(f"ScaledObject ehr-api minReplicaCount {floor} -> {raised}")
    found = owner(harness)
    assert found is not None and found[:2] == ("True", "Held") and found[2].startswith("ScaledObject ehr-api scales")


@pytest.mark.parametrize("leave", [
    pytest.param("preview", id="switching to Preview puts the original minReplicaCount back and keeps no record"),
    pytest.param("delete", id="deleting the ClinicalSLO puts the original minReplicaCount back"),
    pytest.param("release", id="healthscale release puts the original minReplicaCount back"),
])
def test_leaving_puts_the_scaled_objects_original_floor_back(leave: str) -> None:
    harness, keda = world(floor=2)
    harness.cycle_at(0)
    assert keda.value(SCALED_OBJECT, "ehr-api") == 20
    if leave == "preview":
        result = harness.cycle_at(5, resource=slo(mode="Preview"))
        assert "Restored" in [event.reason for event in result.events] and harness.originals() == []
    elif leave == "delete":
        assert harness.release().unrestored == ()
    else:
        item = {"metadata": {"name": "chart", "namespace": "ehr", "uid": "u0"},
                "status": {"originals": [original.wire() for original in harness.status.originals]}}
        outcome = release.release_one(harness.workloads, _NoSlos(), item, sleep=lambda _: None)
        assert outcome.ok and outcome.restored == ("restored ScaledObject ehr-api minReplicaCount to 2",)
    assert keda.value(SCALED_OBJECT, "ehr-api") == 2
    assert keda.writes_to(SCALED_OBJECT, "ehr-api") == [20, 2]


class _NoSlos:
    def list_all(self) -> list[dict[str, object]]:
        return []

    def list_namespace(self, namespace: str) -> list[dict[str, object]]:
        return []

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        pass

    def forget_records(self, namespace: str, name: str) -> None:
        pass

    def post_event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
        pass


def test_a_paused_scaled_object_is_left_alone_and_the_status_says_so() -> None:
    harness, keda = world(floor=1)
    keda.paused = PAUSED
    harness.cycle_at(0)
    assert keda.writes == [], "neither the ScaledObject, its HPA nor the Deployment is written"
    assert owner(harness) == ("False", "LeftToOwner", PAUSED)
    assert [event.reason for event in harness.result.events].count("FloorLeftToOwner") == 1
    assert harness.condition("Ready") == ("True", "Planned")
    ready = next(item for item in harness.result.status.conditions if item.type == "Ready")
    assert "not applied: ScaledObject ehr-api is left as it is" in ready.message
    harness.cycle_at(5)
    assert "FloorLeftToOwner" not in harness.reasons(), "the Event says it once, the condition stays"


def test_a_scaled_object_paused_after_its_floor_was_raised_keeps_its_record_and_deletion_restores_it() -> None:
    harness, keda = world(floor=1)
    harness.cycle_at(0)
    keda.paused = PAUSED
    harness.cycle_at(5)
    assert keda.writes_to(SCALED_OBJECT, "ehr-api") == [20], "nothing written while paused"
    assert harness.originals() == [record(keda, 1)]
    assert harness.release().unrestored == ()
    assert keda.value(SCALED_OBJECT, "ehr-api") == 1


def test_a_scaled_object_deleted_while_its_floor_is_held_hands_its_original_floor_to_the_deployment() -> None:
    harness, keda = world(floor=3, keda_hpa=False)
    harness.cycle_at(0)
    keda.get(DEPLOYMENT, "ehr-api").value = 20  # KEDA's HPA followed the floor
    keda.delete(SCALED_OBJECT, "ehr-api")
    harness.cycle_at(5)
    assert harness.originals() == [(DEPLOYMENT, "ehr-api", keda.get(DEPLOYMENT, "ehr-api").uid, 3)]
    assert harness.release().unrestored == ()
    assert keda.value(DEPLOYMENT, "ehr-api") == 3


def test_a_scaled_object_added_after_direct_scaling_takes_over_and_its_floor_is_what_deletion_restores() -> None:
    harness, keda = world(floor=None, keda_hpa=False)
    harness.cycle_at(0)
    assert keda.value(DEPLOYMENT, "ehr-api") == 20
    keda.scaled_object("ehr-api", 2)
    harness.cycle_at(5)
    assert "ManagedByScaledObject" in harness.reasons()
    assert harness.originals() == [record(keda, 2)]
    assert harness.release().unrestored == ()
    assert keda.value(SCALED_OBJECT, "ehr-api") == 2 and keda.value(DEPLOYMENT, "ehr-api") == 20, \
        "the Deployment's replicas are KEDA's to set: deletion writes only the ScaledObject"


def test_a_re_created_scaled_object_is_never_written_with_the_old_ones_record() -> None:
    harness, keda = world(floor=2)
    harness.cycle_at(0)
    keda.delete(SCALED_OBJECT, "ehr-api")
    keda.scaled_object("ehr-api", 5)
    harness.cycle_at(5)
    assert "TargetRecreated" in harness.reasons()
    assert harness.originals() == [record(keda, 5)], "the new ScaledObject's own floor is what is recorded"


def test_a_refused_restore_keeps_the_record_and_retries() -> None:
    harness, keda = world(floor=2)
    harness.cycle_at(0)
    keda.refuse = [refused(503)]
    result = harness.cycle_at(5, resource=slo(mode="Preview"))
    assert harness.condition("Ready") == ("False", "RestoreFailed") and result.retry_after == 15.0
    assert harness.originals() == [record(keda, 2)]
    harness.cycle_at(6, resource=slo(mode="Preview"))
    assert keda.value(SCALED_OBJECT, "ehr-api") == 2 and harness.originals() == []


def test_the_original_is_saved_before_the_first_write_to_the_scaled_object() -> None:
    harness, keda = world(floor=1)
    harness.records.fault = refused(503)
    harness.cycle_at(0)
    assert keda.writes == [], "no write without its record saved first"
    assert harness.condition("Ready") == ("False", "ScaleRefused")


def test_explain_names_the_scaled_object_as_the_floor_owner() -> None:
    harness, _ = world(floor=1)
    harness.cycle_at(0)
    resource = {"metadata": {"namespace": "ehr", "name": "chart", "generation": 1},
                "spec": {"targetRef": {"kind": "Deployment", "name": "ehr-api"}},
                "status": harness.status.model_dump(mode="json", by_alias=True, exclude_none=True)}
    text = explain.describe(resource, dt.datetime.fromtimestamp(NOW, dt.timezone.utc))
    assert "Floor owner:   ScaledObject ehr-api scales Deployment ehr-api" in text
    assert "ScaledObject ehr-api: minReplicaCount was 1 (it scales Deployment/ehr-api)" in text
