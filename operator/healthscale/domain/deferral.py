"""Deferring non-critical work during surges: when deferral is in force, what it means for each
kind, and the writes of one cycle. Pure: every function takes the data and ``now`` and returns
decisions; the runtime reads the objects, saves the records and performs the writes.

- ``in_force``: deferral holds from each surge's ``start - leadTime`` (brought forward by the
  selecting ClinicalSLOs' planning reach, so the room is free before their pods) until its end and, with
  ``duringBurn``, while a critical ClinicalSLO in the namespace burns fast and for its scale-down
  stabilisation after (``remember_burns`` carries the last sighting across cycles and restarts).
- ``KINDS``: one entry per kind, saying what "deferred" is and which field is recorded.
- ``plan``: given the selected objects, the records (``surgeschedule.DeferredObject``, keyed by
  uid) and whether deferral is in force, the defer / restore / keep / leave / drop decisions.

Rules the plan keeps: never defer an object a ClinicalSLO targets (reported, and restored at once
should it have been deferred before it became one); never raise a value (a workload already at or
below ``replicas`` is left); restore the exact recorded original once deferral ends or the object
stops matching; and when the value found is not the one healthscale wrote, someone else changed it:
their change wins, the record is dropped and nothing is written.

``decide`` runs all three for one SurgeSchedule and one cycle: the one call the runtime wires in.
Runtime order, as with the ClinicalSLO's originals: save ``Plan.records`` (and ``Cycle.fast_burns``)
to status *before* the writes, perform ``Plan.writes``, then save ``Plan.settled(failed_uids)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence

from healthscale.api import surgeschedule
from healthscale.domain import calendar as calendar_

Value = surgeschedule.DeferredValue
Record = surgeschedule.DeferredObject
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
"""KEDA's annotation: the ScaledObject holds its target at this many replicas and stops scaling."""
MAX_CHAINED_WINDOWS = 64
"""Most back-to-back windows followed when telling how long deferral lasts (a bound, not a rule)."""


class Cause(enum.StrEnum):
    SURGE = "Surge"
    FAST_BURN = "FastBurn"


class Action(enum.StrEnum):
    DEFER = "defer"
    """Write the deferred value (and record the original first)."""
    RESTORE = "restore"
    """Write the recorded original back, then drop the record."""
    KEEP = "keep"
    """Deferred and staying so: no write, the record stays (its ``until`` refreshed)."""
    LEAVE = "leave"
    """Selected but not deferred (reported when ``notable``)."""
    DROP = "drop"
    """Forget the record without writing: the object is gone, re-created, or someone changed it."""


# --- When deferral is in force ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reason:
    """One cause that puts deferral in force."""

    cause: Cause
    name: str
    """The surge's name, or the burning ClinicalSLO's."""
    until: dt.datetime
    """When this cause stops holding, as known now."""

    def describe(self) -> str:
        return f"surge {self.name}" if self.cause == Cause.SURGE else f"fast burn of ClinicalSLO {self.name}"


@dataclasses.dataclass(frozen=True)
class Deferral:
    """Whether deferral is in force at one instant, and why (or why not)."""

    causes: tuple[Reason, ...]
    """Every cause holding now; empty when deferral is not in force."""
    why_not: str = ""
    """When not in force: why, in one sentence."""

    @property
    def in_force(self) -> bool:
        return bool(self.causes)

    @property
    def cause(self) -> Reason | None:
        """The cause that holds longest: the one records and Events name. On a tie, the first in
        ``causes`` (sorted: FastBurn before Surge, then by name), as ``max`` keeps the first."""
        return max(self.causes, key=lambda reason: reason.until, default=None)

    @property
    def until(self) -> dt.datetime | None:
        return max((reason.until for reason in self.causes), default=None)

    @staticmethod
    def off(why: str) -> Deferral:
        """Not in force, e.g. "the schedule is being deleted" or "spec.defer is unset"."""
        return Deferral((), why)


@dataclasses.dataclass(frozen=True)
class SloBurn:
    """One ClinicalSLO in the schedule's namespace, as far as deferral during a burn cares."""

    slo: str
    critical: bool
    """Whether its criticality is critical: only those put deferral in force."""
    burning: bool
    """Whether its error budget burns fast now (a page-level burn-rate pair fires)."""
    stabilization: dt.timedelta
    """Its spec.scaleDown.stabilizationSeconds: deferral holds this long after the burn was last seen."""


def remember_burns(seen: Mapping[str, dt.datetime], slos: Sequence[SloBurn],
                   now: dt.datetime) -> dict[str, dt.datetime]:
    """When each critical ClinicalSLO was last seen burning fast (status.fastBurns), updated for
    ``now``: a burn seen now is remembered at ``now``; one past its stabilisation, or of an SLO no
    longer there or no longer critical, is forgotten."""
    by_name = {item.slo: item for item in slos if item.critical}
    remembered: dict[str, dt.datetime] = {}
    for name, item in by_name.items():
        if item.burning:
            remembered[name] = now
        elif name in seen and now < seen[name] + item.stabilization:
            remembered[name] = seen[name]
    return remembered


def _surge_until(calendar: calendar_.Calendar, window: calendar_.Window) -> dt.datetime:
    """The end of ``window``, followed through windows (of any surge) whose lead time opens before it ends."""
    until = window.end
    for _ in range(MAX_CHAINED_WINDOWS):
        following = [item for item in calendar.windows(until - dt.timedelta(seconds=1), until + dt.timedelta(seconds=1))
                     if item.effective_start <= until < item.end]
        later = max((item.end for item in following), default=until)
        if later <= until:
            break
        until = later
    return until


def in_force(policy: surgeschedule.DeferPolicy | None, calendar: calendar_.Calendar,
             burns_seen: Mapping[str, dt.datetime], slos: Sequence[SloBurn], now: dt.datetime,
             lookahead: dt.timedelta = dt.timedelta(0)) -> Deferral:
    """Whether deferral is in force at ``now``: inside a surge window or its lead time, or
    ``lookahead`` before that, or (with duringBurn) within a critical ClinicalSLO's stabilisation
    after its fast burn was last seen (``burns_seen`` as returned by ``remember_burns`` for this ``now``).

    ``lookahead``: how long before a surge's ``start - leadTime`` the planner of the ClinicalSLOs
    the schedule selects asks for the surge's replicas (``planning.Policy.reach``), plus one
    deferral cycle: the room is then free before those pods are created, not after."""
    if policy is None:
        return Deferral.off("spec.defer is unset")
    causes = [Reason(Cause.SURGE, window.surge, _surge_until(calendar, window))
              for window in calendar.in_effect(now, lookahead)]
    if policy.during_burn:
        stabilization = {item.slo: item.stabilization for item in slos if item.critical}
        for name, last in burns_seen.items():
            # A burn seen now holds even without stabilisation (for as long as it is seen).
            if name in stabilization and (last == now or last <= now < last + stabilization[name]):
                causes.append(Reason(Cause.FAST_BURN, name, last + stabilization[name]))
    merged: dict[tuple[Cause, str], Reason] = {}
    for reason in causes:
        key = (reason.cause, reason.name)
        if key not in merged or merged[key].until < reason.until:
            merged[key] = reason
    if merged:
        return Deferral(tuple(sorted(merged.values(), key=lambda reason: (reason.cause, reason.name))))
    burning = " and no critical ClinicalSLO burns fast" if policy.during_burn else ""
    return Deferral.off(f"no surge is within its window or lead time{burning}")


# --- What deferral means for each kind -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One object the runtime found: every object spec.defer selects, and every recorded one that
    still exists (read by name). A failed read means no plan this cycle, never a missing object."""

    kind: str
    name: str
    uid: str
    current: Value
    """Its value of the kind's field now (a CronJob's or Job's unset suspend is False)."""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    targeted_by: str | None = None
    """The ClinicalSLO that targets it (for a ScaledObject: that targets what it scales), if any."""
    scaled_by: str | None = None
    """Deployment, StatefulSet: the autoscaler that sets its replicas (``HorizontalPodAutoscaler/x``,
    ``ScaledObject/y``); writing them would fight it."""
    scaled_replicas: int | None = None
    """ScaledObject: the replicas of the workload it scales, when known."""
    scales: str | None = None
    """ScaledObject: the workload it scales, ``Kind/name`` (a ClinicalSLO target makes it one too)."""
    started: bool = False
    """Job: whether it has started (status.startTime is set)."""
    finished: bool = False
    """Job: whether it has completed or failed."""


@dataclasses.dataclass(frozen=True)
class Blocked:
    reason: str
    message: str
    notable: bool = True
    """Whether status.notDeferred lists it (a refusal), or it is merely already deferred."""


@dataclasses.dataclass(frozen=True)
class KindRule:
    """What deferral does to one kind."""

    kind: surgeschedule.DeferrableKind
    field: surgeschedule.DeferredField
    means: str
    """What "deferred" is for this kind, for docs and messages."""
    records: str
    """What is recorded before the first write (and restored after)."""
    deferred: Callable[[surgeschedule.DeferPolicy], Value]
    """The value deferral writes."""
    blocked: Callable[[Workload, surgeschedule.DeferPolicy], Blocked | None]
    """Why this object is not deferred now (besides being a ClinicalSLO target), or None."""
    api_version: str = "apps/v1"
    """Its apiVersion (Events name the object by it)."""

    def read(self, value: Value) -> int | bool | str | None:
        """The kind's field of ``value`` (a CronJob's or Job's unset suspend read as False)."""
        item: int | bool | str | None = getattr(value, _ATTRIBUTE[self.field])
        return False if self.field == "suspend" and item is None else item

    def value(self, item: int | bool | str | None) -> Value:
        return Value.model_validate({self.field: item})

    def same(self, left: Value, right: Value) -> bool:
        first, second = self.read(left), self.read(right)
        return type(first) is type(second) and first == second


_ATTRIBUTE = {"replicas": "replicas", "suspend": "suspend", "pausedReplicas": "paused_replicas"}


def _replicas_blocked(workload: Workload, policy: surgeschedule.DeferPolicy) -> Blocked | None:
    if workload.scaled_by is not None:
        return Blocked("ScaledByAutoscaler", f"{workload.scaled_by} sets its replicas: writing them would fight it"
                                             " (select the ScaledObject instead, which deferral pauses)")
    replicas = workload.current.replicas
    if replicas is None:
        return Blocked("ReplicasUnknown", "has no spec.replicas to record")
    if replicas <= policy.replicas:
        return Blocked("AlreadyAtOrBelow", f"{replicas} replicas, at or below spec.defer.replicas "
                                           f"({policy.replicas})", notable=False)
    return None


def _cron_job_blocked(workload: Workload, _policy: surgeschedule.DeferPolicy) -> Blocked | None:
    if workload.current.suspend:
        return Blocked("AlreadySuspended", "already suspended (not by healthscale)", notable=False)
    return None


def _job_blocked(workload: Workload, policy: surgeschedule.DeferPolicy) -> Blocked | None:
    if workload.finished:
        return Blocked("Finished", "has finished; nothing to defer", notable=False)
    if workload.current.suspend:
        return Blocked("AlreadySuspended", "already suspended (not by healthscale)", notable=False)
    if workload.started and not policy.interrupt_running:
        return Blocked("Running", "has started; left running (spec.defer.interruptRunning is false)")
    return None


def _scaled_object_blocked(workload: Workload, policy: surgeschedule.DeferPolicy) -> Blocked | None:
    if workload.current.paused_replicas is not None:
        return Blocked("AlreadyPaused", f"already paused at {workload.current.paused_replicas} (not by healthscale)")
    if workload.scaled_replicas is not None and workload.scaled_replicas <= policy.replicas:
        return Blocked("AlreadyAtOrBelow", f"scales a workload at {workload.scaled_replicas} replicas, at or below "
                                           f"spec.defer.replicas ({policy.replicas})", notable=False)
    return None


KINDS: dict[str, KindRule] = {
    rule.kind: rule
    for rule in (
        KindRule("Deployment", "replicas", "shrunk to spec.defer.replicas", "spec.replicas",
                 lambda policy: Value(replicas=policy.replicas), _replicas_blocked),
        KindRule("StatefulSet", "replicas", "shrunk to spec.defer.replicas", "spec.replicas",
                 lambda policy: Value(replicas=policy.replicas), _replicas_blocked),
        KindRule("CronJob", "suspend", "spec.suspend true: no new runs start", "spec.suspend",
                 lambda _policy: Value(suspend=True), _cron_job_blocked, "batch/v1"),
        KindRule("Job", "suspend", "spec.suspend true, only before it starts unless spec.defer.interruptRunning",
                 "spec.suspend", lambda _policy: Value(suspend=True), _job_blocked, "batch/v1"),
        KindRule("ScaledObject", "pausedReplicas",
                 f"annotation {PAUSED_REPLICAS_ANNOTATION}: spec.defer.replicas (KEDA holds its target there)",
                 f"the {PAUSED_REPLICAS_ANNOTATION} annotation (absent is recorded as unset and removed on restore)",
                 lambda policy: Value(paused_replicas=str(policy.replicas)), _scaled_object_blocked, "keda.sh/v1alpha1"),
    )
}
"""One entry per kind spec.defer acts on; the field is ``surgeschedule.FIELDS``'s."""


# --- The plan of one cycle ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Write:
    """One field of one exact object (uid precondition), expected to hold ``expected`` before."""

    kind: str
    name: str
    uid: str
    field: surgeschedule.DeferredField
    value: Value
    """What to write; for pausedReplicas, unset means remove the annotation."""
    expected: Value


@dataclasses.dataclass(frozen=True)
class Decision:
    kind: str
    name: str
    uid: str
    action: Action
    reason: str
    """A CamelCase word: Deferred, WouldDefer, Restored, Kept, ChangedByOthers, ClinicalTarget, ..."""
    message: str
    write: Write | None = None
    record: Record | None = None
    """The record after this cycle (defer, keep; restore until the write succeeds)."""
    cause: Reason | None = None
    notable: bool = False
    """Reported in status.notDeferred (a LEAVE that is a refusal)."""
    before: Record | None = None
    """The record as it stood before this cycle (None for a first deferral)."""


@dataclasses.dataclass(frozen=True)
class Plan:
    deferral: Deferral
    decisions: tuple[Decision, ...]

    @property
    def writes(self) -> tuple[Write, ...]:
        return tuple(decision.write for decision in self.decisions if decision.write is not None)

    @property
    def records(self) -> tuple[Record, ...]:
        """status.deferred to save *before* the writes: new, kept, and being restored."""
        return tuple(decision.record for decision in self.decisions if decision.record is not None)

    def settled(self, failed: Iterable[str] = (), refused: Iterable[str] = ()) -> tuple[Record, ...]:
        """status.deferred after the writes, given the uids whose write ``failed`` (no answer: it may
        or may not have been applied) or was ``refused`` (certainly not applied, e.g. a 409).

        A restore that succeeded drops its record; one that failed or was refused keeps it, for the
        next cycle. A deferral that failed keeps its record (should the write not have been applied,
        the next cycle sees someone else's value and leaves the object alone: never fight); one that
        was refused keeps the record as it was before (none for a first deferral, which the next
        cycle tries again)."""
        failing, refusing = set(failed), set(refused)
        kept: list[Record] = []
        for decision in self.decisions:
            if decision.record is None:
                continue
            if decision.action == Action.RESTORE:
                if decision.uid in failing | refusing:
                    kept.append(decision.record)
            elif decision.action == Action.DEFER and decision.uid in refusing:
                if decision.before is not None:
                    kept.append(decision.before)
            else:
                kept.append(decision.record)
        return tuple(kept)

    @property
    def deferred_count(self) -> int:
        """Objects held deferred after this cycle (status and the metric; overridden ones are not)."""
        return sum(1 for record in self.records if record.overridden_at is None)

    @property
    def not_deferred(self) -> tuple[surgeschedule.NotDeferred, ...]:
        return tuple(surgeschedule.NotDeferred(kind=decision.kind, name=decision.name, reason=decision.reason,
                                               message=decision.message[:1024])
                     for decision in self.decisions if decision.notable)


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _label(kind: str, name: str) -> str:
    return f"{kind} {name}"


def _restore(record: Record, rule: KindRule, why: str) -> Decision:
    write = Write(record.kind, record.name, record.uid, record.field, record.original, record.written)
    shown = rule.read(record.original)
    return Decision(record.kind, record.name, record.uid, Action.RESTORE, "Restored",
                    f"restore {_label(record.kind, record.name)} {record.field} to "
                    f"{'no annotation' if shown is None else shown}: {why} (deferred since {record.since} for "
                    f"{'surge' if record.cause == 'Surge' else 'the fast burn of ClinicalSLO'} {record.cause_name})",
                    write=write, record=record)


def _settle_record(record: Record, workload: Workload | None, same_name: Workload | None,
                   policy: surgeschedule.DeferPolicy | None, deferral: Deferral, now: dt.datetime,
                   preview: bool) -> Decision:
    label = _label(record.kind, record.name)
    rule = KINDS[record.kind]
    if workload is None:
        if same_name is not None:
            return Decision(record.kind, record.name, record.uid, Action.DROP, "Recreated",
                            f"{label} was re-created (uid {record.uid} is gone): its record is dropped and the new "
                            "object is never given the old original")
        return Decision(record.kind, record.name, record.uid, Action.DROP, "Gone",
                        f"{label} is gone: nothing to restore")
    staying = (policy is not None and deferral.in_force and not preview and policy.selector.matches(dict(workload.labels))
               and workload.targeted_by is None)
    changed = record.overridden_at is not None or not rule.same(workload.current, record.written)
    if changed:
        found = (f"{label} {record.field} is {rule.read(workload.current)}, not the {rule.read(record.written)} "
                 "healthscale wrote: someone changed it during the window, and their change is kept")
        if staying:
            # Kept (marked) until deferral ends, so that the next cycle does not defer it again.
            marked = record if record.overridden_at is not None else record.model_copy(
                update={"overridden_at": _stamp(now)})
            return Decision(record.kind, record.name, record.uid, Action.LEAVE, "ChangedByOthers",
                            f"{found}; left alone until deferral ends", record=marked, notable=True)
        return Decision(record.kind, record.name, record.uid, Action.DROP, "ChangedByOthers",
                        f"{found}; the record is dropped without writing")
    if workload.scaled_by is not None:
        return Decision(record.kind, record.name, record.uid, Action.DROP, "ScaledByAutoscaler",
                        f"{workload.scaled_by} now sets {label}'s replicas: writing them back would fight it; "
                        "the record is dropped")
    if workload.targeted_by is not None:
        return _restore(record, rule, f"ClinicalSLO {workload.targeted_by} targets it; a target is never deferred")
    if preview:
        return _restore(record, rule, "preview changes nothing, so healthscale's own change is undone")
    if policy is None or not deferral.in_force:
        return _restore(record, rule, f"deferral ended ({deferral.why_not or 'not in force'})")
    if not policy.selector.matches(dict(workload.labels)):
        return _restore(record, rule, "spec.defer.selector no longer selects it")
    cause = deferral.cause
    assert cause is not None  # in force
    wanted = rule.deferred(policy)
    until = _stamp(cause.until)
    if rule.same(wanted, record.written):
        return Decision(record.kind, record.name, record.uid, Action.KEEP, "Kept",
                        f"{label} stays deferred until {until} ({cause.describe()})",
                        record=record.model_copy(update={"until": until}), cause=cause)
    # spec.defer.replicas was edited mid-window: move to the new value unless that would raise it.
    original, target = rule.read(record.original), rule.read(wanted)
    if isinstance(original, int) and isinstance(target, int) and rule.field == "replicas" and target >= original:
        return _restore(record, rule, f"spec.defer.replicas ({target}) is no longer below its original ({original})")
    return Decision(record.kind, record.name, record.uid, Action.DEFER, "Deferred",
                    f"defer {label} {record.field} {rule.read(record.written)} -> {target}: spec.defer changed "
                    f"({cause.describe()})",
                    write=Write(record.kind, record.name, record.uid, record.field, wanted, record.written),
                    record=record.model_copy(update={"written": wanted, "until": until}), cause=cause, before=record)


def _consider(workload: Workload, policy: surgeschedule.DeferPolicy, deferral: Deferral, now: dt.datetime,
              preview: bool) -> Decision | None:
    label = _label(workload.kind, workload.name)
    rule = KINDS.get(workload.kind)
    if rule is None:
        return Decision(workload.kind, workload.name, workload.uid, Action.LEAVE, "UnsupportedKind",
                        f"{label}: spec.defer acts on {', '.join(KINDS)} only", notable=True)
    if workload.targeted_by is not None:
        return Decision(workload.kind, workload.name, workload.uid, Action.LEAVE, "ClinicalTarget",
                        f"{label} is targeted by ClinicalSLO {workload.targeted_by}: never deferred", notable=True)
    blocked = rule.blocked(workload, policy)
    if blocked is not None:
        if not blocked.notable and not deferral.in_force:
            return None
        return Decision(workload.kind, workload.name, workload.uid, Action.LEAVE, blocked.reason,
                        f"{label} {blocked.message}", notable=blocked.notable)
    cause = deferral.cause
    if cause is None:
        return None
    wanted = rule.deferred(policy)
    message = (f"{label} {rule.field} {rule.read(workload.current)} -> {rule.read(wanted)} until "
               f"{_stamp(cause.until)} ({cause.describe()})")
    if preview:
        return Decision(workload.kind, workload.name, workload.uid, Action.LEAVE, "WouldDefer",
                        f"would defer {message} (preview: nothing is changed)", cause=cause)
    original = rule.value(rule.read(workload.current))
    record = Record(kind=rule.kind, name=workload.name, uid=workload.uid, field=rule.field, original=original,
                    written=wanted, since=_stamp(now), until=_stamp(cause.until),
                    cause="Surge" if cause.cause == Cause.SURGE else "FastBurn", cause_name=cause.name)
    return Decision(workload.kind, workload.name, workload.uid, Action.DEFER, "Deferred", f"defer {message}",
                    write=Write(workload.kind, workload.name, workload.uid, rule.field, wanted, original),
                    record=record, cause=cause)


def plan(policy: surgeschedule.DeferPolicy | None, workloads: Sequence[Workload], records: Sequence[Record],
         deferral: Deferral, now: dt.datetime, *, preview: bool = False) -> Plan:
    """The decisions of one cycle.

    ``workloads``: every object spec.defer selects (kinds in ``KINDS``) and every recorded object that
    still exists; ``records``: status.deferred; ``deferral``: ``in_force`` for ``now`` (or
    ``Deferral.off`` when the schedule is deleted). ``preview`` (Preview, --dry-run) defers nothing
    new but still restores: restores only undo healthscale's own changes."""
    by_uid = {workload.uid: workload for workload in workloads}
    by_name = {(workload.kind, workload.name): workload for workload in workloads}
    decisions: list[Decision] = []
    settled: set[str] = set()
    for record in records:
        if record.uid in settled:
            continue  # a duplicate record of one object: the first one is the original
        settled.add(record.uid)
        workload = by_uid.get(record.uid)
        if workload is not None and (workload.kind, workload.name) != (record.kind, record.name):
            workload = None  # a uid is one object's; another kind or name is not it
        same_name = by_name.get((record.kind, record.name))
        decisions.append(_settle_record(record, workload, same_name, policy, deferral, now, preview))
    if policy is not None:
        for workload in sorted(workloads, key=lambda item: (item.kind, item.name, item.uid)):
            if workload.uid in settled or not policy.selector.matches(dict(workload.labels)):
                continue
            decision = _consider(workload, policy, deferral, now, preview)
            if decision is not None:
                decisions.append(decision)
    return Plan(deferral, tuple(decisions))


# --- One cycle of one SurgeSchedule ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cycle:
    deferral: Deferral
    plan: Plan
    fast_burns: tuple[surgeschedule.FastBurnSeen, ...]
    """status.fastBurns to save with the records."""


def _parse(stamp: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def decide(spec: surgeschedule.SurgeScheduleSpec, status: surgeschedule.SurgeScheduleStatus | None,
           slos: Sequence[SloBurn], workloads: Sequence[Workload], now: dt.datetime, *, preview: bool = False,
           deleting: bool = False, ended: str = "the SurgeSchedule is being deleted",
           lookahead: dt.timedelta = dt.timedelta(0)) -> Cycle:
    """Remember burns, tell whether deferral is in force, and plan the writes, for one schedule at ``now``.

    ``slos``: the ClinicalSLOs in the schedule's namespace; ``deleting``: the schedule is being deleted
    (everything is restored; ``ended`` says why, in status and in the Restored Events). A fast-burn
    sighting that cannot be read is forgotten (deferral then ends at most one stabilisation early,
    never late)."""
    status = status or surgeschedule.SurgeScheduleStatus()
    seen = {item.slo: moment for item in status.fast_burns if (moment := _parse(item.last_seen)) is not None}
    remembered = remember_burns(seen, slos, now) if spec.defer is not None and spec.defer.during_burn else {}
    if deleting:
        state = Deferral.off(ended)
    else:
        state = in_force(spec.defer, calendar_.Calendar.of(spec), remembered, slos, now, lookahead)
    cycle_plan = plan(None if deleting else spec.defer, workloads, status.deferred, state, now, preview=preview)
    burns = tuple(surgeschedule.FastBurnSeen(slo=name, last_seen=_stamp(moment))
                  for name, moment in sorted(remembered.items()))
    return Cycle(state, cycle_plan, burns)
