"""The load test's ClinicalSLOs and SurgeSchedule, as YAML manifests validated by healthscale's own
pydantic models (what ``kubectl apply`` would send the operator).

- ``operator``: the SLO the reconcile runs for the operator pool: the latency objective on the
  service's histogram (``indicators.latencyHistogram``, bucket 0.25 s), demand = the pool's request rate.
- ``capacity``: the same objective read for ``healthscale capacity`` over the sweep, through
  ``indicators.latencyGood``/``total`` on the same histogram, with the same 20 s rate window as
  its demand: the reconcile's latencyHistogram queries use rate()[5m], longer than the whole
  compressed sweep, and a load and an SLI over different windows would misalign every interval.
"""

from __future__ import annotations

import yaml

from healthscale.api import clinicalslo, surgeschedule

HISTOGRAM = "loadtest_request_duration_seconds"
OPERATOR_POOL = "operator"

_SLO = """
apiVersion: healthscale.io/v1alpha1
kind: ClinicalSLO
metadata:
  name: {name}
  namespace: loadtest
  generation: 1
  labels: {{healthscale.io/journey-group: loadtest}}
spec:
  journey: "load test: ED triage screens (call-centre morning replayed)"
  criticality: critical
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: {pool}}}
  mode: Active
  objectives:
    latency: {{percentile: {percentile:g}, thresholdSeconds: {threshold:g}}}
    availability: 99.9
    window: 1h
  indicators:
{indicators}
  capacity: {{perReplica: {per_replica:.6g}, minReplicas: 1, maxReplicas: {max_replicas}, startupSeconds: {startup:.0f},
             headroomPercent: {headroom:g}}}
  forecast: {{history: 1h, step: 1m, horizon: 5m}}
  scaleDown: {{stabilizationSeconds: 60, maxStepPercent: 50}}
"""

_SCHEDULE = """
apiVersion: healthscale.io/v1alpha1
kind: SurgeSchedule
metadata: {{name: shift-change, namespace: loadtest}}
spec:
  timezone: UTC
  selector: {{matchLabels: {{healthscale.io/journey-group: loadtest}}}}
  surges:
  - {{name: morning-shift-change, start: "{start}", end: "{end}", minReplicas: {floor}}}
"""


def operator(percentile: float, threshold: float, per_replica: float, max_replicas: int, startup: float,
             headroom: float) -> clinicalslo.ClinicalSLO:
    indicators = (f'    demand: sum(rate(loadtest_requests_total{{pool="{OPERATOR_POOL}"}}[1m]))\n'
                  f'    latencyHistogram: {HISTOGRAM}_bucket{{pool="{OPERATOR_POOL}"}}')
    return _slo("loadtest", indicators, percentile, threshold, per_replica, max_replicas, startup, headroom)


def capacity(percentile: float, threshold: float, declared: float, max_replicas: int, startup: float,
             window: str = "20s") -> clinicalslo.ClinicalSLO:
    """Both pools (each at a fixed replica count during the sweep) pooled: twice the evidence."""
    indicators = (f"    demand: sum(rate(loadtest_requests_total[{window}]))\n"
                  f'    latencyGood: sum(rate({HISTOGRAM}_bucket{{le="{threshold:g}"}}[{window}]))\n'
                  f"    total: sum(rate({HISTOGRAM}_count[{window}]))\n"
                  "    errors: vector(0)")  # the models pair errors with total; the fit reads latency only
    return _slo("loadtest-capacity", indicators, percentile, threshold, declared, max_replicas, startup, 0)


REPLICAS_QUERY = 'count(up{job="replicas"} == 1)'
"""Ready replicas of both pools: a replica listens (is up) only once it is Ready."""


def _slo(name: str, indicators: str, percentile: float, threshold: float, per_replica: float, max_replicas: int,
         startup: float, headroom: float) -> clinicalslo.ClinicalSLO:
    text = _SLO.format(name=name, pool=OPERATOR_POOL, indicators=indicators, percentile=percentile,
                       threshold=threshold, per_replica=per_replica, max_replicas=max_replicas, startup=startup,
                       headroom=headroom)
    return clinicalslo.ClinicalSLO.model_validate(yaml.safe_load(text))


def schedule(start: str, end: str, floor: int) -> surgeschedule.SurgeSchedule:
    """``start``/``end`` as YYYY-MM-DDTHH:MM in UTC."""
    return surgeschedule.SurgeSchedule.model_validate(yaml.safe_load(_SCHEDULE.format(start=start, end=end,
                                                                                      floor=floor)))
