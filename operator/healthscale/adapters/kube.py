"""The Kubernetes API as the service sees it: ``ports.Workloads`` and ``ports.Records``.

Owns every request healthscale makes for its reconcile (Kopf's own aside): reading the target
workload and the HPA or KEDA ScaledObject that scales it (``kinds.FLOORS``), writing one field of
one exact object, pod-deletion costs, SurgeSchedule status, and ClinicalSLO ``status.originals``
and finalizers. Also owns how any request is made (``Api``): a (connect, read) timeout on every
call, no urllib3 retries, and the mapping of every failure to ``ports.NotFound`` or
``ports.ApiError``; ``adapters.placement`` uses the same.

Writes use the field manager ``healthscale`` and touch one field each: the scale subresource's
``spec.replicas``, an HPA's ``spec.minReplicas`` or a ScaledObject's ``spec.minReplicaCount`` (never
KEDA's own HPA), a pod's pod-deletion-cost annotation, a status.
Writes to a workload, HPA or ScaledObject carry its uid as a precondition (``metadata.uid`` in the
merge patch): the API server refuses the write when the object of that name is another one
(deleted and re-created), and that refusal is a ``NotFound``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import kubernetes
import urllib3

from healthscale import ports
from healthscale.adapters import kinds
from healthscale.domain import selectors

FIELD_MANAGER = "healthscale"
FLOOR_CACHE_SECONDS = 10.0
"""How long one list of a namespace's HPAs (or ScaledObjects) serves every ClinicalSLO there."""
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
TIMEOUT: tuple[float, float] = (3.0, 15.0)
"""Default (connect, read) timeout of every request, in seconds."""
GROUP, VERSION = "healthscale.io", "v1alpha1"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# The errors of the ports, under the names the runtime and residency code have always used.
TargetNotFound = ports.NotFound
ApiError = ports.ApiError
Target = ports.Target
Floor = ports.Floor

# The scale subresource's refusal when the scale's metadata.uid is not the workload's
# (k8s.io/kubernetes pkg/registry/apps/*/storage: scaleUpdatedObjectInfo).
_UID_PRECONDITION = "Precondition failed: UID"
# The object's own refusal of a different metadata.uid in a patch (ValidateObjectMetaUpdate).
_UID_IMMUTABLE = "metadata.uid: Invalid value"
# Status codes that say "try again later": conflict, request timeout, throttled, server side.
_RETRYABLE = frozenset({408, 409, 429})


def load_config() -> None:
    """In a pod, its ServiceAccount; elsewhere the kubeconfig named by KUBECONFIG (or ~/.kube/config)."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]


def _server_message(error: kubernetes.client.ApiException) -> str:
    """The ``message`` of the Status the API server sent with an error, if any."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return ""
    return str(body.get("message") or "") if isinstance(body, dict) else ""


def _from_status(error: kubernetes.client.ApiException, doing: str) -> ports.NotFound | ports.ApiError:
    status = int(error.status or 0)
    if status == 404:
        return ports.NotFound(f"{doing}: not found")
    message = _server_message(error)
    text = f"{doing}: HTTP {status} {error.reason or ''}".rstrip() + (f": {message}" if message else "")
    return ports.ApiError(text, retryable=status in _RETRYABLE or status >= 500 or status == 0, status=status)


@contextlib.contextmanager
def errors(doing: str) -> Iterator[None]:
    """Turn whatever a request (and reading its answer) raises into ``ports.NotFound``/``ApiError``."""
    try:
        yield
    except (ports.NotFound, ports.ApiError):
        raise
    except kubernetes.client.ApiException as error:
        raise _from_status(error, doing) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        # ReadTimeoutError, ConnectTimeoutError, NewConnectionError, ProtocolError, MaxRetryError,
        # and socket errors below them: the server did not answer.
        raise ports.ApiError(f"{doing}: no answer from the API server ({type(error).__name__}: {error})",
                             retryable=True, status=0) from error
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        # Not JSON, or JSON of another shape than the API's (or the client refusing an argument).
        raise ports.ApiError(f"{doing}: unreadable answer or request ({type(error).__name__}: {error})",
                             retryable=False, status=0) from error


def client_without_retries(base: kubernetes.client.ApiClient | None = None) -> kubernetes.client.ApiClient:
    """A client to the same server as ``base`` (default: the loaded configuration) that never retries.

    urllib3 retries a GET up to 3 more times on a read timeout by default, so one read against a
    silent server would wait four read timeouts; healthscale's cycle retries instead, next tick.
    The pool's retries are fixed when the client is built, hence a new client.
    """
    configuration = (copy.deepcopy(base.configuration) if base is not None
                     else kubernetes.client.Configuration.get_default_copy())
    configuration.retries = False
    client = kubernetes.client.ApiClient(configuration)
    if base is not None:
        client.default_headers.update(base.default_headers)  # User-Agent, Impersonate-*, ...
    return client


class Api:
    """How every request is made: this timeout, the answer as JSON, failures as the ports' errors."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self.client = client_without_retries(api_client)
        self.timeout = timeout

    def json(self, doing: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """``method(*args, **kwargs)`` with the timeout; its answer as the API's JSON (camelCase).

        Parsed here rather than into the client's models: building the models costs more CPU than
        the request itself, and they raise on shapes the API server does send.
        """
        with errors(doing):
            response = method(*args, _request_timeout=self.timeout, _preload_content=False, **kwargs)
            answer = json.loads(response.data)  # reads the body: a read timeout can happen here too
            if not isinstance(answer, dict):
                raise ValueError(f"expected a JSON object, got {type(answer).__name__}")
            return answer


def _metadata(item: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = item.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def _uid(item: Mapping[str, Any]) -> str:
    return str(_metadata(item).get("uid") or "")


def _spec(item: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = item.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _items(listed: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [item for item in listed.get("items") or [] if isinstance(item, Mapping)]


def _replicas(workload: Mapping[str, Any]) -> int:
    replicas = _spec(workload).get("replicas")
    return 1 if replicas is None else int(replicas)  # the API's default


def _hands_off(entry: kinds.FloorKind, item: Mapping[str, Any], name: str) -> str | None:
    """Why healthscale must leave this floor alone: its owner paused scaling (KEDA's paused
    annotations), or another floor owner controls it (KEDA's own HPA, which KEDA reconciles back)."""
    annotations = _metadata(item).get("annotations") or {}
    for annotation in entry.pause_annotations:
        if annotation in annotations:
            return (f"{entry.kind} {name} is paused ({annotation}: {annotations[annotation]!r}): its owner "
                    f"holds the workload's replicas, and healthscale leaves {entry.field} as it is rather than "
                    "fight the pause")
    for owner in _metadata(item).get("ownerReferences") or []:
        owning = kinds.FLOORS.get(str(owner.get("kind") or "")) if isinstance(owner, Mapping) else None
        if owning is not None and owning.kind != entry.kind and owner.get("controller"):
            return (f"{entry.kind} {name} is controlled by {owning.kind} {owner.get('name')}, which would undo a "
                    f"change to its {entry.field}; healthscale leaves it (raising the {owning.kind}'s {owning.field} "
                    f"needs the operator's --{owning.option} and the rights to patch {owning.resource})")
    return None


def _floor(entry: kinds.FloorKind, item: Mapping[str, Any]) -> tuple[str, str, ports.Floor]:
    """(target kind, target name, the floor) of one listed HPA or ScaledObject."""
    spec = _spec(item)
    reference = spec.get("scaleTargetRef") or {}
    name = str(_metadata(item).get("name") or "")
    floor, ceiling = spec.get(entry.field), spec.get(entry.ceiling)
    if ceiling is None:
        if entry.default_ceiling is None:
            raise KeyError(f"{entry.kind} {name} has no spec.{entry.ceiling}")
        ceiling = entry.default_ceiling
    found = ports.Floor(name=name, uid=_uid(item), min_replicas=entry.default_floor if floor is None else int(floor),
                        max_replicas=int(ceiling), kind=entry.kind, field=entry.field,
                        hands_off=_hands_off(entry, item, name))
    return str(reference.get("kind") or entry.default_target_kind), str(reference.get("name") or ""), found


def _refuse(doing: str, why: str) -> ports.ApiError:
    """A request healthscale does not send (status 0, not retryable)."""
    return ports.ApiError(f"{doing}: {why}", retryable=False, status=0)


def read_workload(api: Api, apps: kubernetes.client.AppsV1Api, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """One target workload as JSON, read the way ``adapters.kinds`` says for its kind."""
    doing = f"read {kind} {namespace}/{name}"
    entry = kinds.WORKLOADS.get(kind)
    if entry is None:
        raise _refuse(doing, f"healthscale scales {kinds.names()}, not {kind}")
    return api.json(doing, entry.method(apps, entry.read), name, namespace)


class Workloads:
    """``ports.Workloads``: Deployments and StatefulSets, the HPAs and ScaledObjects that scale them,
    and their pods, in any namespace.

    ``options``: the operator options that turn floor kinds on (``kinds.FloorKind.option``, e.g.
    ``keda``); None turns every kind on. It decides which kinds are looked for as a workload's floor
    owner; restoring a recorded floor works for every kind."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT, options: Collection[str] | None = None) -> None:
        self._api = Api(api_client, timeout)
        self._apps = kubernetes.client.AppsV1Api(self._api.client)
        self._autoscaling = kubernetes.client.AutoscalingV2Api(self._api.client)
        self._core = kubernetes.client.CoreV1Api(self._api.client)
        self._custom = kubernetes.client.CustomObjectsApi(self._api.client)
        self._floor_kinds = [entry for entry in kinds.FLOORS.values()
                             if entry.option is None or options is None or entry.option in options]
        # Floor owners per (kind, namespace), listed at most every FLOOR_CACHE_SECONDS: one list
        # serves every ClinicalSLO of the namespace instead of one list per ClinicalSLO per cycle.
        self._floors: dict[tuple[str, str], tuple[float, list[tuple[str, str, ports.Floor]]]] = {}
        self._floors_lock = threading.Lock()

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------------------------ reads

    def _workload(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        return read_workload(self._api, self._apps, namespace, kind, name)

    def read(self, namespace: str, kind: str, name: str) -> ports.Target:
        workload = self._workload(namespace, kind, name)
        with errors(f"read {kind} {namespace}/{name}"):
            status = workload.get("status") or {}
            return ports.Target(
                kind=kind, name=name, uid=_uid(workload),
                replicas=_replicas(workload),
                ready_replicas=int(status.get("readyReplicas") or 0),
                selector=selectors.label_selector(_spec(workload).get("selector")),
                floor=self._floor_for(namespace, kind, name),
            )

    def _floor_api(self, entry: kinds.FloorKind) -> Any:
        return self._custom if entry.custom else self._autoscaling

    def _list_floors(self, entry: kinds.FloorKind, namespace: str, doing: str, **kwargs: Any) -> dict[str, Any]:
        method = entry.method(self._floor_api(entry), entry.list)
        where = (entry.group, entry.version, namespace, entry.resource) if entry.custom else (namespace,)
        return self._api.json(doing, method, *where, **kwargs)

    def _floor_list(self, entry: kinds.FloorKind, namespace: str) -> list[tuple[str, str, ports.Floor]]:
        now = time.monotonic()
        with self._floors_lock:
            cached = self._floors.get((entry.kind, namespace))
        if cached is not None and now - cached[0] < FLOOR_CACHE_SECONDS:
            return cached[1]
        doing = f"list {entry.kind}s in {namespace}"
        try:
            listed = self._list_floors(entry, namespace, doing)
        except ports.NotFound:
            if not entry.custom:
                raise
            listed = {}  # the cluster serves no such resource (KEDA not installed): none scales anything
        with errors(doing):
            floors = [_floor(entry, item) for item in _items(listed)]
        with self._floors_lock:
            self._floors[(entry.kind, namespace)] = (now, floors)
        return floors

    def _floor_for(self, namespace: str, kind: str, name: str) -> ports.Floor | None:
        """The first floor owner, in ``kinds.FLOORS`` order, that scales this workload."""
        for entry in self._floor_kinds:
            found = next((floor for target_kind, target_name, floor in self._floor_list(entry, namespace)
                          if target_kind == kind and target_name == name), None)
            if found is not None:
                return found
        return None

    def read_field(self, namespace: str, kind: str, name: str, field: ports.Field) -> ports.Written:
        doing = f"read {field} of {kind} {namespace}/{name}"
        if kind in kinds.WORKLOADS and field == "replicas":
            workload = self._workload(namespace, kind, name)
            with errors(doing):
                return ports.Written(kind, name, _uid(workload), _replicas(workload))
        entry = kinds.FLOORS.get(kind)
        if entry is not None and field == entry.field:
            # A list by name, not a get: the operator's RBAC lists floor owners and needs no get.
            listed = self._list_floors(entry, namespace, doing, field_selector=f"metadata.name={name}")
            with errors(doing):
                for item in _items(listed):
                    _, _, floor = _floor(entry, item)
                    if floor.name == name:
                        return ports.Written(kind, name, floor.uid, floor.min_replicas)
            raise ports.NotFound(f"{doing}: not found")
        raise _refuse(doing, f"healthscale reads replicas of {kinds.names()}, {kinds.floor_names()}")

    # ----------------------------------------------------------------------------------- writes

    def write_field(self, namespace: str, kind: str, name: str, uid: str, field: ports.Field, value: int) -> None:
        """Set one field on the object with exactly this uid (a merge patch carrying ``metadata.uid``).

        replicas go through the scale subresource (RBAC ``deployments/scale``,
        ``statefulsets/scale``), which refuses a uid other than the workload's with a 409
        "Precondition failed"; an HPA or ScaledObject refuses a changed uid with a 422 ("field is
        immutable").
        Both mean the object of that name is not the one recorded: ``NotFound``.
        """
        doing = f"set {field} of {kind} {namespace}/{name} (uid {uid}) to {value}"
        if not uid:
            raise _refuse(doing, "no uid to hold the write to; read the object first")
        body = {"metadata": {"uid": uid}, "spec": {field: value}}
        workload, floor = kinds.WORKLOADS.get(kind), kinds.FLOORS.get(kind)
        if workload is not None and field == "replicas":
            self._write(doing, workload.method(self._apps, workload.patch_scale), name, namespace, body)
        elif floor is not None and field == floor.field:
            where = (floor.group, floor.version, namespace, floor.resource, name) if floor.custom else (name, namespace)
            try:
                self._write(doing, floor.method(self._floor_api(floor), floor.patch), *where, body)
            finally:
                self._forget_floors(namespace)  # our own write must show in the next read
        else:
            raise _refuse(doing, f"healthscale writes replicas of {kinds.names()}, {kinds.floor_names()}")

    def _write(self, doing: str, patch: Callable[..., Any], *arguments: Any) -> None:
        """``patch(*arguments)`` (the object's name and namespace, then the body) as a merge patch."""
        try:
            self._api.json(doing, patch, *arguments, field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH)
        except ports.ApiError as error:
            if error.status in (409, 422) and (_UID_PRECONDITION in str(error) or _UID_IMMUTABLE in str(error)):
                raise ports.NotFound(f"{doing}: not written, the object was re-created (another uid): {error}") from error
            raise

    def _forget_floors(self, namespace: str) -> None:
        with self._floors_lock:
            for key in [key for key in self._floors if key[1] == namespace]:
                del self._floors[key]

    # ------------------------------------------------------------------------------------- pods

    def pods(self, namespace: str, selector: str) -> list[str]:
        """Names of the running (not terminating) pods the selector matches; none for an empty one."""
        if not selector:
            return []  # an empty selector would list the whole namespace
        doing = f"list pods in {namespace} ({selector})"
        listed = self._api.json(doing, self._core.list_namespaced_pod, namespace, label_selector=selector)
        with errors(doing):
            return [str(_metadata(pod)["name"]) for pod in _items(listed)
                    if _metadata(pod).get("deletionTimestamp") is None]

    def set_deletion_costs(self, namespace: str, costs: dict[str, int]) -> None:
        """Annotate pods so that the ReplicaSet removes the lowest cost (least loaded) first."""
        for pod, cost in costs.items():
            body = {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
            try:
                self._api.json(f"annotate pod {namespace}/{pod}", self._core.patch_namespaced_pod, pod, namespace,
                               body, field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH)
            except ports.NotFound:
                continue  # the pod went away meanwhile; nothing to protect

    # ------------------------------------------------------------------------ SurgeSchedules

    def set_schedule_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge a SurgeSchedule's status (its next windows, camelCase); nothing if it is gone."""
        try:
            self._api.json(f"write status of SurgeSchedule {namespace}/{name}",
                           self._custom.patch_namespaced_custom_object_status,
                           GROUP, VERSION, namespace, "surgeschedules", name, {"status": dict(status)},
                           field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH)
        except ports.NotFound:
            return  # deleted meanwhile


class ClinicalSLOs:
    """``ports.Records``, and what ``healthscale release`` needs: ClinicalSLO status and finalizers."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self._api = Api(api_client, timeout)
        self._custom = kubernetes.client.CustomObjectsApi(self._api.client)

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def save_originals(self, namespace: str, name: str, originals: list[dict[str, Any]]) -> None:
        """Replace ``status.originals`` (a merge patch replaces a list whole) before the write they guard."""
        self._api.json(f"record originals of ClinicalSLO {namespace}/{name}",
                       self._custom.patch_namespaced_custom_object_status,
                       GROUP, VERSION, namespace, "clinicalslos", name, {"status": {"originals": originals}},
                       field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH)

    def list_all(self) -> list[dict[str, Any]]:
        """Every ClinicalSLO in the cluster, as the API's JSON."""
        doing = "list ClinicalSLOs in all namespaces"
        found: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            listed = self._api.json(doing, self._custom.list_cluster_custom_object, GROUP, VERSION, "clinicalslos",
                                    limit=500, _continue=page)
            with errors(doing):
                found.extend(dict(item) for item in _items(listed))
                page = str(_metadata(listed).get("continue") or "") or None
            if page is None:
                return found

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        """Remove exactly this finalizer; nothing if the ClinicalSLO or the finalizer is gone already.

        A JSON patch that first tests the finalizer is still at the index read, so that a
        concurrent change to the list (Kopf, another controller) fails the patch instead of
        removing someone else's finalizer; then reads again and retries, a few times.
        """
        doing = f"remove finalizer {finalizer} from ClinicalSLO {namespace}/{name}"
        for _ in range(5):
            # A list by name, not a get: Kopf's RBAC lists ClinicalSLOs and needs no get.
            try:
                listed = self._api.json(doing, self._custom.list_namespaced_custom_object, GROUP, VERSION,
                                        namespace, "clinicalslos", field_selector=f"metadata.name={name}")
            except ports.NotFound:
                return  # no such resource (CRD gone): no ClinicalSLO holds a finalizer
            with errors(doing):
                finalizers = [list(_metadata(item).get("finalizers") or []) for item in _items(listed)
                              if _metadata(item).get("name") == name]
            if not finalizers or finalizer not in finalizers[0]:
                return
            index = finalizers[0].index(finalizer)
            patch = [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": finalizer},
                     {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
            try:
                self._api.json(doing, self._custom.patch_namespaced_custom_object,
                               GROUP, VERSION, namespace, "clinicalslos", name, patch,
                               field_manager=FIELD_MANAGER, _content_type=JSON_PATCH)
                return
            except ports.NotFound:
                return
            except ports.ApiError as error:
                if error.status not in (409, 422):  # 422: the test failed, the list changed meanwhile
                    raise
        raise ports.ApiError(f"{doing}: the finalizers kept changing", retryable=True, status=409)


    # ---------------------------------------------- for service.release (`healthscale release`,
    # runtime.sweeper); added by the release work, kept apart from the methods above.

    def list_namespace(self, namespace: str) -> list[dict[str, Any]]:
        """Every ClinicalSLO in one namespace, as the API's JSON (a Role suffices)."""
        doing = f"list ClinicalSLOs in {namespace}"
        found: list[dict[str, Any]] = []
        page: str | None = None
        while True:
            listed = self._api.json(doing, self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                                    "clinicalslos", limit=500, _continue=page)
            with errors(doing):
                found.extend(dict(item) for item in _items(listed))
                page = str(_metadata(listed).get("continue") or "") or None
            if page is None:
                return found

    def forget_records(self, namespace: str, name: str) -> None:
        """Clear ``status.originals`` and the legacy ``status.original`` (all restored)."""
        self._api.json(f"clear the records of ClinicalSLO {namespace}/{name}",
                       self._custom.patch_namespaced_custom_object_status,
                       GROUP, VERSION, namespace, "clinicalslos", name,
                       {"status": {"originals": [], "original": None}},
                       field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH)

    def post_event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
        """A core v1 Event on the ClinicalSLO, as ``kubectl describe`` shows it."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClinicalSLO", "name": name,
                               "namespace": namespace, "uid": uid},
            "type": type_, "reason": reason, "message": message,
            "source": {"component": "healthscale-release"}, "reportingComponent": "healthscale-release",
            "reportingInstance": "healthscale-release", "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        self._api.json(f"post Event {reason} on ClinicalSLO {namespace}/{name}",
                       kubernetes.client.CoreV1Api(self._api.client).create_namespaced_event, namespace, body)


class OperatorDeployment:
    """``service.release.Operator``: the operator's own Deployment, stopped before a release."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self._api = Api(api_client, timeout)
        self._apps = kubernetes.client.AppsV1Api(self._api.client)
        self._core = kubernetes.client.CoreV1Api(self._api.client)

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def scale_to_zero(self, namespace: str, name: str) -> str:
        """Through the scale subresource, whose answer carries the pod selector (no get needed)."""
        doing = f"scale Deployment {namespace}/{name} to 0"
        scale = self._api.json(doing, self._apps.patch_namespaced_deployment_scale, name, namespace,
                               {"spec": {"replicas": 0}}, field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH)
        with errors(doing):
            return str((scale.get("status") or {}).get("selector") or "")

    def pods_left(self, namespace: str, selector: str) -> int:
        doing = f"list pods in {namespace} ({selector})"
        listed = self._api.json(doing, self._core.list_namespaced_pod, namespace, label_selector=selector)
        with errors(doing):
            return len(_items(listed))


class Namespaces:
    """Which namespaces are being deleted (for ``runtime.sweeper``; needs list on namespaces)."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self._api = Api(api_client, timeout)
        self._core = kubernetes.client.CoreV1Api(self._api.client)

    def terminating(self) -> set[str]:
        doing = "list namespaces"
        listed = self._api.json(doing, self._core.list_namespace)
        with errors(doing):
            return {str(_metadata(item).get("name")) for item in _items(listed)
                    if _metadata(item).get("deletionTimestamp")
                    or (item.get("status") or {}).get("phase") == "Terminating"}


RULES_GROUP, RULES_VERSION, RULES_PLURAL = "monitoring.coreos.com", "v1", "prometheusrules"
APPLY_PATCH = "application/apply-patch+yaml"
NOT_SERVED_SECONDS = 600.0
"""After the API server said it serves no PrometheusRules, how long before asking again."""


class PrometheusRules:
    """``ports.RuleObjects``: PrometheusRules, written by server-side apply as field manager healthscale.

    Whether the cluster serves them is learnt from the writes themselves (a create answered 404),
    not from discovery: no extra right, and installing the Prometheus Operator later turns the
    rules on within ``NOT_SERVED_SECONDS`` without a restart."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self._api = Api(api_client, timeout)
        self._custom = kubernetes.client.CustomObjectsApi(self._api.client)
        self._not_served_since: float | None = None

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def available(self) -> bool:
        return self._not_served_since is None or time.monotonic() - self._not_served_since >= NOT_SERVED_SECONDS

    def apply(self, namespace: str, body: dict[str, Any]) -> bool:
        """Update by server-side apply; create when it is not there. False: PrometheusRules are not served."""
        name = str(body["metadata"]["name"])
        try:
            self._api.json(f"apply PrometheusRule {namespace}/{name}", self._custom.patch_namespaced_custom_object,
                           RULES_GROUP, RULES_VERSION, namespace, RULES_PLURAL, name, body,
                           field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)
            return True
        except ports.NotFound:
            pass  # not there yet (creating by apply would need the create right as well as patch)
        try:
            self._api.json(f"create PrometheusRule {namespace}/{name}", self._custom.create_namespaced_custom_object,
                           RULES_GROUP, RULES_VERSION, namespace, RULES_PLURAL, body, field_manager=FIELD_MANAGER)
        except ports.NotFound:
            self._not_served_since = time.monotonic()
            return False
        self._not_served_since = None
        return True

    def delete(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ports.NotFound):  # already gone (or never served) is what was asked
            self._api.json(f"delete PrometheusRule {namespace}/{name}", self._custom.delete_namespaced_custom_object,
                           RULES_GROUP, RULES_VERSION, namespace, RULES_PLURAL, name)


class Placeholders:
    """``ports.Placeholders``: healthscale's placeholder Deployments, written by server-side apply as
    field manager healthscale (created when not there), and the target's pod template they copy."""

    def __init__(self, api_client: kubernetes.client.ApiClient | None = None,
                 timeout: tuple[float, float] = TIMEOUT) -> None:
        self._api = Api(api_client, timeout)
        self._apps = kubernetes.client.AppsV1Api(self._api.client)

    def close(self) -> None:
        self._api.client.close()  # type: ignore[no-untyped-call]

    def pod_spec(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        workload = read_workload(self._api, self._apps, namespace, kind, name)
        with errors(f"read the pod template of {kind} {namespace}/{name}"):
            template = _spec(workload).get("template") or {}
            return dict(template.get("spec") or {})

    def apply(self, namespace: str, body: dict[str, Any]) -> ports.Room:
        name = str(body["metadata"]["name"])
        try:
            answer = self._api.json(f"apply placeholder Deployment {namespace}/{name}",
                                    self._apps.patch_namespaced_deployment, name, namespace, body,
                                    field_manager=FIELD_MANAGER, force=True, _content_type=APPLY_PATCH)
        except ports.NotFound:  # not there yet (creating by apply would need the create right as well as patch)
            answer = self._api.json(f"create placeholder Deployment {namespace}/{name}",
                                    self._apps.create_namespaced_deployment, namespace, body,
                                    field_manager=FIELD_MANAGER)
        with errors(f"read placeholder Deployment {namespace}/{name}"):
            status = answer.get("status") or {}
            failure = next((str(item.get("message") or item.get("reason") or "ReplicaFailure")
                            for item in status.get("conditions") or []
                            if item.get("type") == "ReplicaFailure" and item.get("status") == "True"), None)
            return ports.Room(int(status.get("readyReplicas") or 0), failure)

    def delete(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ports.NotFound):  # already gone is what was asked
            self._api.json(f"delete placeholder Deployment {namespace}/{name}",
                           self._apps.delete_namespaced_deployment, name, namespace)


def _implements_the_ports(workloads: Workloads, records: ClinicalSLOs, rules: PrometheusRules,
                          room: Placeholders) -> tuple[ports.Workloads, ports.Records, ports.RuleObjects,
                                                       ports.Placeholders]:
    return workloads, records, rules, room  # never called: mypy checks here that the adapters fit the ports
