"""Node room held ahead of need: the placeholder Deployment per ClinicalSLO with
``capacity.nodeProvisioningSeconds`` set (issue 13).

Each cycle ``domain.warmup`` says how many replicas' worth of room to hold; this module makes the
placeholder Deployment (``domain.placeholders``) hold that many pods, reports it in
``status.reservation`` and says so in an Event when the number changes. Placeholders are written
only in Active mode: Preview and ``--dry-run`` report the reservation and delete what an earlier
Active cycle created. A failed write is an Event and ``applied: false``; it never touches the
scaling of the target, which the cycle has already done.
"""

from __future__ import annotations

import dataclasses

from healthscale import ports
from healthscale.api import clinicalslo
from healthscale.domain import placeholders, residency, warmup
from healthscale.service import events

Port = ports.Placeholders
DEFAULT_IMAGE = "registry.k8s.io/pause:3.10"
DEFAULT_PRIORITY_CLASS = "healthscale-placeholder"


@dataclasses.dataclass(frozen=True)
class Settings:
    """How placeholders are made (the operator's flags)."""

    image: str = DEFAULT_IMAGE
    priority_class: str = DEFAULT_PRIORITY_CLASS
    """A PriorityClass with a negative value (the Helm chart creates it), so real pods preempt placeholders."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: clinicalslo.ReservationStatus | None
    events: tuple[events.Event, ...] = ()

    @property
    def reserved(self) -> int:
        """Placeholder replicas in the cluster after this cycle (for the gauge)."""
        return self.status.replicas if self.status is not None and self.status.applied else 0


def sync(port: Port | None, settings: Settings, resource: clinicalslo.ClinicalSLO,
         reservation: warmup.Reservation | None, previous: clinicalslo.ReservationStatus | None,
         regions: residency.Policy | None, not_applied: str | None) -> Outcome:
    """Hold ``reservation``'s room (or, with ``not_applied`` saying why, only report it).

    ``reservation`` None means warm-up is off: placeholders an earlier cycle made are deleted.
    """
    namespace, slo_name = resource.metadata.namespace, resource.metadata.name
    earlier = previous.placeholders if previous is not None else None
    if reservation is None:
        removed, left = _remove(port, namespace, earlier, "nodeProvisioningSeconds is 0")
        # A placeholder Deployment that could not be deleted stays on record, to be deleted next cycle.
        return Outcome(previous if left else None, removed)
    message = reservation.explanation()
    if not_applied is not None or port is None:
        why = not_applied or "node warm-up is off in this operator (--no-node-warmup)"
        removed, left = _remove(port, namespace, earlier, why)
        status = _status(reservation, f"{message}; {why}: nothing reserved", earlier if left else None, False)
        return Outcome(status, removed)
    deployment = placeholders.name(slo_name)
    if reservation.replicas == 0 and earlier is None:
        return Outcome(_status(reservation, message, None, True))  # nothing to hold, nothing made yet
    try:
        body = placeholders.deployment(slo_name, resource.metadata.uid or "",
                                       port.pod_spec(namespace, resource.spec.target_ref.kind,
                                                     resource.spec.target_ref.name),
                                       reservation.replicas, settings.image, settings.priority_class, regions)
        room = port.apply(namespace, body)
    except (ports.ApiError, ports.NotFound, ValueError) as error:
        failed = f"room not reserved: {error}"
        return Outcome(_status(reservation, f"{message}; {failed}", deployment, False),
                       (events.Event("Warning", "RoomNotReserved", failed),))
    found: list[events.Event] = []
    if room.failure is not None:
        found.append(events.Event("Warning", "RoomNotReserved",
                                  f"placeholder Deployment {deployment} cannot create pods: {room.failure}"))
    changed = previous is None or not previous.applied or previous.replicas != reservation.replicas
    if changed and (reservation.replicas > 0 or (previous is not None and previous.replicas > 0)):
        reason = "RoomReserved" if reservation.replicas > 0 else "RoomReleased"
        found.append(events.Event("Normal", reason, f"{deployment}: {message}"))
    return Outcome(_status(reservation, message, deployment, True), tuple(found))


def _status(reservation: warmup.Reservation, message: str, deployment: str | None,
            applied: bool) -> clinicalslo.ReservationStatus:
    return clinicalslo.ReservationStatus(
        replicas=reservation.replicas, needed=reservation.needed, reach_seconds=reservation.reach_seconds,
        message=message[:2048], placeholders=deployment, applied=applied)


def _remove(port: Port | None, namespace: str, deployment: str | None,
            why: str) -> tuple[tuple[events.Event, ...], bool]:
    """Delete the placeholder Deployment: the Events, and whether it is (maybe) still there."""
    if deployment is None:
        return (), False
    if port is None:
        return (), True
    try:
        port.delete(namespace, deployment)
    except ports.ApiError as error:
        return (events.Event("Warning", "RoomNotReleased", f"placeholder Deployment {deployment}: {error}"),), True
    return (events.Event("Normal", "RoomReleased", f"placeholder Deployment {deployment} deleted: {why}"),), False


def recorded(status: clinicalslo.ClinicalSLOStatus) -> str | None:
    """The placeholder Deployment a status records for its ClinicalSLO, if any."""
    return status.reservation.placeholders if status.reservation is not None else None


def release(port: Port | None, namespace: str, status: clinicalslo.ClinicalSLOStatus) -> tuple[events.Event, ...]:
    """On deletion: delete the placeholders (garbage collection would too, through the owner
    reference, so a failure here is reported and does not hold the deletion)."""
    return _remove(port, namespace, recorded(status), "the ClinicalSLO is being deleted")[0]
