"""``service.release`` with in-memory fakes: every ClinicalSLO is restored from its status records and
its finalizer removed, whatever the spec, a refused restore or a vanished object; retryable
failures are tried again, and left for later only when the caller asks; the CLI prints one line
per object and says where the kubeconfig should be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from typing import Any

import prometheus_client
import pytest

from healthscale import cli, ports
from healthscale.runtime import handlers, metrics, sweeper
from healthscale.service import release

NS = "ehr"
DEPLOYMENT_UID = "uid-dep"
HPA_UID = "uid-hpa"


class FakeWorkloads:
    """Deployment ehr-api (replicas) and HPA ehr-api (minReplicas); ``refuse`` maps (kind, name) to
    the error a write raises."""

    def __init__(self, refuse: dict[tuple[str, str], Exception] | None = None, gone: bool = False) -> None:
        self.values = {("Deployment", "ehr-api"): (DEPLOYMENT_UID, 12), ("HorizontalPodAutoscaler", "ehr-api"): (HPA_UID, 9)}
        if gone:
            self.values.clear()
        self.refuse = dict(refuse or {})
        self.writes: list[tuple[str, str, int]] = []

    def read(self, namespace: str, kind: str, name: str) -> ports.Target:
        raise AssertionError("a release never reads the target")

    def read_field(self, namespace: str, kind: str, name: str, field: ports.Field) -> ports.Written:
        raise AssertionError("a release never reads a field")

    def write_field(self, namespace: str, kind: str, name: str, uid: str, field: ports.Field, value: int) -> None:
        error = self.refuse.get((kind, name))
        if error is not None:
            raise error
        current = self.values.get((kind, name))
        if current is None or (uid and current[0] != uid):
            raise ports.NotFound(f"{kind} {name} not found")
        self.values[(kind, name)] = (current[0], value)
        self.writes.append((kind, name, value))

    def pods(self, namespace: str, selector: str) -> list[str]:
        return []

    def set_deletion_costs(self, namespace: str, costs: dict[str, int]) -> None:
        pass


class FakeSLOs:
    def __init__(self, items: list[dict[str, Any]], refuse_finalizer: Exception | None = None) -> None:
        self.items = {(item["metadata"]["namespace"], item["metadata"]["name"]): item for item in items}
        self.refuse_finalizer = refuse_finalizer
        self.events: list[tuple[str, str, str]] = []
        self.forgotten: list[str] = []

    def list_all(self) -> list[dict[str, Any]]:
        return list(self.items.values())

    def list_namespace(self, namespace: str) -> list[dict[str, Any]]:
        return [item for key, item in self.items.items() if key[0] == namespace]

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        if self.refuse_finalizer is not None:
            raise self.refuse_finalizer
        item = self.items.get((namespace, name))
        if item is None:
            raise ports.NotFound(f"ClinicalSLO {name} not found")
        item["metadata"]["finalizers"] = [f for f in item["metadata"].get("finalizers", []) if f != finalizer]

    def forget_records(self, namespace: str, name: str) -> None:
        self.forgotten.append(name)

    def post_event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def finalizers(self, name: str) -> list[str]:
        return list(self.items[(NS, name)]["metadata"].get("finalizers", []))


def slo(name: str = "ed-triage", status: Any = None, spec: Any = None, deleting: bool = True,
        finalizer: bool = True) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS, "uid": f"uid-{name}",
                                "finalizers": [handlers.FINALIZER, "other.io/keep"] if finalizer else ["other.io/keep"]}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": metadata,
            "spec": spec if spec is not None else {"journey": "x"}, "status": status or {}}


RAISED = {"originals": [{"kind": "Deployment", "name": "ehr-api", "uid": DEPLOYMENT_UID, "field": "replicas",
                         "value": 3}]}
HPA_RAISED = {"originals": [{"kind": "HorizontalPodAutoscaler", "name": "ehr-api", "uid": HPA_UID,
                             "field": "minReplicas", "value": 2}]}
FORBIDDEN = ports.ApiError("set replicas: HTTP 403 Forbidden", retryable=False, status=403)
TIMEOUT = ports.ApiError("set replicas: no answer from the API server", retryable=True, status=0)


@dataclasses.dataclass(frozen=True)
class Case:
    item: dict[str, Any]
    workloads: FakeWorkloads
    restored_to: dict[tuple[str, str], int]
    """(kind, name) -> value after the release, for the objects that exist."""
    unrestored: bool
    event_reasons: tuple[str, ...]
    forgotten: bool = False


CASES = {
    "a deleting ClinicalSLO that raised a Deployment gets its replicas back and loses its finalizer": Case(
        slo(status=RAISED), FakeWorkloads(), {("Deployment", "ehr-api"): 3}, False, ("Restored", "Released")),
    "an invalid spec with valid status records is restored and released all the same": Case(
        slo(status=RAISED, spec={"journey": 42, "capacity": "nonsense", "targetRef": None}), FakeWorkloads(),
        {("Deployment", "ehr-api"): 3}, False, ("Restored", "Released")),
    "an unreadable status part does not hide the records next to it": Case(
        slo(status={**HPA_RAISED, "conditions": "garbage", "desiredReplicas": "many"}), FakeWorkloads(),
        {("HorizontalPodAutoscaler", "ehr-api"): 2}, False, ("Restored", "Released")),
    "one malformed record does not hide the valid one beside it": Case(
        slo(status={"originals": [{"kind": "Pod"}, *RAISED["originals"]]}), FakeWorkloads(),
        {("Deployment", "ehr-api"): 3}, False, ("Restored", "Released")),
    "a legacy record without a uid (an older operator's) is restored": Case(
        slo(status={"original": {"kind": "HorizontalPodAutoscaler", "name": "ehr-api", "minReplicas": 4}}),
        FakeWorkloads(), {("HorizontalPodAutoscaler", "ehr-api"): 4}, False, ("Restored", "Released")),
    "a 403 on the restore is reported in a Warning and the finalizer is still removed": Case(
        slo(status=RAISED), FakeWorkloads(refuse={("Deployment", "ehr-api"): FORBIDDEN}),
        {("Deployment", "ehr-api"): 12}, True, ("RestoreFailed", "Released")),
    "a restore that keeps timing out is given up after the retries, reported, and released": Case(
        slo(status=RAISED), FakeWorkloads(refuse={("Deployment", "ehr-api"): TIMEOUT}),
        {("Deployment", "ehr-api"): 12}, True, ("RestoreFailed", "Released")),
    "no records means nothing to restore and the finalizer removed": Case(
        slo(status={}), FakeWorkloads(), {("Deployment", "ehr-api"): 12}, False, ("Released",)),
    "a target that is gone has nothing to restore and the ClinicalSLO is released": Case(
        slo(status=RAISED), FakeWorkloads(gone=True), {}, False, ("NothingToRestore", "Released")),
    "a target re-created under the same name (another uid) is never written": Case(
        slo(status={"originals": [{**RAISED["originals"][0], "uid": "uid-old"}]}), FakeWorkloads(),
        {("Deployment", "ehr-api"): 12}, False, ("NothingToRestore", "Released")),
    "a ClinicalSLO that is not being deleted (an uninstall) is restored, its records cleared, and released": Case(
        slo(status=RAISED, deleting=False), FakeWorkloads(), {("Deployment", "ehr-api"): 3}, False,
        ("Restored", "Released"), forgotten=True),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_release_restores_from_status_and_always_removes_the_finalizer(case: Case) -> None:
    slos = FakeSLOs([case.item])
    outcome = release.release_one(case.workloads, slos, case.item, sleep=lambda _: None)
    for key, value in case.restored_to.items():
        assert case.workloads.values[key][1] == value, key
    assert bool(outcome.unrestored) == case.unrestored, outcome
    assert outcome.released and slos.finalizers(case.item["metadata"]["name"]) == ["other.io/keep"]
    assert tuple(reason for _, reason, _ in slos.events) == case.event_reasons
    if case.unrestored:
        warning = next(message for type_, reason, message in slos.events if type_ == "Warning")
        assert "Deployment ehr-api replicas 3" in warning  # names exactly what was left
        assert "LEFT" in outcome.line()
    assert (slos.forgotten == ["ed-triage"]) == case.forgotten
    assert outcome.ok == (not case.unrestored)


def test_the_finalizer_name_is_the_one_kopf_stores() -> None:
    assert release.FINALIZER == handlers.FINALIZER


def test_a_retryable_failure_is_retried_and_can_succeed_on_a_later_try() -> None:
    workloads = FakeWorkloads(refuse={("Deployment", "ehr-api"): TIMEOUT})
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        workloads.refuse.clear()  # the API server answers again

    item = slo(status=RAISED)
    outcome = release.release_one(workloads, FakeSLOs([item]), item, sleep=sleep)
    assert outcome.ok and workloads.values[("Deployment", "ehr-api")][1] == 3 and sleeps == [1.0]


def test_without_giving_up_a_retryable_failure_keeps_the_finalizer_for_a_later_try() -> None:
    item = slo(status=RAISED)
    slos = FakeSLOs([item])
    outcome = release.release_one(FakeWorkloads(refuse={("Deployment", "ehr-api"): TIMEOUT}), slos, item,
                                  give_up=False, sleep=lambda _: None)
    assert outcome.retry_later and not outcome.released
    assert handlers.FINALIZER in slos.finalizers("ed-triage") and not slos.events


def test_a_clinicalslo_that_vanished_meanwhile_counts_as_released() -> None:
    item = slo(status={})
    outcome = release.release_one(FakeWorkloads(), FakeSLOs([]), item)
    assert outcome.ok and "already gone" in outcome.line()


def test_a_refused_finalizer_removal_is_reported_not_raised() -> None:
    item = slo(status=RAISED)
    outcome = release.release_one(FakeWorkloads(), FakeSLOs([item], refuse_finalizer=FORBIDDEN), item)
    assert not outcome.ok and "could not remove the finalizer" in outcome.line()


def test_a_dry_run_plan_names_each_record_and_changes_nothing() -> None:
    outcome = release.plan(slo(status=RAISED))
    assert outcome.restored == ("would restore Deployment ehr-api replicas 3",) and not outcome.released


def test_only_deleting_selects_the_clinicalslos_being_deleted() -> None:
    items = [slo("a"), slo("b", deleting=False)]
    assert [item["metadata"]["name"] for item in release.select(items, only_deleting=True)] == ["a"]
    assert len(release.select(items, only_deleting=False)) == 2


class FakeOperator:
    def __init__(self, pods: list[int]) -> None:
        self.pods = pods
        self.scaled: list[str] = []

    def scale_to_zero(self, namespace: str, name: str) -> str:
        self.scaled.append(f"{namespace}/{name}")
        return "app=healthscale"

    def pods_left(self, namespace: str, selector: str) -> int:
        return self.pods.pop(0) if len(self.pods) > 1 else self.pods[0]


def test_stopping_the_operator_waits_until_its_pods_are_gone() -> None:
    operator = FakeOperator([2, 1, 0])
    said = release.stop_operator(operator, "hs", "healthscale", sleep=lambda _: None)
    assert operator.scaled == ["hs/healthscale"] and "pods are gone" in said


def test_stopping_the_operator_gives_up_waiting_after_the_timeout_and_says_so() -> None:
    clock = iter(range(0, 1000, 50))
    said = release.stop_operator(FakeOperator([1]), "hs", "healthscale", timeout=120, sleep=lambda _: None,
                                 clock=lambda: float(next(clock)))
    assert "1 pod(s) still there" in said


def test_the_command_says_to_set_kubeconfig_when_there_is_no_cluster(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Any) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(["release"])
    assert code == 2 and "KUBECONFIG" in stderr.getvalue() and "Traceback" not in stderr.getvalue()


# ------------------------------------------------------------------------------ runtime.sweeper

PATTERNS = ["hs-*", "!*-pr-*, *pr-123", "myapp-*, !*-pr-*, *pr-123", "ehr", " a-* , !a-b "]
NAMES = ["hs-x", "ehr", "myapp-pr-123", "myapp-pr-456", "otherapp-pr-123", "a-c", "a-b", "other"]


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda pattern: f"pattern {pattern!r} matches as Kopf's does")
def test_namespace_patterns_match_as_kopf_matches_them(pattern: str) -> None:
    from kopf._cogs.structs import references

    for name in NAMES:
        assert sweeper.matches(name, pattern) == references.match_namespace(references.NamespaceName(name), pattern), name


class FakeNamespaces:
    def __init__(self, terminating: set[str] | Exception) -> None:
        self.value = terminating

    def terminating(self) -> set[str]:
        if isinstance(self.value, Exception):
            raise self.value
        return set(self.value)


def deleting_since(name: str, namespace: str, seconds_ago: float, now: float) -> dict[str, Any]:
    item = slo(name, status=RAISED)
    item["metadata"]["namespace"] = namespace
    item["metadata"]["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - seconds_ago))
    return item


SWEEPS = {
    "a fresh deletion in a Terminating namespace matched by a glob is released at once":
        (("hs-*",), {"hs-a"}, [("a", "hs-a", 5)], ["a"]),
    "a fresh deletion in a namespace that is not Terminating is left to Kopf's handler":
        (("hs-*",), set(), [("a", "hs-a", 5)], []),
    "a deletion older than the grace period in an exact namespace is released":
        (("hs-a",), set(), [("a", "hs-a", 90)], ["a"]),
    "cluster-wide, only deletions older than the grace period are released":
        ((), set(), [("a", "hs-a", 5), ("b", "hs-b", 90)], ["b"]),
    "a namespace the patterns do not match is never touched":
        (("hs-*",), {"other"}, [("a", "other", 500)], []),
    "without namespace list rights the exact names are still swept after the grace period":
        (("hs-a", "x-*"), FORBIDDEN, [("a", "hs-a", 90), ("b", "hs-a", 5)], ["a"]),
}


@pytest.mark.parametrize("case", SWEEPS.values(), ids=SWEEPS.keys())
def test_the_sweeper_releases_deletions_kopf_no_longer_serves(case: Any) -> None:
    patterns, terminating, objects, released = case
    now = time.time()
    slos = FakeSLOs([deleting_since(name, namespace, ago, now) for name, namespace, ago in objects])
    workloads = FakeWorkloads()
    done = sweeper.Sweeper(sweeper.Config(patterns), slos, workloads, FakeNamespaces(terminating)).sweep(now)
    assert sorted(outcome.name for outcome in done) == released
    for name, namespace, _ in objects:
        held = handlers.FINALIZER in slos.items[(namespace, name)]["metadata"]["finalizers"]
        assert held == (name not in released), name
    assert (workloads.values[("Deployment", "ehr-api")][1] == 3) == bool(released)


def test_the_sweeper_keeps_a_retryable_failure_for_the_next_pass_until_it_gives_up() -> None:
    now = time.time()
    workloads = FakeWorkloads(refuse={("Deployment", "ehr-api"): TIMEOUT})
    fresh = FakeSLOs([deleting_since("a", "hs-a", 90, now)])
    assert not sweeper.Sweeper(sweeper.Config(("hs-a",)), fresh, workloads, FakeNamespaces(set())).sweep(now)[0].released
    old = FakeSLOs([deleting_since("a", "hs-a", sweeper.GIVE_UP_SECONDS + 1, now)])
    outcome = sweeper.Sweeper(sweeper.Config(("hs-a",)), old, workloads, FakeNamespaces(set())).sweep(now)[0]
    assert outcome.released and outcome.unrestored
    assert ("Warning", "RestoreFailed") in [(type_, reason) for type_, reason, _ in old.events]


def test_the_sweeper_forgets_the_series_of_what_it_releases() -> None:
    # Kopf's deletion handler, which forgets them otherwise, never runs for these objects.
    now = time.time()
    metrics.DESIRED.labels("hs-a", "a").set(4)
    metrics.CYCLE_ERRORS.labels("hs-a", "a", "ApiError").inc()
    metrics.DESIRED.labels("hs-a", "kept").set(5)
    slos = FakeSLOs([deleting_since("a", "hs-a", 5, now)])
    assert [outcome.name for outcome in sweeper.Sweeper(
        sweeper.Config(("hs-*",)), slos, FakeWorkloads(), FakeNamespaces({"hs-a"})).sweep(now)] == ["a"]
    registry = prometheus_client.REGISTRY
    assert registry.get_sample_value("healthscale_desired_replicas", {"namespace": "hs-a", "clinicalslo": "a"}) is None
    assert registry.get_sample_value("healthscale_cycle_errors_total",
                                     {"namespace": "hs-a", "clinicalslo": "a", "cause": "ApiError"}) is None
    assert registry.get_sample_value("healthscale_desired_replicas", {"namespace": "hs-a", "clinicalslo": "kept"}) == 5
    metrics.forget("hs-a", "kept")


class FakePlaceholders:
    def __init__(self, refuse: ports.ApiError | None = None) -> None:
        self.refuse = refuse
        self.deleted: list[str] = []

    def pod_spec(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        raise AssertionError("a release never reads a template")

    def apply(self, namespace: str, body: dict[str, Any]) -> ports.Room:
        raise AssertionError("a release never holds room")

    def delete(self, namespace: str, name: str) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.deleted.append(name)


HOLDING_ROOM = {**RAISED, "reservation": {"replicas": 5, "needed": 6, "reachSeconds": 1260,
                                          "placeholders": "ed-triage-room", "applied": True}}


def test_an_uninstall_deletes_the_placeholders_so_no_node_is_held_without_an_operator() -> None:
    item = slo(status=HOLDING_ROOM, deleting=False)
    slos, room = FakeSLOs([item]), FakePlaceholders()
    outcome = release.release_one(FakeWorkloads(), slos, item, placeholders=room)
    assert room.deleted == ["ed-triage-room"] and outcome.ok
    assert "placeholder Deployment ed-triage-room deleted" in outcome.line()
    assert [reason for _, reason, _ in slos.events] == ["Restored", "RoomReleased", "Released"]
    assert "would delete placeholder Deployment ed-triage-room" in release.plan(item).line()


def test_placeholders_that_cannot_be_deleted_are_named_as_left_and_the_finalizer_still_goes() -> None:
    item = slo(status=HOLDING_ROOM)
    slos = FakeSLOs([item])
    outcome = release.release_one(FakeWorkloads(), slos, item, sleep=lambda _: None, placeholders=FakePlaceholders(
        ports.ApiError("delete placeholder Deployment ehr/ed-triage-room: HTTP 403 Forbidden", retryable=False,
                       status=403)))
    assert outcome.released and not outcome.ok
    assert "LEFT: placeholder Deployment ed-triage-room" in outcome.line()
    assert ("Warning", "RestoreFailed") in [(type_, reason) for type_, reason, _ in slos.events]
