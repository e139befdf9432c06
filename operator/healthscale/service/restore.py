"""What healthscale changed, and putting it back, in every order of events.

Each change healthscale makes is one field of one exact object: a Deployment's or StatefulSet's
``replicas``, or the floor of the autoscaler that scales it (a floor owner: an HPA's ``minReplicas``,
a KEDA ScaledObject's ``minReplicaCount``; never KEDA's own HPA, which KEDA reconciles back).
Before the first write to such a field, its value is recorded as a ``clinicalslo.Original`` keyed
by kind, name and uid, and saved to the ClinicalSLO's status (``ports.Records``) *before* the
write, so an operator killed between the two still knows what to restore. This module decides,
every cycle and at deletion, what to do with the records:

- the object the cycle writes (``Key``) keeps its record;
- any other recorded object is restored and its record dropped: the old target after a
  ``targetRef`` rename, a floor after the workload lost its floor owner, everything in Preview;
- an object re-created under the same name (another uid) is never written: its record is dropped;
- a workload's record is dropped, not restored, once a floor owner manages it (the HPA or KEDA sets
  its replicas; writing them back would fight it and could scale down blindly);
- a floor owner that disappears while its floor is held hands its original floor on to the
  workload it scaled (that very object, by uid), which healthscale now scales directly.

Restores always run, in Preview and in dry runs too: they only undo healthscale's own changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from healthscale import ports
from healthscale.api import clinicalslo
from healthscale.service import events as events_

HPA = "HorizontalPodAutoscaler"
WORKLOAD_FIELD: ports.Field = "replicas"
"""The field healthscale writes on a workload; every other field is a floor owner's floor."""


def label(kind: str) -> str:
    """How Events name a kind: ``HPA`` for the HorizontalPodAutoscaler, else the kind."""
    return "HPA" if kind == HPA else kind


def is_floor(original: clinicalslo.Original) -> bool:
    return original.field != WORKLOAD_FIELD


@dataclasses.dataclass(frozen=True)
class Key:
    """The exact field a cycle writes, with its value now."""

    kind: str
    name: str
    uid: str
    field: ports.Field
    current: int
    scales: tuple[str, str] | None = None
    """For a floor: the (kind, name) of the workload its owner scales."""
    scales_uid: str | None = None
    """For a floor: the uid of the workload its owner scales."""

    @staticmethod
    def of(target: ports.Target) -> Key:
        """What a cycle moves: the floor of the HPA or ScaledObject that scales the target, if one
        does, else its replicas."""
        if target.floor is not None:
            floor = target.floor
            return Key(floor.kind, floor.name, floor.uid, floor.field, floor.min_replicas,
                       (target.kind, target.name), target.uid)
        return Key(target.kind, target.name, target.uid, WORKLOAD_FIELD, target.replicas)

    def same_object(self, original: clinicalslo.Original) -> bool:
        return (original.kind, original.name, original.field) == (self.kind, self.name, self.field)

    def record(self, value: int | None = None) -> clinicalslo.Original:
        return clinicalslo.Original(kind=self.kind, name=self.name, uid=self.uid, field=self.field,
                                    value=self.current if value is None else value,
                                    scales=f"{self.scales[0]}/{self.scales[1]}" if self.scales else None,
                                    scales_uid=self.scales_uid)


def describe(original: clinicalslo.Original) -> str:
    return f"{original.kind} {original.name} {original.field} {original.value}"


@dataclasses.dataclass(frozen=True)
class Settled:
    """The records after settling, what was done, and what could not be done yet."""

    originals: tuple[clinicalslo.Original, ...]
    events: tuple[events_.Event, ...]
    carried_floor: int | None = None
    """The original floor of a floor owner (HPA, ScaledObject) that disappeared while healthscale
    held it: the workload's own original from now on (what was there before healthscale, not the
    surge value)."""
    failures: tuple[str, ...] = ()
    """Restores that failed and are kept for the next attempt (or given up at deletion)."""
    retryable: bool = False
    """Whether every failure is worth retrying (a timeout, 409, 429 or 5xx)."""


def legacy(status: clinicalslo.ClinicalSLOStatus) -> tuple[clinicalslo.Original, ...]:
    """The records in ``status``, including one left by an older operator in ``original``
    (which had no uid: an empty uid is written without a uid precondition)."""
    if status.originals or status.original is None:
        return status.originals
    old = status.original
    if old.kind == HPA and old.min_replicas is not None:
        return (clinicalslo.Original(kind=HPA, name=old.name, uid="", field="minReplicas", value=old.min_replicas),)
    if old.kind in ("Deployment", "StatefulSet") and old.replicas is not None:
        return (clinicalslo.Original(kind=old.kind, name=old.name, uid="", field="replicas",
                                     value=old.replicas),)
    return ()


def put_back(workloads: ports.Workloads, namespace: str, original: clinicalslo.Original) -> events_.Event:
    """Restore one record. A missing or re-created object is done (nothing of ours is there).

    Raises ``ports.ApiError`` when the API server refuses or does not answer."""
    try:
        workloads.write_field(namespace, original.kind, original.name, original.uid, original.field, original.value)
    except ports.NotFound as error:
        return events_.Event("Normal", "NothingToRestore", f"{original.kind} {original.name}: {error}; "
                                                           f"nothing to restore ({describe(original)} not written)")
    return events_.Event("Normal", "Restored", f"restored {original.kind} {original.name} "
                                               f"{original.field} to {original.value}")


def settle(workloads: ports.Workloads, namespace: str, originals: Sequence[clinicalslo.Original],
           writing: Key | None) -> Settled:
    """Keep the record of the field this cycle writes (``writing``; None writes nothing, as in
    Preview, dry runs and deletion) and put back every other one."""
    kept: list[clinicalslo.Original] = []
    done: list[events_.Event] = []
    failures: list[str] = []
    retryable = True
    carried: int | None = None
    for original in originals:
        if writing is not None and writing.same_object(original):
            if original.uid in ("", writing.uid):
                kept.append(original.model_copy(update={"uid": writing.uid}))
                continue
            done.append(events_.Event("Normal", "TargetRecreated",
                                      f"{original.kind} {original.name} was re-created (uid {original.uid} is gone); "
                                      f"its record ({describe(original)}) is dropped, never written to the new object"))
            continue
        if writing is not None and writing.scales == (original.kind, original.name):
            owner = label(writing.kind)
            done.append(events_.Event("Normal", f"ManagedBy{owner}",
                                      f"{owner} {writing.name} now scales {original.kind} {original.name}; its "
                                      f"replicas are the {owner}'s to set, so {describe(original)} is not written back"))
            continue
        try:
            event = put_back(workloads, namespace, original)
        except ports.ApiError as error:
            kept.append(original)
            failures.append(f"{describe(original)}: {error}")
            retryable = retryable and error.retryable
            continue
        if event.reason == "NothingToRestore" and writing is not None and is_floor(original) \
                and original.scales == f"{writing.kind}/{writing.name}" \
                and original.scales_uid in (None, "", writing.uid):
            carried = original.value if carried is None else max(carried, original.value)
        done.append(event)
    if carried is not None and writing is not None and not any(writing.same_object(item) for item in kept):
        # Recorded now, not at the workload's first write: the floor owner usually left it at the
        # floor already, so no write may follow, and the owner's record is gone after this status write.
        kept.append(writing.record(carried))
    return Settled(tuple(kept), tuple(done), carried, tuple(failures), retryable and bool(failures))
