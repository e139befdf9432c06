"""Deferring non-critical work around a surge, on the real control plane (issue 16).

A SurgeSchedule's ``spec.defer`` selects a report generator (Deployment), an analytics
StatefulSet, an export CronJob and a running imaging Job; a ClinicalSLO's target carries the same
label. The surge window opens a few minutes after the test starts. The operator (``healthscale
run``, its deferral loop every 20 s) must:

- defer each selected object from ``start - leadTime``: Deployment and StatefulSet shrunk to
  ``spec.defer.replicas``, CronJob and Job suspended (the Job is running: ``interruptRunning``);
- never touch the ClinicalSLO's target, and say so in ``status.notDeferred``;
- keep someone else's change made mid-window (the StatefulSet scaled by hand), and report it;
- after the window, put back exactly what was there, clear the records and take its finalizer off.

The fault tests kill the operator mid-window, make restores fail with a ValidatingAdmissionPolicy,
delete a deferred object, relabel one, and delete the SurgeSchedule mid-window.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client

from clusterlib import GROUP, REPO_ROOT, VERSION, DevCluster, deployment, release_and_delete, running_operator, wait_until

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:6]
DEFERRABLE = {"healthscale.io/deferrable": "true"}
FINALIZER = "healthscale.io/restore-deferred"
CYCLE = 5
"""The operators here run the deferral loop every CYCLE seconds (--deferral-seconds; 20 by default)."""
FAST = ("--no-keda", "--deferral-seconds", str(CYCLE))


@pytest.fixture(scope="module")
def operator(devcluster: DevCluster, api: k8s_client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with running_operator(devcluster, log, "hs-defer-*", *FAST):
        yield log


@pytest.fixture
def namespace(api: k8s_client.ApiClient) -> Iterator[str]:
    name = f"hs-defer-{RUN}-{uuid.uuid4().hex[:4]}"
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=name)))
    yield name
    release_and_delete(api, name)


def custom(api: k8s_client.ApiClient) -> k8s_client.CustomObjectsApi:
    return k8s_client.CustomObjectsApi(api)


def local(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))


def schedule(namespace: str, start: float, end: float, lead_seconds: int, *, replicas: int = 0,
             interrupt_running: bool = True, name: str = "flu-clinic") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "SurgeSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"timezone": "UTC", "selector": {"matchLabels": {"healthscale.io/journey-group": "emergency"}},
                 "surges": [{"name": "flu-clinic", "start": local(start), "end": local(end),
                             "leadTime": f"{lead_seconds}s", "minReplicas": 1}],
                 "defer": {"selector": {"matchLabels": DEFERRABLE}, "replicas": replicas,
                           "interruptRunning": interrupt_running}},
    }


def clinical_slo(namespace: str, mode: str = "Preview", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO",
        "metadata": {"name": "ed-triage", "namespace": namespace, "labels": labels or {}},
        "spec": {"journey": "ED triage screens", "criticality": "critical", "mode": mode,
                 "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"},
                 "indicators": {"demand": "vector(2)"},
                 "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 10, "startupSeconds": 30},
                 "forecast": {"history": "1d", "step": "1m", "horizon": "30m"}},
    }


def labelled(api: k8s_client.ApiClient, namespace: str, kind: str, name: str) -> None:
    """Put the deferrable label on an object."""
    body = {"metadata": {"labels": DEFERRABLE}}
    if kind == "Deployment":
        k8s_client.AppsV1Api(api).patch_namespaced_deployment(name, namespace, body)
    elif kind == "StatefulSet":
        k8s_client.AppsV1Api(api).patch_namespaced_stateful_set(name, namespace, body)


def stateful_set(api: k8s_client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    container = k8s_client.V1Container(name="app", image="registry.k8s.io/pause:3.10")
    k8s_client.AppsV1Api(api).create_namespaced_stateful_set(namespace, k8s_client.V1StatefulSet(
        metadata=k8s_client.V1ObjectMeta(name=name, labels=DEFERRABLE),
        spec=k8s_client.V1StatefulSetSpec(
            replicas=replicas, service_name=name, selector=k8s_client.V1LabelSelector(match_labels=labels),
            template=k8s_client.V1PodTemplateSpec(metadata=k8s_client.V1ObjectMeta(labels=labels),
                                                  spec=k8s_client.V1PodSpec(containers=[container])))))


def job_template(name: str) -> k8s_client.V1PodTemplateSpec:
    container = k8s_client.V1Container(name="work", image="registry.k8s.io/pause:3.10")
    return k8s_client.V1PodTemplateSpec(metadata=k8s_client.V1ObjectMeta(labels={"app": name}),
                                        spec=k8s_client.V1PodSpec(containers=[container], restart_policy="Never"))


def cron_job(api: k8s_client.ApiClient, namespace: str, name: str) -> None:
    k8s_client.BatchV1Api(api).create_namespaced_cron_job(namespace, k8s_client.V1CronJob(
        metadata=k8s_client.V1ObjectMeta(name=name, labels=DEFERRABLE),
        spec=k8s_client.V1CronJobSpec(schedule="0 3 * * *", job_template=k8s_client.V1JobTemplateSpec(
            spec=k8s_client.V1JobSpec(template=job_template(name))))))


def job(api: k8s_client.ApiClient, namespace: str, name: str) -> None:
    k8s_client.BatchV1Api(api).create_namespaced_job(namespace, k8s_client.V1Job(
        metadata=k8s_client.V1ObjectMeta(name=name, labels=DEFERRABLE),
        spec=k8s_client.V1JobSpec(template=job_template(name), backoff_limit=0)))


def state(api: k8s_client.ApiClient, namespace: str) -> dict[str, Any]:
    """Each object's deferred field now."""
    apps, batch = k8s_client.AppsV1Api(api), k8s_client.BatchV1Api(api)
    found: dict[str, Any] = {}
    for item in apps.list_namespaced_deployment(namespace).items:
        found[f"Deployment/{item.metadata.name}"] = item.spec.replicas
    for item in apps.list_namespaced_stateful_set(namespace).items:
        found[f"StatefulSet/{item.metadata.name}"] = item.spec.replicas
    for item in batch.list_namespaced_cron_job(namespace).items:
        found[f"CronJob/{item.metadata.name}"] = bool(item.spec.suspend)
    for item in batch.list_namespaced_job(namespace).items:
        if not item.metadata.owner_references:
            found[f"Job/{item.metadata.name}"] = bool(item.spec.suspend)
    return found


def schedule_of(api: k8s_client.ApiClient, namespace: str, name: str = "flu-clinic") -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = custom(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", name)
    except k8s_client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def events(api: k8s_client.ApiClient, namespace: str, reason: str) -> list[k8s_client.CoreV1Event]:
    return [item for item in k8s_client.CoreV1Api(api).list_namespaced_event(namespace).items if item.reason == reason]


def events_on(api: k8s_client.ApiClient, namespace: str, reason: str,
              names: set[str]) -> list[k8s_client.CoreV1Event] | None:
    """The Events of this reason once there is one on each of ``names``, else None."""
    found = events(api, namespace, reason)
    return found if {item.involved_object.name for item in found} >= names else None


def job_started(api: k8s_client.ApiClient, namespace: str, name: str) -> bool:
    return k8s_client.BatchV1Api(api).read_namespaced_job(name, namespace).status.start_time is not None


def test_a_surge_defers_every_selected_kind_spares_the_clinical_target_keeps_a_hand_change_and_puts_back_the_rest(
        devcluster: DevCluster, api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    deployment(api, namespace, "report-generator", 4)
    labelled(api, namespace, "Deployment", "report-generator")
    deployment(api, namespace, "ehr-api", 3)
    labelled(api, namespace, "Deployment", "ehr-api")
    stateful_set(api, namespace, "analytics", 2)
    cron_job(api, namespace, "exports")
    job(api, namespace, "imaging-post")
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", clinical_slo(namespace))
    wait_until("the imaging Job started", lambda: job_started(api, namespace, "imaging-post"))
    before = state(api, namespace)
    assert before == {"Deployment/report-generator": 4, "Deployment/ehr-api": 3, "StatefulSet/analytics": 2,
                      "CronJob/exports": False, "Job/imaging-post": False}

    now = time.time()
    start, end, lead = now + 60, now + 130, 30
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules",
                                                schedule(namespace, start, end, lead))
    first = wait_until("the deferral status before the window", lambda: (schedule_of(api, namespace) or {}).get(
        "status", {}).get("deferral"), timeout=60)
    if time.time() < start - lead - 5:
        assert first.startswith("not in force"), first
        assert state(api, namespace) == before, "nothing is deferred before start - leadTime"

    deferred = {"Deployment/report-generator": 0, "Deployment/ehr-api": 3, "StatefulSet/analytics": 0,
                "CronJob/exports": True, "Job/imaging-post": True}
    wait_until("every selected object deferred", lambda: state(api, namespace) == deferred,
               timeout=start - time.time() + CYCLE + 30)
    assert time.time() < start, "deferral starts at start - leadTime, before the window opens"
    status = (schedule_of(api, namespace) or {})["status"]
    assert status["deferredCount"] == 4
    assert {(item["kind"], item["name"]) for item in status["deferred"]} == {
        ("Deployment", "report-generator"), ("StatefulSet", "analytics"), ("CronJob", "exports"), ("Job", "imaging-post")}
    originals = {item["name"]: item["original"] for item in status["deferred"]}
    assert originals == {"report-generator": {"replicas": 4}, "analytics": {"replicas": 2},
                         "exports": {"suspend": False}, "imaging-post": {"suspend": False}}
    assert all(item["cause"] == "Surge" and item["causeName"] == "flu-clinic" for item in status["deferred"])
    assert {(item["name"], item["reason"]) for item in status["notDeferred"]} == {("ehr-api", "ClinicalTarget")}
    assert status["deferral"].startswith("in force until") and "surge flu-clinic" in status["deferral"]
    assert FINALIZER in (schedule_of(api, namespace) or {})["metadata"]["finalizers"]
    deferred_events = wait_until("a Deferred Event on the schedule and on each deferred object", lambda: events_on(
        api, namespace, "Deferred", {"flu-clinic", "report-generator", "analytics", "exports", "imaging-post"}),
        timeout=30)
    assert all("surge flu-clinic" in item.message for item in deferred_events)
    printed = devcluster.kubectl("get", "surgeschedules", "-n", namespace)
    header, row = printed.splitlines()[:2]
    column = header.index("DEFERRED")
    assert row[column:].split()[0] == "4", printed

    # Someone scales the StatefulSet by hand mid-window: their change wins.
    k8s_client.AppsV1Api(api).patch_namespaced_stateful_set_scale("analytics", namespace, {"spec": {"replicas": 1}})
    wait_until("the hand change reported", lambda: any(
        item["name"] == "analytics" and item["reason"] == "ChangedByOthers"
        for item in (schedule_of(api, namespace) or {}).get("status", {}).get("notDeferred", [])), timeout=2 * CYCLE + 25)
    assert state(api, namespace)["StatefulSet/analytics"] == 1

    restored = {**before, "StatefulSet/analytics": 1}
    wait_until("everything put back after the window", lambda: state(api, namespace) == restored,
               timeout=end - time.time() + CYCLE + 30)
    assert time.time() >= end - 1, "nothing is restored before the window ends"
    settled = wait_until("the records cleared and the finalizer off", lambda: (
        found if (found := schedule_of(api, namespace)) and not found["status"].get("deferred")
        and FINALIZER not in (found["metadata"].get("finalizers") or []) else None), timeout=2 * CYCLE + 25)
    assert settled["status"]["deferredCount"] == 0
    assert settled["status"]["deferral"].startswith("not in force")
    # Events are posted once the cycle's records are saved: a moment after the status shows it.
    restored_events = wait_until("a Restored Event on the schedule and on each restored object", lambda: events_on(
        api, namespace, "Restored", {"flu-clinic", "report-generator", "exports", "imaging-post"}), timeout=30)
    assert all("surge flu-clinic" in item.message for item in restored_events)
    assert not [item for item in restored_events if item.involved_object.name == "analytics"], \
        "the hand-scaled StatefulSet is never written back"
    assert k8s_client.AppsV1Api(api).read_namespaced_deployment("ehr-api", namespace).spec.replicas == 3


def labelled_deployment(api: k8s_client.ApiClient, namespace: str, name: str, replicas: int) -> None:
    deployment(api, namespace, name, replicas)
    labelled(api, namespace, "Deployment", name)


def deferred_names(api: k8s_client.ApiClient, namespace: str, name: str = "flu-clinic") -> set[str]:
    return {item["name"] for item in ((schedule_of(api, namespace, name) or {}).get("status") or {}).get("deferred", [])}


def freeze(api: k8s_client.ApiClient, namespace: str, deployment_name: str) -> str:
    """A ValidatingAdmissionPolicy that refuses any change of this Deployment's replicas away from 0
    (the API server answers the restore with a refusal); its name (the binding's too)."""
    name = f"hs-freeze-{namespace}"
    registration = k8s_client.AdmissionregistrationV1Api(api)
    registration.create_validating_admission_policy({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                         "operations": ["UPDATE"], "resources": ["deployments"]}]},
                 "matchConditions": [{"name": "this-one", "expression": f"object.metadata.name == '{deployment_name}'"}],
                 "validations": [{"expression": "object.spec.replicas == 0", "message": "frozen at 0 by the test"}]}})
    registration.create_validating_admission_policy_binding({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}}})
    return name


def thaw(api: k8s_client.ApiClient, name: str) -> None:
    registration = k8s_client.AdmissionregistrationV1Api(api)
    for delete in (registration.delete_validating_admission_policy_binding, registration.delete_validating_admission_policy):
        try:
            delete(name)
        except k8s_client.ApiException as error:
            if error.status != 404:
                raise


def test_a_killed_operator_a_refused_restore_a_deleted_and_a_relabelled_object_leave_nothing_deferred_after_the_window(
        devcluster: DevCluster, api: k8s_client.ApiClient, tmp_path: Path) -> None:
    namespace = f"hs-deferk-{RUN}"  # not the module operator's: this test runs (and kills) its own
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    log = tmp_path / "operator.log"
    frozen = ""
    try:
        for name, count in (("reports", 4), ("exports-api", 3), ("relabelled", 2), ("deleted-mid", 2)):
            labelled_deployment(api, namespace, name, count)
        now = time.time()
        start, end, lead = now + 40, now + 110, 30
        custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules",
                                                    schedule(namespace, start, end, lead))
        with running_operator(devcluster, log, namespace, *FAST) as first:
            wait_until("all four deferred", lambda: set(state(api, namespace).values()) == {0},
                       timeout=start - time.time() + CYCLE + 30)
            # Deleted mid-window: its record is dropped, nothing is written to a new object of its name.
            k8s_client.AppsV1Api(api).delete_namespaced_deployment("deleted-mid", namespace)
            wait_until("the deleted object's record dropped", lambda: "deleted-mid" not in deferred_names(api, namespace),
                       timeout=2 * CYCLE + 25)
            # Relabelled mid-window: no longer selected, so restored at once (inside the window).
            k8s_client.AppsV1Api(api).patch_namespaced_deployment(
                "relabelled", namespace, {"metadata": {"labels": {"healthscale.io/deferrable": None}}})
            wait_until("the relabelled object restored", lambda: state(api, namespace)["Deployment/relabelled"] == 2,
                       timeout=2 * CYCLE + 25)
            assert time.time() < end, "a relabelled object is restored while the window is still open"
            frozen = freeze(api, namespace, "exports-api")
            first.send_signal(signal.SIGKILL)  # mid-window, without a chance to clean up
            first.wait()
        assert (schedule_of(api, namespace) or {})["metadata"]["finalizers"] == [FINALIZER]
        assert deferred_names(api, namespace) == {"reports", "exports-api"}, "the records outlive the operator"
        time.sleep(max(0.0, end - time.time()) + 5)
        assert state(api, namespace) == {"Deployment/reports": 0, "Deployment/exports-api": 0,
                                         "Deployment/relabelled": 2}, "nobody restores while the operator is down"
        with running_operator(devcluster, log, namespace, *FAST, append=True):
            back = time.time()
            wait_until("the restartable restore done one cycle after the restart",
                       lambda: state(api, namespace)["Deployment/reports"] == 4, timeout=CYCLE + 30)
            restored_after = time.time() - back
            refused = wait_until("the refused restore reported", lambda: [
                item for item in events(api, namespace, "RestoreFailed") if "exports-api" in item.message],
                timeout=2 * CYCLE + 25)
            assert "frozen at 0 by the test" in refused[0].message
            assert state(api, namespace)["Deployment/exports-api"] == 0
            assert deferred_names(api, namespace) == {"exports-api"}, "a refused restore keeps its record"
            thaw(api, frozen)
            wait_until("the refused restore retried once the refusal is gone",
                       lambda: state(api, namespace)["Deployment/exports-api"] == 3, timeout=2 * CYCLE + 20)
            wait_until("the finalizer off once nothing is deferred", lambda: FINALIZER not in (
                (schedule_of(api, namespace) or {})["metadata"].get("finalizers") or []), timeout=2 * CYCLE + 25)
        assert restored_after < CYCLE + 30
        assert state(api, namespace) == {"Deployment/reports": 4, "Deployment/exports-api": 3, "Deployment/relabelled": 2}
        assert len([item for item in events(api, namespace, "RestoreFailed") if "exports-api" in item.message]) == 1, \
            "a restore refused for several cycles is reported once"
    finally:
        if frozen:
            thaw(api, frozen)
        release_and_delete(api, namespace)


def test_deleting_the_schedule_mid_window_restores_everything_and_the_schedule_goes(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    labelled_deployment(api, namespace, "report-generator", 3)
    cron_job(api, namespace, "exports")
    job(api, namespace, "notify-batch")
    wait_until("the notification Job started", lambda: job_started(api, namespace, "notify-batch"))
    now = time.time()
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules",
                                                schedule(namespace, now - 10, now + 900, 0, interrupt_running=False))
    wait_until("deferred", lambda: state(api, namespace) == {"Deployment/report-generator": 0, "CronJob/exports": True,
                                                              "Job/notify-batch": False}, timeout=2 * CYCLE + 25)
    running = wait_until("the running Job reported, not suspended", lambda: [
        item for item in ((schedule_of(api, namespace) or {}).get("status") or {}).get("notDeferred", [])
        if item["name"] == "notify-batch"], timeout=2 * CYCLE + 25)
    assert running[0]["reason"] == "Running", "a running Job is left alone without interruptRunning"
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", "flu-clinic")
    wait_until("the schedule gone", lambda: schedule_of(api, namespace) is None, timeout=2 * CYCLE + 25)
    assert state(api, namespace) == {"Deployment/report-generator": 3, "CronJob/exports": False,
                                     "Job/notify-batch": False}, "the finalizer held the schedule until all was put back"


def test_an_edited_selector_restores_what_it_no_longer_selects_and_preview_defers_nothing(
        api: k8s_client.ApiClient, operator: Path, namespace: str) -> None:
    labelled_deployment(api, namespace, "report-generator", 3)
    now = time.time()
    body = schedule(namespace, now - 10, now + 900, 0)
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", body)
    wait_until("deferred", lambda: state(api, namespace) == {"Deployment/report-generator": 0}, timeout=2 * CYCLE + 25)
    custom(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", "flu-clinic", {
        "spec": {"defer": {"selector": {"matchLabels": {"healthscale.io/deferrable": "nightly-only"}}}}})
    wait_until("restored once the selector no longer selects it",
               lambda: state(api, namespace) == {"Deployment/report-generator": 3}, timeout=2 * CYCLE + 25)
    assert "selector no longer selects it" in next(
        item.message for item in events(api, namespace, "Restored") if item.involved_object.kind == "Deployment")

    # Every ClinicalSLO the schedule selects in Preview: what would be deferred is reported, nothing changes.
    custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "clinicalslos", clinical_slo(
        namespace, mode="Preview", labels={"healthscale.io/journey-group": "emergency"}))
    custom(api).patch_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", "flu-clinic", {
        "spec": {"defer": {"selector": {"matchLabels": DEFERRABLE}}}})
    wait_until("the preview reported", lambda: "preview" in (
        (schedule_of(api, namespace) or {}).get("status") or {}).get("deferral", ""), timeout=2 * CYCLE + 25)
    would = wait_until("a WouldDefer Event", lambda: events(api, namespace, "WouldDefer"), timeout=30)
    assert "report-generator" in would[0].message
    time.sleep(3 * CYCLE)
    assert state(api, namespace) == {"Deployment/report-generator": 3}, "Preview changes nothing"
    assert len(events(api, namespace, "WouldDefer")) == 1, "reported once, not every cycle"


def test_healthscale_release_puts_back_what_a_schedule_deferred_and_removes_its_finalizer(
        devcluster: DevCluster, api: k8s_client.ApiClient, tmp_path: Path) -> None:
    namespace = f"hs-deferr-{RUN}"  # its own operator, stopped before the release as the uninstall hook does
    k8s_client.CoreV1Api(api).create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name=namespace)))
    try:
        labelled_deployment(api, namespace, "report-generator", 3)
        cron_job(api, namespace, "exports")
        now = time.time()
        custom(api).create_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules",
                                                    schedule(namespace, now - 10, now + 900, 0))
        with running_operator(devcluster, tmp_path / "operator.log", namespace, *FAST):
            wait_until("deferred", lambda: state(api, namespace) == {"Deployment/report-generator": 0,
                                                                      "CronJob/exports": True}, timeout=2 * CYCLE + 25)
        released = subprocess.run([sys.executable, "-m", "healthscale", "release", "--namespace", namespace, "--no-keda"],
                                  cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "KUBECONFIG": str(devcluster.kubeconfig)})
        assert released.returncode == 0, released.stdout + released.stderr
        assert "1 SurgeSchedule(s) with deferred work" in released.stdout, released.stdout
        assert state(api, namespace) == {"Deployment/report-generator": 3, "CronJob/exports": False}
        found = schedule_of(api, namespace) or {}
        assert FINALIZER not in (found["metadata"].get("finalizers") or [])
        assert not found["status"].get("deferred")
        custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, "surgeschedules", "flu-clinic")
        wait_until("the schedule deleted without an operator", lambda: schedule_of(api, namespace) is None, timeout=30)
    finally:
        release_and_delete(api, namespace)
