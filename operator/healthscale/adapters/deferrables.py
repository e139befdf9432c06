"""``ports.Deferrables``: the objects ``spec.defer`` acts on, read and written through the API.

Owns how a Deployment, StatefulSet, CronJob, Job or KEDA ScaledObject becomes a
``domain.deferral.Workload`` (its one deferred field, and what the plan needs to know: the
autoscaler that sets its replicas, whether a Job has started), how one field is written back, and
the SurgeSchedule's deferral status, finalizer and Events.

Every write is a test-and-set: the object is read, its uid and field are checked against the
plan's, and the merge patch carries ``metadata.uid`` and ``metadata.resourceVersion``, so that the
API server refuses it (409) when anything changed in between. Nothing is written on a guess.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

import kubernetes

from healthscale import ports
from healthscale.adapters import kinds, kube
from healthscale.domain import deferral

FINALIZER = "healthscale.io/restore-deferred"
"""Held on a SurgeSchedule while it has deferred something: its deletion first puts everything back."""
SCHEDULES = ("healthscale.io", "v1alpha1", "surgeschedules")
CLINICAL_SLOS = ("healthscale.io", "v1alpha1", "clinicalslos")


def _metadata(item: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = item.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _spec(item: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = item.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _items(listed: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [item for item in listed.get("items") or [] if isinstance(item, Mapping)]


def _job_finished(item: Mapping[str, Any]) -> bool:
    status = item.get("status") or {}
    return any(isinstance(condition, Mapping) and condition.get("type") in ("Complete", "Failed")
               and condition.get("status") == "True" for condition in status.get("conditions") or [])


def workload(kind: str, item: Mapping[str, Any], scaled_by: str | None = None,
             scaled_replicas: int | None = None) -> deferral.Workload:
    """One listed object as the plan sees it (raises KeyError/ValueError/TypeError on a shape the
    API does not send; ``kube.errors`` turns those into an ``ApiError``)."""
    metadata, spec = _metadata(item), _spec(item)
    labels = {str(key): str(value) for key, value in (metadata.get("labels") or {}).items()}
    started = finished = False
    scales = None
    if kind in ("Deployment", "StatefulSet"):
        replicas = spec.get("replicas")
        current = deferral.Value(replicas=1 if replicas is None else int(replicas))  # the API's default
    elif kind in ("CronJob", "Job"):
        current = deferral.Value(suspend=bool(spec.get("suspend")))
        if kind == "Job":
            started, finished = (item.get("status") or {}).get("startTime") is not None, _job_finished(item)
    elif kind == kinds.SCALED_OBJECT:
        paused = (metadata.get("annotations") or {}).get(deferral.PAUSED_REPLICAS_ANNOTATION)
        current = deferral.Value(paused_replicas=None if paused is None else str(paused))
        reference = spec.get("scaleTargetRef") or {}
        scales = f"{reference.get('kind') or 'Deployment'}/{reference.get('name') or ''}"
    else:
        raise ValueError(f"{kind} is not a kind spec.defer acts on")
    return deferral.Workload(kind=kind, name=str(metadata["name"]), uid=str(metadata["uid"]), current=current,
                             labels=labels, scaled_by=scaled_by if kind in ("Deployment", "StatefulSet") else None,
                             scaled_replicas=scaled_replicas, scales=scales, started=started, finished=finished)


def _body(field: str, value: deferral.Value) -> dict[str, Any]:
    """The merge patch that sets the one deferred field to ``value``."""
    if field == "pausedReplicas":
        # None removes the annotation (restoring "there was none").
        return {"metadata": {"annotations": {deferral.PAUSED_REPLICAS_ANNOTATION: value.paused_replicas}}}
    return {"spec": {field: getattr(value, field)}}


class Deferrables:
    """``ports.Deferrables`` over the API server. ``options``: the operator options that turn kinds on
    (``keda``); ScaledObjects are neither listed nor written without it."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = kube.TIMEOUT, options: Collection[str] = ("keda",),
                 namespaces: tuple[str, ...] = ()) -> None:
        self._api = kube.Api(api_client, timeout)
        self._custom = kubernetes.client.CustomObjectsApi(self._api.client)
        self._core = kubernetes.client.CoreV1Api(self._api.client)
        self._kinds = {kind: entry for kind, entry in kinds.DEFERRABLES.items()
                       if entry.option is None or entry.option in options}
        self._namespaces = namespaces
        self._instance = f"healthscale-{time.monotonic_ns() % 100000}"

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    # ------------------------------------------------------------------------------------ reads

    def _get(self, doing: str, group: str, version: str, namespace: str, resource: str, name: str) -> Mapping[str, Any]:
        """One object by name, as a list by field selector: the operator's RBAC lists and patches, and
        needs no get. NotFound when there is none."""
        for item in self._list(doing, group, version, namespace, resource, field_selector=f"metadata.name={name}"):
            if _metadata(item).get("name") == name:
                return item
        raise ports.NotFound(f"{doing}: not found")

    def _list(self, doing: str, group: str, version: str, namespace: str, resource: str,
              **kwargs: Any) -> list[Mapping[str, Any]]:
        listed = self._api.json(doing, self._custom.list_namespaced_custom_object, group, version, namespace,
                                resource, **kwargs)
        with kube.errors(doing):
            return _items(listed)

    def schedules(self) -> list[dict[str, Any]]:
        group, version, plural = SCHEDULES
        if not self._namespaces:
            doing = "list SurgeSchedules"
            listed = self._api.json(doing, self._custom.list_cluster_custom_object, group, version, plural)
            with kube.errors(doing):
                return [dict(item) for item in _items(listed)]
        found: list[dict[str, Any]] = []
        for namespace in self._namespaces:
            found += [dict(item) for item in self._list(f"list SurgeSchedules in {namespace}", group, version,
                                                        namespace, plural)]
        return found

    def clinical_slos(self, namespace: str) -> list[dict[str, Any]]:
        group, version, plural = CLINICAL_SLOS
        return [dict(item) for item in self._list(f"list ClinicalSLOs in {namespace}", group, version, namespace, plural)]

    def _scalers(self, namespace: str) -> dict[str, str]:
        """``Kind/name`` of each workload an autoscaler scales -> ``Autoscaler/name`` (ScaledObjects first:
        KEDA's own HPA scales the same workload, and the ScaledObject is the one to name)."""
        scalers: dict[str, str] = {}
        for entry in kinds.FLOORS.values():
            if entry.option is not None and entry.option not in {item.option for item in self._kinds.values()}:
                continue
            doing = f"list {entry.kind}s in {namespace}"
            try:
                items = self._list(doing, entry.group, entry.version, namespace, entry.resource)
            except ports.NotFound:
                continue  # the cluster serves no such resource: none scales anything
            with kube.errors(doing):
                for item in items:
                    reference = _spec(item).get("scaleTargetRef") or {}
                    key = f"{reference.get('kind') or entry.default_target_kind}/{reference.get('name')}"
                    scalers.setdefault(key, f"{entry.kind}/{_metadata(item).get('name')}")
        return scalers

    def _replicas_of(self, namespace: str, scales: str) -> int | None:
        kind, _, name = scales.partition("/")
        entry = kinds.DEFERRABLES.get(kind)
        if entry is None or kind not in ("Deployment", "StatefulSet"):
            return None
        doing = f"read {scales} in {namespace}"
        try:
            item = self._get(doing, entry.group, entry.version, namespace, entry.resource, name)
        except ports.NotFound:
            return None
        with kube.errors(doing):
            replicas = _spec(item).get("replicas")
            return 1 if replicas is None else int(replicas)

    def _as_workload(self, namespace: str, kind: str, item: Mapping[str, Any], scalers: dict[str, str] | None,
                     doing: str) -> deferral.Workload:
        with kube.errors(doing):
            name = str(_metadata(item)["name"])
            scaled_by = (scalers or {}).get(f"{kind}/{name}") if kind in ("Deployment", "StatefulSet") else None
            scaled_replicas = None
            if kind == kinds.SCALED_OBJECT:
                reference = _spec(item).get("scaleTargetRef") or {}
                scaled_replicas = self._replicas_of(
                    namespace, f"{reference.get('kind') or 'Deployment'}/{reference.get('name') or ''}")
            return workload(kind, item, scaled_by, scaled_replicas)

    def selected(self, namespace: str, selector: str, kinds_: tuple[str, ...]) -> list[deferral.Workload]:
        if not selector:
            return []  # an empty selector would select the whole namespace
        found: list[deferral.Workload] = []
        scalers: dict[str, str] | None = None
        for kind in kinds_:
            entry = self._kinds.get(kind)
            if entry is None:
                continue
            doing = f"list {kind}s in {namespace} ({selector})"
            try:
                items = self._list(doing, entry.group, entry.version, namespace, entry.resource,
                                   label_selector=selector)
            except ports.NotFound:
                continue  # a custom kind the cluster does not serve (KEDA not installed)
            if items and kind in ("Deployment", "StatefulSet") and scalers is None:
                scalers = self._scalers(namespace)
            found += [self._as_workload(namespace, kind, item, scalers, doing) for item in items]
        return found

    def read(self, namespace: str, kind: str, name: str) -> deferral.Workload | None:
        entry = kinds.DEFERRABLES.get(kind)
        if entry is None:
            return None
        doing = f"read {kind} {namespace}/{name}"
        try:
            item = self._get(doing, entry.group, entry.version, namespace, entry.resource, name)
        except ports.NotFound:
            return None
        scalers = self._scalers(namespace) if kind in ("Deployment", "StatefulSet") else None
        return self._as_workload(namespace, kind, item, scalers, doing)

    # ----------------------------------------------------------------------------------- writes

    def write(self, namespace: str, write: deferral.Write) -> None:
        entry = kinds.DEFERRABLES.get(write.kind)
        rule = deferral.KINDS.get(write.kind)
        doing = (f"set {write.field} of {write.kind} {namespace}/{write.name} to "
                 f"{rule.read(write.value) if rule else '?'}")
        if entry is None or rule is None:
            raise ports.ApiError(f"{doing}: not a kind spec.defer acts on", retryable=False, status=0)
        where = (entry.group, entry.version, namespace, entry.resource, write.name)
        item = self._get(f"read {write.kind} {namespace}/{write.name}", *where)
        with kube.errors(doing):
            found = workload(write.kind, item)
            version = str(_metadata(item)["resourceVersion"])
        if found.uid != write.uid:
            raise ports.NotFound(f"{doing}: not written, the object was re-created (uid {found.uid}, not {write.uid})")
        if not rule.same(found.current, write.expected):
            raise ports.ApiError(f"{doing}: not written, it is {rule.read(found.current)} now, not the "
                                 f"{rule.read(write.expected)} expected (changed by someone else)",
                                 retryable=False, status=409)
        body = _body(write.field, write.value)
        body.setdefault("metadata", {}).update({"uid": write.uid, "resourceVersion": version})
        self._api.json(doing, self._custom.patch_namespaced_custom_object, *where, body,
                       field_manager=kube.FIELD_MANAGER, _content_type=kube.MERGE_PATCH)

    def save_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        group, version, plural = SCHEDULES
        self._api.json(f"write the deferral status of SurgeSchedule {namespace}/{name}",
                       self._custom.patch_namespaced_custom_object_status, group, version, namespace, plural, name,
                       {"status": status}, field_manager=kube.FIELD_MANAGER, _content_type=kube.MERGE_PATCH)

    def set_finalizer(self, namespace: str, name: str, uid: str, present: bool) -> None:
        group, version, plural = SCHEDULES
        doing = f"{'add' if present else 'remove'} finalizer {FINALIZER} on SurgeSchedule {namespace}/{name}"
        item = self._get(doing, group, version, namespace, plural, name)
        with kube.errors(doing):
            metadata = _metadata(item)
            finalizers = [str(value) for value in metadata.get("finalizers") or []]
            if str(metadata["uid"]) != uid:
                raise ports.NotFound(f"{doing}: the SurgeSchedule was re-created")
            resource_version = str(metadata["resourceVersion"])
        if (FINALIZER in finalizers) == present:
            return
        wanted = [*finalizers, FINALIZER] if present else [value for value in finalizers if value != FINALIZER]
        body = {"metadata": {"uid": uid, "resourceVersion": resource_version, "finalizers": wanted}}
        self._api.json(doing, self._custom.patch_namespaced_custom_object, group, version, namespace, plural, name,
                       body, field_manager=kube.FIELD_MANAGER, _content_type=kube.MERGE_PATCH)

    def post_event(self, involved: ports.Involved, type_: str, reason: str, message: str) -> None:
        """A core v1 Event on the object (``kubectl describe`` and ``kubectl events`` show it)."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"generateName": "healthscale-deferral.", "namespace": involved.namespace},
            "involvedObject": {"apiVersion": involved.api_version, "kind": involved.kind, "name": involved.name,
                               "namespace": involved.namespace, "uid": involved.uid},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "healthscale"}, "reportingComponent": "healthscale",
            "reportingInstance": self._instance, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._api.json(f"post Event {reason} on {involved.kind} {involved.namespace}/{involved.name}",
                       self._core.create_namespaced_event, involved.namespace, body)


def _implements_the_port(adapter: Deferrables) -> ports.Deferrables:
    return adapter  # never called: mypy checks here that the adapter fits the port
