"""Node room (issue 13): the placeholder Deployment's shape (``domain.placeholders``), what
``service.room`` does with it each cycle against a fake port (Active, Preview, warm-up off, refused
writes), and the reservation a reconcile hands to it (``cycle.run`` with ``nodeProvisioningSeconds``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from healthscale import ports
from healthscale.api import clinicalslo, manifests
from healthscale.domain import placeholders, residency, warmup
from healthscale.service import room

from reconcile_fakes import Harness, schedule, slo

EU = residency.Policy("topology.kubernetes.io/region", ("eu-west-1",))


# --- What a placeholder pod asks for -----------------------------------------------------------------------


def container(**requests: str) -> dict[str, Any]:
    return {"name": "c", "image": "ehr:1", "resources": {"requests": dict(requests)}}


@pytest.mark.parametrize(
    ("pod_spec", "expected"),
    [
        pytest.param({"containers": [container(cpu="500m", memory="1Gi")]}, {"cpu": "500m", "memory": "1Gi"},
                     id="one container's requests are kept as written"),
        pytest.param({"containers": [container(cpu="250m", memory="128Mi"), container(cpu="1", memory="256Mi")]},
                     {"cpu": "1250m", "memory": "402653184"}, id="containers' requests add up"),
        pytest.param({"containers": [container(cpu="100m")], "initContainers": [container(cpu="2")]},
                     {"cpu": "2"}, id="an init container asking for more than all containers sets the request"),
        pytest.param({"containers": [container(cpu="1")], "initContainers": [container(cpu="500m", memory="64Mi")]},
                     {"cpu": "1", "memory": "64Mi"}, id="an init container's resource no container asks for counts"),
        pytest.param({"containers": [{"name": "c", "image": "ehr:1"}]}, {},
                     id="a pod without requests asks for nothing (placeholders then hold no room)"),
        pytest.param({"containers": [container(cpu="0.1"), container(cpu="0.05")]}, {"cpu": "150m"},
                     id="decimal cores add up to milli-cores"),
    ],
)
def test_a_placeholder_asks_for_what_one_target_pod_asks_for(pod_spec: dict[str, Any], expected: dict[str, str]) -> None:
    assert placeholders.requests(pod_spec) == expected


def test_an_unreadable_quantity_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError):
        placeholders.requests({"containers": [container(cpu="lots"), container(cpu="1")]})


TARGET_POD = {
    "containers": [container(cpu="500m", memory="1Gi")],
    "nodeSelector": {"node.kubernetes.io/instance-type": "m6i.large"},
    "tolerations": [{"key": "clinical", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["clinical"]}]}]}},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "ehr-api"}}, "topologyKey": "kubernetes.io/hostname"}]},
    },
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "DoNotSchedule",
                                   "labelSelector": {"matchLabels": {"app": "ehr-api"}}}],
    "serviceAccountName": "ehr-api",
    "volumes": [{"name": "phi", "secret": {"secretName": "ehr-db"}}],
}


def test_a_placeholder_goes_where_the_target_may_go_and_nowhere_else() -> None:
    body = placeholders.deployment("chart", "uid-1", TARGET_POD, 4, "pause:3.10", "healthscale-placeholder", EU)
    pod = body["spec"]["template"]["spec"]
    assert body["spec"]["replicas"] == 4
    assert pod["nodeSelector"] == TARGET_POD["nodeSelector"]
    assert pod["tolerations"] == TARGET_POD["tolerations"]
    # The target's required node affinity, with the ClinicalSLO's regions required in every term.
    assert pod["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["clinical"]},
                              {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]}]}}}
    assert pod["priorityClassName"] == "healthscale-placeholder"
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}
    assert pod["containers"][0]["image"] == "pause:3.10"


def test_a_placeholder_carries_nothing_that_ties_it_to_the_target_or_its_data() -> None:
    body = placeholders.deployment("chart", "uid-1", TARGET_POD, 1, "pause:3.10", "healthscale-placeholder", None)
    pod = body["spec"]["template"]["spec"]
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert "app" not in labels and labels == body["spec"]["selector"]["matchLabels"]
    # No volumes (no patient data), no service account token, no pod (anti-)affinity on the target's labels;
    # its topology spread counts placeholders among themselves.
    assert "volumes" not in pod and "serviceAccountName" not in pod and pod["automountServiceAccountToken"] is False
    assert set(pod["affinity"]) == {"nodeAffinity"}
    assert pod["topologySpreadConstraints"] == [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                                 "whenUnsatisfiable": "DoNotSchedule",
                                                 "labelSelector": {"matchLabels": labels}}]
    assert body["metadata"]["ownerReferences"] == [{
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "name": "chart", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": False}]


def test_a_target_without_node_affinity_still_gets_the_regions() -> None:
    pod = placeholders.deployment("chart", "", {"containers": [container(cpu="1")]}, 2, "pause", "pc", EU)["spec"]["template"]["spec"]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [EU.requirement()]}]}


@pytest.mark.parametrize("name", ["chart", "a" * 58, "a" * 59, "b" * 253], ids=["a short name", "the longest kept whole",
                                                                                 "one character longer", "the longest name"])
def test_placeholder_names_fit_a_label_and_stay_distinct(name: str) -> None:
    found = placeholders.name(name)
    assert len(found) <= 63 and found.endswith("-room")
    assert placeholders.name(name + "x") != found


# --- One cycle's room, against a fake port ------------------------------------------------------------------


@dataclasses.dataclass
class FakePlaceholders:
    applied: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deleted: list[str] = dataclasses.field(default_factory=list)
    refuse: ports.ApiError | ports.NotFound | None = None
    refuse_delete: ports.ApiError | None = None
    failure: str | None = None

    def pod_spec(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        if isinstance(self.refuse, ports.NotFound):
            raise self.refuse
        return TARGET_POD

    def apply(self, namespace: str, body: dict[str, Any]) -> ports.Room:
        if isinstance(self.refuse, ports.ApiError):
            raise self.refuse
        self.applied.append(body)
        return ports.Room(0, self.failure)

    def delete(self, namespace: str, name: str) -> None:
        if self.refuse_delete is not None:
            raise self.refuse_delete
        self.deleted.append(name)


RESOURCE = slo()
RESERVE_8 = warmup.Reservation(8, 10, 2, 1260, "schedule: vaccination-drive floor 10")
NOTHING = warmup.Reservation(0, 2, 2, 1260, "minimum: minReplicas 2")
HELD = clinicalslo.ReservationStatus(replicas=8, needed=10, reach_seconds=1260, placeholders="chart-room", applied=True)


def sync(port: FakePlaceholders | None, reservation: warmup.Reservation | None,
         previous: clinicalslo.ReservationStatus | None = None, not_applied: str | None = None) -> room.Outcome:
    return room.sync(port, room.Settings(), RESOURCE, reservation, previous, EU, not_applied)


def test_an_active_cycle_holds_the_room_and_says_so_once() -> None:
    port = FakePlaceholders()
    first = sync(port, RESERVE_8)
    assert [body["spec"]["replicas"] for body in port.applied] == [8]
    assert first.status is not None and (first.status.replicas, first.status.placeholders, first.status.applied) == (
        8, "chart-room", True)
    assert first.reserved == 8
    assert [(event.type, event.reason) for event in first.events] == [("Normal", "RoomReserved")]
    assert "room reserved for 8 more replicas: 10 needed within 21m" in first.events[0].message
    again = sync(port, RESERVE_8, first.status)
    assert again.events == () and len(port.applied) == 2, "written every cycle, reported only on change"


def test_room_no_longer_needed_is_released_to_zero_replicas_and_said() -> None:
    port = FakePlaceholders()
    outcome = sync(port, NOTHING, HELD)
    assert [body["spec"]["replicas"] for body in port.applied] == [0]
    assert [event.reason for event in outcome.events] == ["RoomReleased"]


@pytest.mark.parametrize(
    ("not_applied", "port", "fragment"),
    [
        pytest.param("Preview", FakePlaceholders(), "Preview: nothing reserved", id="Preview reports the room and creates nothing"),
        pytest.param("dry run", FakePlaceholders(), "dry run: nothing reserved", id="a dry run reports the room and creates nothing"),
        pytest.param(None, None, "--no-node-warmup", id="an operator without warm-up reports the room and says why"),
    ],
)
def test_room_is_only_reported_when_it_may_not_be_applied(not_applied: str | None, port: FakePlaceholders | None,
                                                         fragment: str) -> None:
    outcome = sync(port, RESERVE_8, not_applied=not_applied)
    assert outcome.status is not None and outcome.status.replicas == 8 and not outcome.status.applied
    assert fragment in outcome.status.message and outcome.status.placeholders is None
    assert outcome.reserved == 0
    assert port is None or port.applied == []


def test_switching_to_preview_deletes_the_placeholders_an_active_cycle_made() -> None:
    port = FakePlaceholders()
    outcome = sync(port, RESERVE_8, HELD, not_applied="Preview")
    assert port.deleted == ["chart-room"] and [event.reason for event in outcome.events] == ["RoomReleased"]


def test_turning_warm_up_off_deletes_the_placeholders_and_clears_the_status() -> None:
    port = FakePlaceholders()
    outcome = sync(port, None, HELD)
    assert port.deleted == ["chart-room"] and outcome.status is None


def test_a_refused_delete_keeps_the_placeholders_on_record_to_try_again() -> None:
    port = FakePlaceholders(refuse_delete=ports.ApiError("HTTP 503", retryable=True, status=503))
    outcome = sync(port, None, HELD)
    assert outcome.status == HELD
    assert [(event.type, event.reason) for event in outcome.events] == [("Warning", "RoomNotReleased")]


@pytest.mark.parametrize(
    "refusal",
    [
        pytest.param(ports.ApiError("HTTP 403 Forbidden", retryable=False, status=403), id="a forbidden write"),
        pytest.param(ports.ApiError("no answer from the API server", retryable=True, status=0), id="a timeout"),
        pytest.param(ports.NotFound("read Deployment ehr/ehr-api: not found"), id="a target that is gone"),
    ],
)
def test_a_refused_write_is_a_warning_and_never_an_exception(refusal: ports.ApiError | ports.NotFound) -> None:
    outcome = sync(FakePlaceholders(refuse=refusal), RESERVE_8)
    assert outcome.status is not None and not outcome.status.applied and outcome.status.replicas == 8
    assert [(event.type, event.reason) for event in outcome.events] == [("Warning", "RoomNotReserved")]
    assert str(refusal) in outcome.events[0].message


def test_placeholders_that_cannot_create_pods_are_a_warning() -> None:
    outcome = sync(FakePlaceholders(failure='pods "chart-room-x" is forbidden: no PriorityClass'), RESERVE_8)
    assert ("Warning", "RoomNotReserved") in [(event.type, event.reason) for event in outcome.events]


# --- The reconcile hands the reservation over ---------------------------------------------------------------


def warm_slo(seconds: int) -> clinicalslo.ClinicalSLO:
    document = RESOURCE.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["capacity"]["nodeProvisioningSeconds"] = seconds
    return manifests.parse(clinicalslo.ClinicalSLO, document)


LATER_SURGE = schedule("flu-clinic", floor=20, start="2026-05-28T20:45", end="2026-05-28T23:00")
"""A floor of 20 from 20:45, 15 minutes after NOW: beyond the plan's lookahead (60 s startup + 5 m)."""


def test_a_reconcile_with_node_provisioning_reserves_for_a_surge_it_will_not_yet_scale_for() -> None:
    harness = Harness(resource=warm_slo(900), schedules=(LATER_SURGE,))
    harness.workloads.deployment("ehr-api", 3)
    result = harness.cycle_at(0)
    assert result.decision is not None and result.decision.desired_replicas < 20
    assert result.reservation is not None
    assert result.reservation.needed == 20
    assert result.reservation.replicas == 20 - result.decision.desired_replicas
    assert "flu-clinic floor 20" in result.reservation.explanation()


def test_a_reconcile_without_node_provisioning_reserves_nothing() -> None:
    harness = Harness(resource=RESOURCE, schedules=(LATER_SURGE,))
    harness.workloads.deployment("ehr-api", 3)
    assert harness.cycle_at(0).reservation is None



def test_no_room_needed_and_none_held_creates_no_object() -> None:
    port = FakePlaceholders()
    outcome = sync(port, NOTHING)
    assert port.applied == [] and outcome.events == ()
    assert outcome.status is not None and outcome.status.applied and outcome.status.placeholders is None
