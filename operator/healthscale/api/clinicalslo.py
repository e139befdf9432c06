"""The ClinicalSLO resource: a clinical journey's objective, its demand signal and how to scale it.

Every default for a ClinicalSLO lives here and nowhere else; the CRD is generated from these
models (``healthscale crds``), so the API server applies the very same defaults. So do the
bounds: every spec these models accept can be planned without overflow, and one history read
spans at most MAX_HISTORY_POINTS steps.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import zoneinfo
from typing import Annotated, ClassVar, Literal

import holidays
import pydantic

from healthscale.api import common, durations

KIND = "ClinicalSLO"
PLURAL = "clinicalslos"
TIMEZONE_PATTERN = r"^(UTC|[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*)$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
"""A non-empty Kubernetes label value."""
OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""RFC 1123 subdomain: what Kubernetes accepts as an object name."""
MIN_PER_REPLICA = 0.000001
MAX_NODE_PROVISIONING_SECONDS = 3600
"""Node provisioning beyond an hour is a capacity-planning problem, not one a reservation solves."""
MAX_WARM_UP_REACH_SECONDS = 86400
"""nodeProvisioningSeconds + startupSeconds: the warm-up plans at most a day ahead."""
MAX_HISTORY_POINTS = 100_000
"""Most steps one demand history read may span (forecast.history / forecast.step): 14d at 1m is 20,160."""


class Criticality(enum.StrEnum):
    """How much the journey matters; picks the forecast quantile the planner provisions for."""

    CRITICAL = "critical"
    HIGH = "high"
    STANDARD = "standard"


class Mode(enum.StrEnum):
    """Active scales the target; Preview computes and reports but never scales."""

    ACTIVE = "Active"
    PREVIEW = "Preview"


class ForecastModel(enum.StrEnum):
    """Forecasting models; ``auto`` picks one by rolling-origin error on the series' own history."""

    AUTO = "auto"
    HARMONIC = "harmonic"
    SEASONAL_NAIVE = "seasonal-naive"
    MSTL = "mstl"
    HOLT_WINTERS = "holt-winters"


class HolidayEffect(enum.StrEnum):
    """How a public holiday is forecast."""

    LEARNED = "Learned"
    """Its own day type: a Sunday plus a level learned from the holidays in the history."""
    SUNDAY = "Sunday"
    """Exactly like a Sunday."""


class PerReplicaFrom(enum.StrEnum):
    """Where the perReplica the planner divides by comes from."""

    DECLARED = "Declared"
    """capacity.perReplica as written."""
    LEARNED = "Learned"
    """status.capacity.recommendedPerReplica, learned daily from the latency objective's history, within
    [0.5x, 2x] of capacity.perReplica and never above it during a surge; capacity.perReplica until
    there is a recommendation."""


class DataClass(enum.StrEnum):
    """What kind of data the journey's pods hold."""

    PHI = "phi"
    PII = "pii"
    NONE = "none"


def validate_timezone(name: str) -> str:
    # Names that are directories in the tz database (America, posix) raise IsADirectoryError,
    # other files in it (leapseconds) ValueError: neither is a zone.
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as error:
        raise ValueError(f"{name!r} is not an IANA time zone such as Europe/London or America/Chicago") from error
    return name


class HolidayRegion(common.Model):
    """Whose public holidays demand follows: a country and optionally one of its subdivisions."""

    country: str = pydantic.Field(min_length=2, max_length=3)
    """ISO 3166-1 alpha-2 country code as the holidays package knows it, e.g. US, GB, DE."""
    subdivision: str | None = pydantic.Field(default=None, min_length=1, max_length=32)
    """State, province or nation code within the country, e.g. IA (Iowa) or ENG (England)."""

    @pydantic.field_validator("country")
    @classmethod
    def _known_country(cls, country: str) -> str:
        if country not in _holiday_countries():
            raise ValueError(f"{country!r} is not a country code the holidays package knows (e.g. US, GB, DE)")
        return country

    @pydantic.model_validator(mode="after")
    def _known_subdivision(self) -> HolidayRegion:
        known = _holiday_countries().get(self.country, [])
        if self.subdivision is not None and self.subdivision not in known:
            listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") if known else "none"
            raise ValueError(f"subdivision {self.subdivision!r} is not one of {self.country}'s: {listed}")
        return self


@functools.cache
def _holiday_countries() -> dict[str, list[str]]:
    """Country code -> its subdivision codes, as the holidays package knows them."""
    return holidays.list_supported_countries(include_aliases=False)


class TargetRef(common.Model):
    """The workload this journey runs on."""

    api_version: Literal["apps/v1"] = "apps/v1"
    """API version of the target; apps/v1."""
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    """Kind of the target: Deployment or StatefulSet."""
    name: str = pydantic.Field(min_length=1, max_length=253, pattern=OBJECT_NAME)
    """Name of the target in the ClinicalSLO's namespace."""


class LatencyObjective(common.Model):
    """A latency objective such as "95% of requests under 1.5 s": the target share of good events,
    measured by indicators.latencyHistogram or indicators.latencyGood."""

    percentile: float = pydantic.Field(gt=0, lt=100, allow_inf_nan=False)
    """The share of requests (percent) that must be faster than the threshold, e.g. 95: the
    latency objective's target ratio, against which its error budget is computed."""
    threshold_seconds: float = pydantic.Field(gt=0, le=86400, allow_inf_nan=False)
    """The latency threshold in seconds, e.g. 1.5 (at most a day); with latencyHistogram, a bucket
    boundary (le) of the histogram."""


class Objectives(common.Model):
    """The journey's service-level objectives."""

    latency: LatencyObjective | None = None
    """Optional latency objective."""
    availability: float = pydantic.Field(default=99.9, gt=0, lt=100, allow_inf_nan=False)
    """Share of good events (percent) that the error budget is computed against."""
    window: Annotated[durations.Duration, durations.Bounds(dt.timedelta(hours=1), dt.timedelta(days=90))] = dt.timedelta(days=28)
    """The SLO compliance window, e.g. 28d; between 1h and 90d."""


HISTOGRAM_SELECTOR = r"^[a-zA-Z_:][a-zA-Z0-9_:]*_bucket(\{.*\})?$"
"""A classic histogram's bucket series, optionally with label matchers: name_bucket{...}."""
LATENCY_REPLACED = ("latency is no longer read: replace it with latencyHistogram (a histogram's bucket selector, "
                    "e.g. http_request_duration_seconds_bucket{service=\"ehr-api\"}) or latencyGood (PromQL for the "
                    "rate of requests faster than objectives.latency.thresholdSeconds)")
LATENCY_EXCLUSIVE = "latencyHistogram and latencyGood are alternatives: give one of them"
LATENCY_GOOD_TOTAL = "latencyGood needs total (the rate of all requests it is a share of)"
HISTOGRAM_RULE = "latencyHistogram must select a histogram's bucket series: name_bucket or name_bucket{matchers}"
LATENCY_MEASURED = "objectives.latency needs indicators.latencyHistogram or indicators.latencyGood to be measured"
LATENCY_OBJECTIVE = ("indicators.latencyHistogram and indicators.latencyGood need objectives.latency "
                     "(its thresholdSeconds and percentile)")
LEARNED_NEEDS_LATENCY = ("capacity.perReplicaFrom Learned needs objectives.latency and its indicator "
                         "(indicators.latencyHistogram, or indicators.latencyGood with total): perReplica is learned "
                         "as the load at which the latency objective stops being met")


class Indicators(common.Model):
    """PromQL queries for the journey's signals. Only demand is required."""

    demand: str = pydantic.Field(min_length=1, max_length=4096)
    """PromQL returning one series: demand in the unit of capacity.perReplica."""
    latency_histogram: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)
    """The latency histogram's bucket series, e.g. http_request_duration_seconds_bucket{service="ehr-api"}:
    good events are the rate of its bucket at objectives.latency.thresholdSeconds, all events the
    rate of its +Inf bucket. Alternative to latencyGood."""
    latency_good: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)
    """PromQL returning the rate of requests faster than objectives.latency.thresholdSeconds, read
    as a share of total. Alternative to latencyHistogram."""
    latency: str | None = pydantic.Field(default=None, max_length=4096)
    """Removed (it was never read): use latencyHistogram or latencyGood. Refused when set."""
    errors: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)
    """PromQL returning the rate of bad events."""
    total: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)
    """PromQL returning the rate of all events."""
    pod_load: str | None = pydantic.Field(default=None, min_length=1, max_length=4096)
    """PromQL returning one series per pod (label pod); the least loaded pods are removed first."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {"rule": "has(self.errors) == has(self.total)", "message": "errors and total must be given together"},
        {"rule": "!has(self.latency)", "message": LATENCY_REPLACED},
        {"rule": "!(has(self.latencyHistogram) && has(self.latencyGood))", "message": LATENCY_EXCLUSIVE},
        {"rule": "!has(self.latencyGood) || has(self.total)", "message": LATENCY_GOOD_TOTAL},
        {"rule": f"!has(self.latencyHistogram) || self.latencyHistogram.matches({HISTOGRAM_SELECTOR!r})",
         "message": HISTOGRAM_RULE},
    ]

    @pydantic.model_validator(mode="after")
    def _errors_with_total(self) -> Indicators:
        if (self.errors is None) != (self.total is None):
            raise ValueError("errors and total must be given together")
        if self.latency is not None:
            raise ValueError(LATENCY_REPLACED)
        if self.latency_histogram is not None and self.latency_good is not None:
            raise ValueError(LATENCY_EXCLUSIVE)
        if self.latency_good is not None and self.total is None:
            raise ValueError(LATENCY_GOOD_TOTAL)
        if self.latency_histogram is not None and not re.fullmatch(HISTOGRAM_SELECTOR, self.latency_histogram):
            raise ValueError(f"{HISTOGRAM_RULE} (got {self.latency_histogram[:200]!r})")
        return self


class Capacity(common.Model):
    """How demand turns into replicas."""

    per_replica: float = pydantic.Field(gt=0, le=1e12, allow_inf_nan=False)
    """Demand units one replica serves while meeting the latency objective (0.000001 to 1e12)."""
    min_replicas: int = pydantic.Field(default=1, ge=0, le=10000)
    """Never plan fewer replicas than this."""
    max_replicas: int = pydantic.Field(ge=1, le=10000)
    """Never plan more replicas than this."""
    startup_seconds: int = pydantic.Field(default=60, ge=0, le=86400)
    """Seconds from scale-up until a new replica serves; the planner looks this far ahead."""
    headroom_percent: float = pydantic.Field(default=10.0, ge=0, le=500, allow_inf_nan=False)
    """Least spare capacity over expected demand, in percent; the criticality's forecast quantile may ask for more."""
    per_replica_from: PerReplicaFrom = PerReplicaFrom.DECLARED
    """Declared (perReplica as written) or Learned: the load per ready replica at which the latency
    objective stops being met, learned daily from its history (status.capacity), used within
    [0.5x, 2x] of perReplica and never above perReplica during a surge. Learned needs
    objectives.latency and its indicator (latencyHistogram, or latencyGood with total)."""
    node_provisioning_seconds: int = pydantic.Field(default=0, ge=0, le=MAX_NODE_PROVISIONING_SECONDS)
    """Seconds the cluster takes to add a node (Karpenter, cluster-autoscaler), 0 to 3600; 0 (the
    default) turns node warm-up off. When set, healthscale reserves room ahead of need: placeholder
    pods shaped like the target's, at negative priority so real replicas preempt them at once, for
    the replicas the plan needs within nodeProvisioningSeconds + startupSeconds + one cycle beyond
    what it asks for now (status.reservation)."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must be <= maxReplicas"},
        {"rule": f"!has(self.nodeProvisioningSeconds) || !has(self.startupSeconds) || "
                 f"self.nodeProvisioningSeconds + self.startupSeconds <= {MAX_WARM_UP_REACH_SECONDS}",
         "message": f"nodeProvisioningSeconds + startupSeconds must be at most {MAX_WARM_UP_REACH_SECONDS} (a day)"},
        {"rule": f"self.perReplica >= {MIN_PER_REPLICA:f}", "message": f"perReplica must be at least {MIN_PER_REPLICA:f}"},
    ]

    @pydantic.model_validator(mode="after")
    def _min_not_above_max(self) -> Capacity:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas must be <= maxReplicas (minReplicas={self.min_replicas}, maxReplicas={self.max_replicas})"
            )
        if self.per_replica < MIN_PER_REPLICA:
            # Below it, demand / perReplica can overflow to infinity replicas.
            raise ValueError(f"perReplica must be at least {MIN_PER_REPLICA:f} (perReplica={self.per_replica:g})")
        if self.node_provisioning_seconds + self.startup_seconds > MAX_WARM_UP_REACH_SECONDS:
            raise ValueError(f"nodeProvisioningSeconds + startupSeconds must be at most {MAX_WARM_UP_REACH_SECONDS} "
                             f"(a day) (nodeProvisioningSeconds={self.node_provisioning_seconds}, "
                             f"startupSeconds={self.startup_seconds})")
        return self


class Forecast(common.Model):
    """How demand is forecast."""

    history: Annotated[durations.Duration, durations.Bounds(dt.timedelta(0), dt.timedelta(days=90))] = dt.timedelta(days=14)
    """How much demand history to fit on, e.g. 14d; at most 90d, and at most 100000 steps (history / step)."""
    step: Annotated[durations.Duration, durations.Bounds(dt.timedelta(minutes=1), dt.timedelta(days=1))] = dt.timedelta(minutes=5)
    """Resolution of the demand series and how often the SLO is re-planned, e.g. 5m; between 1m and 1d."""
    horizon: Annotated[durations.Duration, durations.Bounds(dt.timedelta(0), dt.timedelta(days=7))] = dt.timedelta(hours=2)
    """How far ahead to forecast, e.g. 2h; at most 7d."""
    model: ForecastModel = ForecastModel.AUTO
    """auto, harmonic, seasonal-naive, mstl or holt-winters."""
    quantile: float | None = pydantic.Field(default=None, ge=0.5, le=0.999, allow_inf_nan=False)
    """Forecast quantile to provision for; unset means the criticality's default."""
    timezone: str = pydantic.Field(default="UTC", max_length=64, pattern=TIMEZONE_PATTERN)
    """IANA time zone whose wall clock the daily and weekly cycles follow."""

    holidays: tuple[HolidayRegion, ...] = pydantic.Field(default=(), max_length=8)
    """Public holidays that change demand, e.g. [{country: US, subdivision: IA}]; none by default."""
    holiday_effect: HolidayEffect = HolidayEffect.LEARNED
    """Learned (a holiday is its own day type, learned from history and a Sunday until one is seen) or Sunday."""

    _validate_timezone = pydantic.field_validator("timezone")(validate_timezone)

    @pydantic.model_validator(mode="after")
    def _consistent_lengths(self) -> Forecast:
        if self.horizon < self.step:
            raise ValueError(f"horizon ({durations.format(self.horizon)}) must be at least one step ({durations.format(self.step)})")
        if self.history < 2 * self.horizon:
            raise ValueError(
                f"history ({durations.format(self.history)}) must be at least twice the horizon ({durations.format(self.horizon)})"
            )
        points = self.history // self.step
        if points > MAX_HISTORY_POINTS:
            raise ValueError(
                f"history ({durations.format(self.history)}) spans {points} steps of {durations.format(self.step)};"
                f" at most {MAX_HISTORY_POINTS} are read at once: lengthen the step or shorten the history"
            )
        return self


class ScaleDown(common.Model):
    """How cautiously to scale down."""

    stabilization_seconds: int = pydantic.Field(default=600, ge=0, le=86400)
    """Scale down only to the highest recommendation of this many past seconds."""
    max_step_percent: float = pydantic.Field(default=25.0, gt=0, le=100, allow_inf_nan=False)
    """Remove at most this share of the current replicas per cycle (at least one replica)."""


class Residency(common.Model):
    """Where the journey's pods may run."""

    data_class: DataClass = DataClass.PHI
    """phi, pii or none: what the pods hold."""
    regions: tuple[Annotated[str, pydantic.Field(min_length=1, max_length=63, pattern=LABEL_VALUE)], ...] = (
        pydantic.Field(default=(), max_length=64)
    )
    """Regions (values of the region node label) the pods may run in."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "self.dataClass == 'none' || (has(self.regions) && size(self.regions) > 0)",
            "message": "regions must list at least one region unless dataClass is none",
        },
    ]

    @pydantic.model_validator(mode="after")
    def _regions_for_patient_data(self) -> Residency:
        if self.data_class != DataClass.NONE and not self.regions:
            raise ValueError("regions must list at least one region unless dataClass is none")
        return self


class ClinicalSLOSpec(common.Model):
    """A clinical journey's objective, demand signal, capacity model and placement rules."""

    journey: str = pydantic.Field(min_length=1, max_length=256)
    """Human description of the clinical journey, e.g. "Open patient chart from ED triage"."""
    criticality: Criticality = Criticality.STANDARD
    """critical, high or standard; higher criticality provisions for a higher forecast quantile."""
    target_ref: TargetRef
    """The Deployment or StatefulSet to scale."""
    mode: Mode = Mode.ACTIVE
    """Active scales the target; Preview computes and reports only."""
    objectives: Objectives = pydantic.Field(default_factory=Objectives)
    """Latency and availability objectives."""
    indicators: Indicators
    """PromQL for demand (required), the latency and availability indicators, and per-pod load."""
    capacity: Capacity
    """How demand maps to replicas."""
    forecast: Forecast = pydantic.Field(default_factory=Forecast)
    """Forecast history, step, horizon and model."""
    scale_down: ScaleDown = pydantic.Field(default_factory=ScaleDown)
    """Scale-down stabilisation and step limits."""
    residency: Residency | None = None
    """Data residency: the regions the pods may run in."""

    crd_validations: ClassVar[list[dict[str, str]]] = [
        {"rule": "!has(self.objectives) || !has(self.objectives.latency) || has(self.indicators.latencyHistogram)"
                 " || has(self.indicators.latencyGood)", "message": LATENCY_MEASURED},
        {"rule": "(has(self.objectives) && has(self.objectives.latency)) || !(has(self.indicators.latencyHistogram)"
                 " || has(self.indicators.latencyGood))", "message": LATENCY_OBJECTIVE},
        {"rule": "!has(self.capacity.perReplicaFrom) || self.capacity.perReplicaFrom != 'Learned'"
                 " || (has(self.objectives) && has(self.objectives.latency)"
                 " && (has(self.indicators.latencyHistogram) || has(self.indicators.latencyGood)))",
         "message": LEARNED_NEEDS_LATENCY},
    ]

    @pydantic.model_validator(mode="after")
    def _latency_measured(self) -> ClinicalSLOSpec:
        measured = self.indicators.latency_histogram is not None or self.indicators.latency_good is not None
        if self.objectives.latency is not None and not measured:
            raise ValueError(LATENCY_MEASURED)
        if self.objectives.latency is None and measured:
            raise ValueError(LATENCY_OBJECTIVE)
        if self.capacity.per_replica_from == PerReplicaFrom.LEARNED and (self.objectives.latency is None
                                                                         or not measured):
            raise ValueError(LEARNED_NEEDS_LATENCY)
        return self


class OriginalScale(common.Model):
    """Legacy (before ``originals``): what the target had before healthscale first changed it.

    Read once from an older operator's status and turned into an ``Original``; never written."""

    kind: str
    """Deployment, StatefulSet or HorizontalPodAutoscaler."""
    name: str
    """Name of the object that was changed."""
    replicas: int | None = None
    """The workload's replicas, when healthscale scaled it directly."""
    min_replicas: int | None = None
    """The HPA's minReplicas, when healthscale moved its floor."""


class Original(common.Model):
    """One field healthscale changed on one exact object, and its value before the change.

    Written to status before the change itself, so an operator killed between the two still
    knows what to put back; restored when the ClinicalSLO is deleted, switched to Preview, or
    stops targeting the object."""

    kind: Literal["Deployment", "StatefulSet", "HorizontalPodAutoscaler", "ScaledObject"]
    """The kind of the object changed (ScaledObject: KEDA's, keda.sh/v1alpha1)."""
    name: str = pydantic.Field(min_length=1, max_length=253)
    """Its name, in the ClinicalSLO's namespace."""
    uid: str = pydantic.Field(max_length=64)
    """Its uid: a re-created object of the same name is a different object and is never written."""
    field: Literal["replicas", "minReplicas", "minReplicaCount"]
    """replicas (Deployment, StatefulSet), minReplicas (HorizontalPodAutoscaler) or minReplicaCount
    (ScaledObject)."""
    value: int = pydantic.Field(ge=0)
    """The value before healthscale first changed it."""
    scales: str | None = pydantic.Field(default=None, max_length=300)
    """For an HPA or ScaledObject: the workload it scaled (Kind/name). Should it disappear while
    healthscale holds its floor, this workload inherits the original floor as its own original."""
    scales_uid: str | None = pydantic.Field(default=None, max_length=64)
    """For an HPA or ScaledObject: the uid of the workload it scaled. Only that object inherits the
    floor: a workload re-created under the same name after the owner went was never raised by healthscale."""


class Recommendation(common.Model):
    """One cycle's recommended replicas, kept for scale-down stabilisation across restarts."""

    time: str
    """When it was recommended (RFC 3339)."""
    replicas: int
    """The replicas recommended."""


class ResidencyViolation(common.Model):
    """A pod found running on a node outside the allowed regions."""

    pod: str
    """The pod's name."""
    node: str
    """The node it runs on."""
    region: str
    """The node's region label, or "unlabelled"."""


class ResidencyShortfall(common.Model):
    """Replicas that stay Pending because the allowed regions lack room (residency is never relaxed)."""

    replicas: int
    """How many replicas the scheduler could not place."""
    regions: tuple[str, ...] = ()
    """The allowed regions they wait for; capacity must be added there."""
    regions_without_nodes: tuple[str, ...] = ()
    """Allowed regions that have no node at all."""


class ResidencyStatus(common.Model):
    """Where the journey's pods may run and where they actually run, checked every cycle."""

    compliant: bool | None = None
    """True when the pod template requires the allowed regions and every pod runs inside them."""
    label: str | None = None
    """The node label read as the region (the operator's --region-label)."""
    regions: tuple[str, ...] = ()
    """The allowed regions."""
    enforced: bool | None = None
    """Whether the target's pod template requires the allowed regions."""
    violations: tuple[ResidencyViolation, ...] = ()
    """Pods running outside the allowed regions: pod, node and region."""
    shortfall: ResidencyShortfall | None = None
    """Replicas pending for lack of room in the allowed regions."""
    evicted: tuple[str, ...] = ()
    """Pods evicted in the last cycle for running outside the allowed regions (evict mode)."""
    namespace_regions: tuple[str, ...] | None = None
    """The regions the namespace allows when it enforces residency (its healthscale.io/allowed-regions
    annotation, else the operator's default, within the cluster-wide --allowed-regions); regions must
    be among them. Unset when the namespace does not enforce residency."""
    clipped_regions: tuple[str, ...] = ()
    """Regions the namespace (or the default) lists that the cluster-wide --allowed-regions does not:
    they are not allowed."""
    label_trusted: bool | None = None
    """False when kubelets can set the region label on their own Node (see RegionLabelTrusted)."""


class ObjectiveStatus(common.Model):
    """One objective as measured over its window: its SLI, error budget and burn rates."""

    target: float | None = None
    """The objective's target share of good events, in percent (e.g. 99.9)."""
    compliance: float | None = None
    """Share of good events over objectives.window (0 to 1): the SLI ratio."""
    error_budget_remaining: float | None = None
    """Share of the error budget left over objectives.window (1 untouched, 0 spent, negative overspent)."""
    burn_rates: dict[str, float] = pydantic.Field(default_factory=dict)
    """Burn rate per window (5m, 30m, 1h, 2h, 6h, 1d, 3d): how many times faster than sustainable
    the budget is spent."""
    bucket: str | None = None
    """latency with latencyHistogram: the bucket boundary (le) read as the threshold."""
    source: str | None = None
    """Where the ratios came from: RecordingRules (healthscale:sli_error:ratio_rate* series that
    Prometheus evaluates) or Subqueries (the operator's own)."""


class ObjectivesStatus(common.Model):
    """Each objective separately; an objective that is not measured is left out."""

    availability: ObjectiveStatus | None = None
    """From indicators.errors and total, against objectives.availability."""
    latency: ObjectiveStatus | None = None
    """From indicators.latencyHistogram or latencyGood, against objectives.latency.percentile."""


class ReservationStatus(common.Model):
    """Node room held ahead of need (capacity.nodeProvisioningSeconds): how much, for what, and where."""

    replicas: int = pydantic.Field(ge=0)
    """Placeholder replicas asked for (in Preview: that would be asked for)."""
    needed: int = pydantic.Field(ge=0)
    """The most replicas the plan needs within reachSeconds."""
    reach_seconds: int = pydantic.Field(ge=0)
    """How far ahead the warm-up plans: nodeProvisioningSeconds + startupSeconds + one cycle."""
    message: str = pydantic.Field(default="", max_length=2048)
    """The reservation in one sentence, with its numbers."""
    placeholders: str | None = pydantic.Field(default=None, max_length=253)
    """The placeholder Deployment healthscale owns for this ClinicalSLO (unset in Preview)."""
    applied: bool = False
    """Whether the placeholders were written this cycle (false in Preview, or when the write failed)."""


class CapacityStatus(common.Model):
    """perReplica learned from the latency objective's history (at most daily), and the perReplica
    the planner used this cycle. No recommendation is an outcome with its reason, never 0."""

    outcome: str = pydantic.Field(max_length=64)
    """Observed (a recommendation), NotObserved (the objective held at every load seen: atLeast),
    NeverMet (missed even at the lightest load), InsufficientData, Pending (not learned yet), or why
    learning failed with nothing learned before (PrometheusUnavailable, EmptyResult, ...)."""
    message: str = pydantic.Field(default="", max_length=2048)
    """The estimate's reason, with the evidence: intervals, days, load range, band."""
    recommended_per_replica: float | None = None
    """The load per ready replica at which the latency objective stops being met (Observed only)."""
    low: float | None = None
    """Lower end of the recommendation's 5-95% band."""
    high: float | None = None
    """Upper end of the band; unset when above the heaviest load seen."""
    at_least: float | None = None
    """NotObserved: the objective held up to this load per ready replica."""
    learned_at: str | None = None
    """When the recommendation was learned (RFC 3339); relearned a day later."""
    attempted_at: str | None = None
    """When learning was last attempted (RFC 3339)."""
    error: str | None = pydantic.Field(default=None, max_length=2048)
    """Why the last attempt failed, when it did (the recommendation above is the earlier one, kept)."""
    fingerprint: str | None = pydantic.Field(default=None, max_length=16)
    """A digest of what was learned from (target, demand, latency indicator and objective): when
    it changes, perReplica is relearned at once and the earlier recommendation dropped."""
    declared_per_replica: float | None = None
    """spec.capacity.perReplica."""
    effective_per_replica: float | None = None
    """The perReplica the planner divided by this cycle."""
    source: PerReplicaFrom | None = None
    """Whether effectivePerReplica is the declared or the learned one."""
    reason: str | None = pydantic.Field(default=None, max_length=1024)
    """Why that perReplica, e.g. "perReplica 42 learned (declared 30, bounded to [15, 60])"."""


class ClinicalSLOStatus(common.Model):
    """What healthscale observed and decided, written every cycle."""

    model_config = pydantic.ConfigDict(extra="allow")

    observed_generation: int | None = None
    """The .metadata.generation the status describes."""
    conditions: tuple[common.Condition, ...] = ()
    """Ready, MetricsAvailable, Forecasting, DemandAnomaly, AvailabilityObjectiveMet, LatencyObjectiveMet,
    ResidencyCompliant, ResidencyCapacityShortfall and RegionLabelTrusted."""
    current_demand: float | None = None
    """Latest observed demand."""
    forecast_peak: float | None = None
    """Highest forecast demand (planning quantile) over the horizon."""
    forecast_peak_time: str | None = None
    """When the forecast peak comes (RFC 3339)."""
    desired_replicas: int | None = None
    """Replicas the last plan asked for."""
    current_replicas: int | None = None
    """Replicas the target had at the last cycle."""
    reason: str | None = None
    """Which signal decided: schedule, forecast, reactive or minimum."""
    surge: str | None = None
    """The surge that decided, when the reason is schedule."""
    explanation: str | None = None
    """The decision in one sentence, with its numbers."""
    next_surge: str | None = None
    """The next surge window that applies to this SLO."""
    model: str | None = None
    """The forecasting model in use."""
    forecast_error: float | None = None
    """Recent forecast error (mean absolute scaled error)."""
    objectives: ObjectivesStatus | None = None
    """Each objective's compliance, error budget and burn rates (availability, latency)."""
    error_budget_remaining: float | None = None
    """Deprecated, use objectives.availability.errorBudgetRemaining (the same value; removed in a
    later release)."""
    burn_rates: dict[str, float] = pydantic.Field(default_factory=dict)
    """Deprecated, use objectives.availability.burnRates (the same values; removed in a later release)."""
    original: OriginalScale | None = None
    """Deprecated: read from an older operator's status and moved to originals."""
    originals: tuple[Original, ...] = ()
    """Every field healthscale changed and its value before: restored on deletion or in Preview."""
    residency: ResidencyStatus | None = None
    """Data residency: compliance, violations (pod, node, region) and capacity shortfall."""
    last_cycle_time: str | None = None
    """When the last cycle ran (RFC 3339)."""
    recommendations: tuple[Recommendation, ...] = ()
    """Recommendations within the stabilisation window, so that a restarted operator does not dip."""
    capacity: CapacityStatus | None = None
    """perReplica learned daily from the latency objective, and the one planned with (with a latency objective)."""
    reservation: ReservationStatus | None = None
    """Node room reserved ahead of need, with capacity.nodeProvisioningSeconds set."""


_STATUS_LISTS = ("conditions", "originals", "recommendations")
"""Status lists read item by item, so one unreadable item does not hide the others."""


def read_status(raw: object) -> tuple[ClinicalSLOStatus, tuple[str, ...]]:
    """A status as last written, leniently: the typed model, and the fields (or list items) left
    out because they do not validate (written by an older or newer operator, or by hand). The
    records of what healthscale changed are kept whenever they can be read."""
    return common.read_leniently(ClinicalSLOStatus, raw, _STATUS_LISTS)


class ClinicalSLO(pydantic.BaseModel):
    """A whole ClinicalSLO manifest."""

    model_config = pydantic.ConfigDict(frozen=True, extra="ignore")

    api_version: Literal["healthscale.io/v1alpha1"] = pydantic.Field(alias="apiVersion")
    kind: Literal["ClinicalSLO"]
    metadata: common.ObjectMeta
    spec: ClinicalSLOSpec
    status: ClinicalSLOStatus | None = None


PRINTER_COLUMNS = [
    {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name", "description": "Workload being scaled"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas", "description": "Replicas the last plan asked for"},
    {"name": "Current", "type": "integer", "jsonPath": ".status.currentReplicas", "description": "Replicas the target has"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "description": "Signal that decided"},
    {"name": "Next surge", "type": "string", "jsonPath": ".status.nextSurge", "description": "Next surge window"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status', "description": "Ready condition"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
