"""Releasing ClinicalSLOs: put back what healthscale changed, then remove its finalizer.

Owns what ``healthscale release`` (and the Helm pre-delete hook that runs it) and the operator's
sweeper (``runtime.sweeper``) do with one ClinicalSLO, from its raw JSON alone: the records of what
healthscale changed are read leniently from status (the spec is never parsed, so a spec the models
reject is released all the same), restored through ``cycle.release``, and then the finalizer is
removed whatever the restore's outcome, so that no ClinicalSLO and no namespace waits for ever. A
refused restore (403, 404, 422) is named in the outcome and in a Warning Event; a retryable one is
tried again a few times first. Also owns stopping the operator before a release (``Operator``):
a running operator would put its finalizer straight back on an object that is not being deleted.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol


from healthscale import ports
from healthscale.api import clinicalslo
from healthscale.service import cycle, events, restore, room

FINALIZER = "healthscale.io/restore-scale"
"""The finalizer Kopf stores for healthscale (``runtime.handlers.FINALIZER``)."""
RETRIES = 3
"""Extra tries of a retryable restore (timeouts, 409, 429, 5xx) before giving up on it."""
MESSAGE_LIMIT = 1024


class ClinicalSLOs(Protocol):
    """ClinicalSLOs as a release needs them (``adapters.kube.ClinicalSLOs``). Raises ``NotFound``
    or ``ApiError`` only."""

    def list_all(self) -> list[dict[str, Any]]: ...

    def list_namespace(self, namespace: str) -> list[dict[str, Any]]: ...

    def remove_finalizer(self, namespace: str, name: str, finalizer: str) -> None: ...

    def forget_records(self, namespace: str, name: str) -> None:
        """Clear ``status.originals`` (and the legacy ``status.original``) once all is restored."""
        ...

    def post_event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None: ...


class Operator(Protocol):
    """The operator's own Deployment, stopped before a release (``adapters.kube.OperatorDeployment``)."""

    def scale_to_zero(self, namespace: str, name: str) -> str:
        """Scale it to 0; its pod selector (label-selector syntax)."""
        ...

    def pods_left(self, namespace: str, selector: str) -> int:
        """Its pods, terminating ones included."""
        ...


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What releasing one ClinicalSLO did."""

    namespace: str
    name: str
    restored: tuple[str, ...] = ()
    """What was put back, or found gone (nothing to restore), one message each."""
    unrestored: tuple[str, ...] = ()
    """What was left as it is, and why."""
    released: bool = False
    """Whether healthscale's finalizer is gone now (removed, or never there)."""
    notes: tuple[str, ...] = ()
    retry_later: bool = False
    """Only retryable failures, and the caller asked not to give up yet: the finalizer stays."""

    @property
    def ok(self) -> bool:
        return not self.unrestored and self.released

    def line(self) -> str:
        """One line for a person reading the command's output."""
        parts = [f"{self.namespace}/{self.name}:"]
        parts.append("; ".join(self.restored) if self.restored else "nothing to restore")
        if self.unrestored:
            parts.append(f"| LEFT: {'; '.join(self.unrestored)}")
        parts.append("| " + ("finalizer removed" if self.released else
                             "finalizer kept, retrying later" if self.retry_later else "finalizer NOT removed"))
        if self.notes:
            parts.append(f"({'; '.join(self.notes)})")
        return " ".join(parts)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def records(raw_status: Any) -> clinicalslo.ClinicalSLOStatus:
    """The status read leniently (``clinicalslo.read_status``): each record of what healthscale
    changed that validates is kept, whatever else in status (or another record) does not."""
    return clinicalslo.read_status(dict(raw_status) if isinstance(raw_status, Mapping) else {})[0]


def deleting(item: Mapping[str, Any]) -> bool:
    return bool(_mapping(item.get("metadata")).get("deletionTimestamp"))


def holds_finalizer(item: Mapping[str, Any]) -> bool:
    return FINALIZER in (_mapping(item.get("metadata")).get("finalizers") or [])


def _post(slos: ClinicalSLOs, namespace: str, name: str, uid: str, event: events.Event) -> None:
    # Events are for people reading `kubectl describe`; not being able to post one changes nothing.
    try:
        slos.post_event(namespace, name, uid, event.type, event.reason, event.message[:MESSAGE_LIMIT])
    except (ports.ApiError, ports.NotFound):
        pass


def plan(item: Mapping[str, Any]) -> Outcome:
    """What releasing ``item`` would do, changing nothing (``--dry-run``)."""
    metadata = _mapping(item.get("metadata"))
    namespace, name = str(metadata.get("namespace") or "default"), str(metadata.get("name") or "")
    status = records(item.get("status"))
    would = tuple(f"would restore {restore.describe(original)}" for original in restore.legacy(status))
    held = room.recorded(status)
    if held is not None:
        would = (*would, f"would delete placeholder Deployment {held}")
    return Outcome(namespace, name, restored=would, released=False,
                   notes=("dry run: would remove the finalizer" if holds_finalizer(item)
                          else "dry run: holds no healthscale finalizer",))


def release_one(workloads: ports.Workloads, slos: ClinicalSLOs, item: Mapping[str, Any], *,
                give_up: bool = True, retries: int = RETRIES,
                sleep: Callable[[float], None] = time.sleep,
                placeholders: ports.Placeholders | None = None) -> Outcome:
    """Restore what ``item``'s status records, delete its placeholder Deployment (node room: nothing
    may hold nodes for a ClinicalSLO no operator serves), then remove the finalizer.

    ``give_up``: after the retries, a restore still failing for a retryable reason is reported and
    the finalizer removed anyway (the command, the hook). Without it (the sweeper, early on) the
    finalizer stays and the caller tries again later."""
    metadata = _mapping(item.get("metadata"))
    namespace, name = str(metadata.get("namespace") or "default"), str(metadata.get("name") or "")
    uid = str(metadata.get("uid") or "")
    status = records(item.get("status"))
    released = cycle.release(workloads, namespace, status)
    for attempt in range(retries):
        if not (released.unrestored and released.retryable):
            break
        sleep(min(8.0, 2.0 ** attempt))
        released = cycle.release(workloads, namespace, status)
    room_events = room.release(placeholders, namespace, status)
    released = dataclasses.replace(
        released, events=(*released.events, *(event for event in room_events if event.type == "Normal")),
        unrestored=(*released.unrestored, *(event.message for event in room_events if event.type != "Normal")))
    restored = tuple(event.message for event in released.events)
    if released.unrestored and released.retryable and not give_up:
        return Outcome(namespace, name, restored, released.unrestored, released=False, retry_later=True)
    notes: list[str] = []
    for event in released.events:
        _post(slos, namespace, name, uid, event)
    if released.unrestored:
        _post(slos, namespace, name, uid, events.Event(
            "Warning", "RestoreFailed", f"released by healthscale; not restored, left as it is: "
                                        f"{'; '.join(released.unrestored)}"))
    elif restore.legacy(status) and not deleting(item):
        # The object stays (an uninstall): its records are settled, and must not be restored again
        # by a later operator over whatever the owners set meanwhile.
        try:
            slos.forget_records(namespace, name)
        except ports.NotFound:
            pass
        except ports.ApiError as error:
            notes.append(f"records not cleared: {error}")
    if not holds_finalizer(item):
        return Outcome(namespace, name, restored, released.unrestored, released=True,
                       notes=(*notes, "held no healthscale finalizer"))
    try:
        slos.remove_finalizer(namespace, name, FINALIZER)
    except ports.NotFound:
        notes.append("already gone")
    except ports.ApiError as error:
        return Outcome(namespace, name, restored, released.unrestored, released=False,
                       notes=(*notes, f"could not remove the finalizer: {error}"))
    _post(slos, namespace, name, uid, events.Event("Normal", "Released", f"healthscale removed its finalizer "
                                                                         f"({FINALIZER})"))
    return Outcome(namespace, name, restored, released.unrestored, released=True, notes=tuple(notes))


def listed(slos: ClinicalSLOs, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Every ClinicalSLO in these namespaces (all namespaces when none are named)."""
    if not namespaces:
        return slos.list_all()
    return [item for namespace in dict.fromkeys(namespaces) for item in slos.list_namespace(namespace)]


def select(items: Iterable[Mapping[str, Any]], only_deleting: bool) -> list[Mapping[str, Any]]:
    return [item for item in items if deleting(item) or not only_deleting]


def stop_operator(operator: Operator, namespace: str, name: str, timeout: float = 120.0,
                  sleep: Callable[[float], None] = time.sleep,
                  clock: Callable[[], float] = time.monotonic) -> str:
    """Scale the operator's Deployment to 0 and wait until its pods are gone; what happened.

    Raises ``NotFound``/``ApiError`` when the Deployment cannot be scaled. Pods still there after
    ``timeout`` are reported, not waited for: the release goes on."""
    selector = operator.scale_to_zero(namespace, name)
    if not selector:
        return f"scaled Deployment {namespace}/{name} to 0 (no selector to wait on)"
    deadline = clock() + timeout
    while True:
        left = operator.pods_left(namespace, selector)
        if left == 0:
            return f"scaled Deployment {namespace}/{name} to 0; its pods are gone"
        if clock() >= deadline:
            return f"scaled Deployment {namespace}/{name} to 0; {left} pod(s) still there after {timeout:g}s"
        sleep(2.0)
