"""``healthscale explain``'s text, from a ClinicalSLO's JSON alone (no cluster): the decision and its numbers,
the conditions, what healthscale changed and will put back, residency, and the cycle's age; a status
written in a shape this version does not read still shows everything else and names what it left out.
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from healthscale import explain

NOW = dt.datetime(2026, 11, 30, 13, 0, 30, tzinfo=dt.timezone.utc)

RESOURCE: dict[str, Any] = {
    "apiVersion": "healthscale.io/v1alpha1",
    "kind": "ClinicalSLO",
    "metadata": {"name": "ed-triage-chart", "namespace": "ehr", "generation": 3},
    "spec": {"journey": "Open patient chart from ED triage", "mode": "Active",
             "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ehr-api"}},
    "status": {
        "observedGeneration": 3,
        "lastCycleTime": "2026-11-30T13:00:00Z",
        "desiredReplicas": 14,
        "currentReplicas": 11,
        "reason": "schedule",
        "surge": "morning-rounds",
        "explanation": "14 replicas (was 11): schedule morning-rounds floor 14",
        "currentDemand": 412.5,
        "forecastPeak": 13500.0,
        "forecastPeakTime": "2026-11-30T13:33:00Z",
        "model": "harmonic",
        "forecastError": 0.412,
        "nextSurge": "evening-handover at 2026-11-30T19:00Z",
        "errorBudgetRemaining": 0.873,
        "burnRates": {"1h": 0.5, "5m": 1.25},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Planned",
             "message": "applied; 14 replicas (was 11): schedule morning-rounds floor 14",
             "lastTransitionTime": "2026-11-30T12:55:30Z", "observedGeneration": 3},
            {"type": "MetricsAvailable", "status": "True", "reason": "DemandObserved",
             "message": "4032 demand samples over 336h", "lastTransitionTime": "2026-11-28T13:00:30Z"},
        ],
        "originals": [
            {"kind": "Deployment", "name": "ehr-api", "uid": "0a1b", "field": "replicas", "value": 2},
            {"kind": "HorizontalPodAutoscaler", "name": "ehr-api", "uid": "2c3d", "field": "minReplicas",
             "value": 3, "scales": "Deployment/ehr-api"},
        ],
        "residency": {"compliant": False, "label": "topology.kubernetes.io/region",
                      "regions": ["eu-west-1", "eu-central-1"], "enforced": True,
                      "violations": [{"pod": "ehr-api-7d9-x2", "node": "worker-us", "region": "us-east-1"}],
                      "shortfall": {"replicas": 2, "regions": ["eu-west-1"], "regionsWithoutNodes": ["eu-central-1"]}},
    },
}

EXPECTED = """\
ClinicalSLO:   ehr/ed-triage-chart
Journey:       Open patient chart from ED triage
Target:        Deployment/ehr-api
Mode:          Active
Last cycle:    2026-11-30T13:00:00Z (30s ago)

Decision:
  Replicas:      desired 14, current 11
  Reason:        schedule (surge morning-rounds)   (the largest of schedule, forecast, reactive, minimum)
  Explanation:   14 replicas (was 11): schedule morning-rounds floor 14
  Demand now:    412.5
  Forecast peak: 1.35e+04 at 2026-11-30T13:33:00Z (in 32m)
  Model:         harmonic, forecast error (MASE) 0.412
  Next surge:    evening-handover at 2026-11-30T19:00Z
  Error budget:  87.3% remaining; burn rates 1h 0.5x, 5m 1.25x

Conditions:
  TYPE              STATUS  REASON          AGE  MESSAGE
  Ready             True    Planned         5m   applied; 14 replicas (was 11): schedule morning-rounds floor 14
  MetricsAvailable  True    DemandObserved  2d   4032 demand samples over 336h

Changed by healthscale (put back on deletion, in Preview, or when targetRef moves):
  Deployment ehr-api: replicas was 2
  HorizontalPodAutoscaler ehr-api: minReplicas was 3 (it scales Deployment/ehr-api)

Residency:
  NOT compliant: regions eu-west-1, eu-central-1 (node label topology.kubernetes.io/region); the pod template requires them
  outside: pod ehr-api-7d9-x2 on node worker-us (us-east-1)
  shortfall: 2 replica(s) pending for lack of room in eu-west-1; no nodes at all in eu-central-1
"""


def test_explain_prints_the_decision_its_numbers_conditions_records_and_residency() -> None:
    assert explain.describe(RESOURCE, NOW) == EXPECTED


def test_a_status_field_this_version_cannot_read_is_named_and_the_rest_is_shown() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["status"]["desiredReplicas"] = "fourteen"
    resource["status"]["conditions"].append({"type": "Forecasting", "status": "Maybe"})
    text = explain.describe(resource, NOW)
    assert "  Replicas:      desired -, current 11\n" in text
    assert "  Ready             True" in text and "Forecasting" not in text
    assert "  Deployment ehr-api: replicas was 2\n" in text
    assert text.endswith("\nUnreadable status fields, not shown: desiredReplicas, conditions[2]\n")


def test_a_clinicalslo_without_status_says_no_operator_has_reconciled_it() -> None:
    resource = {key: value for key, value in RESOURCE.items() if key != "status"}
    resource["spec"] = {**RESOURCE["spec"], "mode": "Preview"}
    text = explain.describe(resource, NOW)
    assert "Mode:          Preview  (computes and reports, never scales)\n" in text
    assert "No status yet: no operator has reconciled this ClinicalSLO." in text


def test_a_status_behind_the_spec_says_which_generation_it_describes() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["metadata"]["generation"] = 4
    text = explain.describe(resource, NOW)
    assert "describes generation 3; the spec is at generation 4 (the next cycle catches up)" in text


def test_no_forecast_and_no_records_are_said_plainly() -> None:
    resource = copy.deepcopy(RESOURCE)
    for key in ("forecastPeak", "forecastPeakTime", "originals", "residency", "errorBudgetRemaining", "burnRates"):
        del resource["status"][key]
    text = explain.describe(resource, NOW)
    assert "  Forecast peak: - (no forecast; see the Forecasting condition)\n" in text
    assert "  nothing: healthscale has changed no field of the target (or has put everything back)\n" in text
    assert "Residency:" not in text and "Error budget" not in text


def test_ages_read_like_kubectl() -> None:
    assert [explain.age(seconds) for seconds in (0, 59, 60, 119, 7199, 7200, 172799, 172800, -90)] == [
        "0s", "59s", "1m", "1m", "119m", "2h", "47h", "2d", "in 1m"]


def test_each_objective_is_shown_with_its_compliance_budget_and_burn_rates() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["spec"]["objectives"] = {"latency": {"percentile": 95, "thresholdSeconds": 1.5}}
    resource["status"]["objectives"] = {
        "availability": {"target": 99.9, "compliance": 0.99987, "errorBudgetRemaining": 0.873,
                         "burnRates": {"1h": 0.5, "5m": 1.25}},
        "latency": {"target": 95, "compliance": 0.2, "errorBudgetRemaining": -15.0, "bucket": "1.5",
                    "burnRates": {"1h": 16.0, "5m": 16.0}},
    }
    text = explain.describe(resource, NOW)
    assert ("  Availability:  objective 99.9%: compliance 99.987%, 87.3% of the error budget left; "
            "burn rates 1h 0.5x, 5m 1.25x\n") in text
    assert ("  Latency:       objective 95% under 1.5s (bucket le=1.5): compliance 20.000%, -1500.0% of the error "
            "budget left; burn rates 1h 16x, 5m 16x\n") in text
    assert "Error budget:" not in text, "the deprecated top-level fields are not shown twice"


def test_an_objective_not_measured_yet_shows_dashes() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["status"]["objectives"] = {"latency": {"target": 95}}
    text = explain.describe(resource, NOW)
    assert "  Latency:       objective 95%: compliance -, error budget -\n" in text
    assert "Availability:" not in text


def test_an_objective_read_from_the_recording_rules_says_so() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["status"]["objectives"] = {"availability": {"target": 99.9, "compliance": 0.9999, "source": "RecordingRules",
                                                         "errorBudgetRemaining": 0.9, "burnRates": {"1h": 0.1}}}
    text = explain.describe(resource, NOW)
    assert "burn rates 1h 0.1x (from the recording rules)\n" in text


def test_the_capacity_section_shows_the_perreplica_planned_with_and_the_learned_one() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["status"]["capacity"] = {
        "outcome": "Observed", "recommendedPerReplica": 41.2, "low": 39.5, "learnedAt": "2026-11-30T10:00:30Z",
        "declaredPerReplica": 30, "effectivePerReplica": 41.2, "source": "Learned",
        "reason": "perReplica 41.2 learned (declared 30, bounded to [15, 60])",
        "error": "PrometheusUnavailable: connection refused", "attemptedAt": "2026-11-30T12:00:30Z"}
    text = explain.describe(resource, NOW)
    assert "  perReplica:    41.2 (perReplica 41.2 learned (declared 30, bounded to [15, 60]))\n" in text
    assert ("  Learned:       41.2 (band 39.5 to above the heaviest load), learned 2026-11-30T10:00:30Z (3h ago)\n"
            in text)
    assert "  Last attempt:  failed at 2026-11-30T12:00:30Z (60m ago): PrometheusUnavailable: connection refused\n" in text


def test_no_recommendation_is_an_outcome_with_its_reason_never_a_number() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["status"]["capacity"] = {"outcome": "NotObserved", "message": "not observed: at least 35 per replica",
                                      "declaredPerReplica": 30, "effectivePerReplica": 30, "source": "Declared"}
    text = explain.describe(resource, NOW)
    assert "  Learned:       none (NotObserved): not observed: at least 35 per replica\n" in text
    assert "  perReplica:    30 (Declared)\n" in text


def test_the_node_room_held_ahead_of_need_is_shown_with_its_reason() -> None:
    resource = copy.deepcopy(RESOURCE)
    resource["status"]["reservation"] = {
        "replicas": 5, "needed": 6, "reachSeconds": 1260, "placeholders": "ed-triage-chart-room", "applied": True,
        "message": "room reserved for 5 more replicas: 6 needed within 21m (schedule: flu-clinic floor 6), 1 asked for now"}
    text = explain.describe(resource, NOW)
    assert ("Node room:\n  Held:          5 replicas' worth (placeholder Deployment ed-triage-chart-room); 6 needed "
            "within 21m\n  Why:           room reserved for 5 more replicas") in text
    resource["status"]["reservation"]["applied"] = False
    assert "5 replicas' worth (not applied)" in explain.describe(resource, NOW)
