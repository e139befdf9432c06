"""perReplica learned in the reconcile (``service.capacity.refresh`` from ``cycle.run``), with a fake
Prometheus whose history has a knee known by construction: published in ``status.capacity`` at most
daily, staggered by name, carried across restarts in status, kept when Prometheus is down while
learning, relearned at once when the latency indicator changes; used by the planner only with
``perReplicaFrom: Learned``, bounded, and never above the declared value during a surge. Also the
``healthscale_recommended_per_replica`` gauge, and the models refusing Learned without a latency objective.

The fake's replicas are M/M/1 servers: at load L per replica a request is under 1.5 s with probability
1 - exp(-(42 - L) x 1.5), which falls to 95% at L = 40 (the knee). Load per replica follows a daily
cycle from 5 to 50.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np
import prometheus_client
import pytest

from healthscale import ports
from healthscale.api import clinicalslo, manifests
from healthscale.domain import capacity
from healthscale.runtime import metrics as operator_metrics
from healthscale.service import capacity as learning
from healthscale.service import cycle
from reconcile_fakes import DEMAND, NAMESPACE, NOW, SLO_NAME, Harness, at

HISTOGRAM = 'http_request_duration_seconds_bucket{service="ehr-api"}'
READY = 'sum(kube_deployment_status_replicas_available{namespace="ehr", deployment="ehr-api"})'
KNEE = 42.0 - math.log(20) / 1.5
"""40.0: the load per replica at which 95% of requests are under 1.5 s."""
REPLICAS = 4.0
DECLARED = 30.0
DAY = 86400
LEARN_SPAN = learning.SINCE


def load_at(times: np.ndarray) -> np.ndarray:
    hour = (times % 86400) / 3600
    return 5 + 45 * np.clip(np.sin(np.pi * (hour - 6) / 14), 0, None) ** 2


@dataclasses.dataclass
class KneeMetrics:
    """Prometheus answering the capacity queries from the synthetic history, and the cycle's own reads.

    ``fault`` is raised by every call (Prometheus down); ``learn_reads`` counts the range reads over
    the learning span (14 days), ``slow`` advances ``clock`` on each range read."""

    clock: Any = None
    fault: ports.MetricsError | None = None
    learn_reads: int = 0
    slow: float = 0.0
    queries: list[str] = dataclasses.field(default_factory=list)

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        if self.clock is not None:
            self.clock.now += self.slow
        if self.fault is not None:
            raise self.fault
        if step == learning.STEP and end - start >= LEARN_SPAN - 2 * step:
            self.learn_reads += 1
        self.queries.append(query)
        times = np.arange(start, end + 1, step, dtype=np.float64)
        load = load_at(times)
        requests = load * REPLICAS
        good = requests * (1 - np.exp(-np.clip(42.0 - load, 0, None) * 1.5))
        answers = {DEMAND: requests, READY: np.full(times.shape, REPLICAS),
                   cycle.histogram_sli(HISTOGRAM, 95, "1.5").events: good,
                   cycle.histogram_sli(HISTOGRAM, 95, "1.5").total: requests}
        return [(times, answers[query])] if query in answers else []

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        if self.fault is not None:
            raise self.fault
        return []

    def label_values(self, label: str, selector: str, start: int, end: int) -> list[str]:
        if self.fault is not None:
            raise self.fault
        return ["0.5", "1.5", "5", "+Inf"]


def resource(*, learned: bool = False, percentile: float = 95, latency: bool = True) -> clinicalslo.ClinicalSLO:
    indicators: dict[str, Any] = {"demand": DEMAND}
    objectives: dict[str, Any] = {}
    if latency:
        indicators["latencyHistogram"] = HISTOGRAM
        objectives["latency"] = {"percentile": percentile, "thresholdSeconds": 1.5}
    return manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": SLO_NAME, "namespace": NAMESPACE, "generation": 1},
        "spec": {"journey": "Open patient chart from ED triage", "targetRef": {"name": "ehr-api"},
                 "objectives": objectives, "indicators": indicators,
                 "capacity": {"perReplica": DECLARED, "minReplicas": 2, "maxReplicas": 60,
                              "perReplicaFrom": "Learned" if learned else "Declared"},
                 "forecast": {"history": "2d", "step": "5m", "horizon": "1h", "model": "seasonal-naive"}},
    })


def harness(*, learned: bool = False, surge: bool = False) -> Harness:
    """A world whose first cycle is the ClinicalSLO's staggered turn to learn (unless a test says otherwise)."""
    made = Harness(resource=resource(learned=learned))
    if not surge:
        made.schedules = ()
    made.metrics = KneeMetrics(made.clock)  # type: ignore[assignment]
    made.workloads.deployment("ehr-api", int(REPLICAS))
    made.memory.capacity_first = NOW
    return made


def published(made: Harness) -> clinicalslo.CapacityStatus:
    found = made.result.status.capacity
    assert found is not None
    return found


def knee_metrics(made: Harness) -> KneeMetrics:
    assert isinstance(made.metrics, KneeMetrics)
    return made.metrics


def test_a_latency_objective_publishes_the_recommendation_with_its_band_and_evidence() -> None:
    made = harness()
    made.cycle_at(0)
    found = published(made)
    assert found.outcome == "Observed"
    assert found.recommended_per_replica == pytest.approx(KNEE, rel=0.05)
    assert found.low is not None and found.low <= found.recommended_per_replica
    assert found.high is not None and found.high >= found.recommended_per_replica
    assert re.search(r"over \d+ intervals \(14\.0 days\), load per replica", found.message)
    assert found.learned_at == found.attempted_at == "2026-05-28T20:30:00Z"
    assert found.error is None and found.fingerprint == learning.fingerprint(made.resource.spec)
    # Declared: published, not used; the explanation does not mention it.
    assert (found.source, found.effective_per_replica, found.declared_per_replica) == ("Declared", DECLARED, DECLARED)
    assert found.reason == "perReplica 30 declared"
    assert made.result.decision is not None and "learned" not in made.result.decision.explanation()


def test_learned_plans_with_the_recommendation_and_the_explanation_says_which_and_why() -> None:
    declared, learned = harness(), harness(learned=True)
    declared.cycle_at(0)
    learned.cycle_at(0)
    found = published(learned)
    assert found.source == "Learned"
    assert found.effective_per_replica == found.recommended_per_replica
    assert found.reason == f"perReplica {found.effective_per_replica:.4g} learned (declared 30, bounded to [15, 60])"
    decision = learned.result.decision
    assert decision is not None and found.reason in decision.explanation()
    assert any(f"{found.effective_per_replica:g}/replica" in proposal.detail for proposal in decision.proposals)
    assert learned.result.status.explanation == decision.explanation()
    assert declared.result.decision is not None
    # A larger perReplica asks for no more replicas than the declared one for the same demand.
    assert decision.recommended <= declared.result.decision.recommended


def test_during_a_surge_a_learned_value_above_the_declared_one_is_not_used() -> None:
    made = harness(learned=True, surge=True)
    made.cycle_at(0)
    found = published(made)
    assert found.outcome == "Observed" and found.recommended_per_replica is not None
    assert found.recommended_per_replica > DECLARED
    assert (found.source, found.effective_per_replica) == ("Declared", DECLARED)
    assert found.reason is not None and found.reason.startswith("perReplica 30 declared during surge vaccination-drive")
    decision = made.result.decision
    assert decision is not None and found.reason in decision.explanation()


def test_the_recommendation_is_learned_at_most_daily() -> None:
    made = harness()
    made.cycle_at(0)
    reads = knee_metrics(made).learn_reads
    assert reads == 4  # demand, ready replicas, good and all requests
    first = published(made)
    for minutes in (5, 60, 23 * 60):
        made.cycle_at(minutes)
        assert knee_metrics(made).learn_reads == reads
        assert published(made).learned_at == first.learned_at
    made.cycle_at(24 * 60)
    assert knee_metrics(made).learn_reads == 2 * reads
    assert published(made).learned_at == "2026-05-29T20:30:00Z"


def test_a_restarted_operator_reads_the_recommendation_from_status_and_does_not_relearn() -> None:
    made = harness()
    made.cycle_at(0)
    reads = knee_metrics(made).learn_reads
    made.memory = cycle.Memory()  # a new process; the status the API server holds stays
    made.cycle_at(5)
    assert knee_metrics(made).learn_reads == reads
    assert published(made).recommended_per_replica == pytest.approx(KNEE, rel=0.05)


def test_the_first_learn_waits_for_a_turn_fixed_by_the_name() -> None:
    made = harness()
    made.memory.capacity_first = None
    wait = learning.stagger(NAMESPACE, SLO_NAME)
    assert 0 < wait < learning.STAGGER_SECONDS
    made.cycle_at(0)
    pending = published(made)
    assert (pending.outcome, pending.recommended_per_replica, pending.effective_per_replica) == (
        "Pending", None, DECLARED)
    assert "staggered by name" in pending.message
    assert knee_metrics(made).learn_reads == 0
    made.cycle_at(wait / 60)
    assert published(made).outcome == "Observed"


def test_names_spread_first_learns_over_the_stagger_window() -> None:
    turns = [learning.stagger("ehr", f"journey-{index}") for index in range(1000)]
    per_cycle = np.bincount(np.asarray(turns) // 300, minlength=learning.STAGGER_SECONDS // 300)
    assert per_cycle.max() < 3 * 1000 / len(per_cycle)


def test_prometheus_down_while_learning_keeps_the_recommendation_and_says_why() -> None:
    made = harness(learned=True)
    made.cycle_at(0)
    before = published(made)
    knee_metrics(made).fault = ports.MetricsError("PrometheusUnavailable", "connection refused")
    made.cycle_at(24 * 60)
    after = published(made)
    assert made.result.decision is not None
    assert after.outcome == "Observed"
    assert after.recommended_per_replica == before.recommended_per_replica
    assert after.learned_at == before.learned_at and after.attempted_at == "2026-05-29T20:30:00Z"
    assert after.error == ("PrometheusUnavailable: connection refused; keeping the recommendation learned at "
                           "2026-05-28T20:30:00Z")
    assert after.effective_per_replica == before.effective_per_replica
    # Not retried within the hour; retried after it, and a success clears the error.
    knee_metrics(made).fault = None
    made.cycle_at(24 * 60 + 30)
    assert knee_metrics(made).learn_reads == 4 and published(made).error is not None
    made.cycle_at(25 * 60)
    assert knee_metrics(made).learn_reads == 8 and published(made).error is None


def test_a_failed_first_learn_is_a_reason_never_zero() -> None:
    made = harness(learned=True)
    knee_metrics(made).fault = ports.MetricsError("PrometheusUnavailable", "connection refused")
    made.cycle_at(0)
    found = published(made)
    assert (found.outcome, found.recommended_per_replica, found.effective_per_replica, found.source) == (
        "PrometheusUnavailable", None, DECLARED, "Declared")
    assert found.message == "connection refused"
    assert found.reason == "perReplica 30 declared (nothing learned to use: PrometheusUnavailable)"


def test_no_ready_replicas_series_is_a_reason_naming_kube_state_metrics() -> None:
    made = harness()
    original = knee_metrics(made).range

    def without_ready(query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        return [] if query == READY else original(query, start, end, step)

    knee_metrics(made).range = without_ready  # type: ignore[method-assign]
    made.cycle_at(0)
    found = published(made)
    assert found.outcome == "EmptyResult" and "kube-state-metrics" in found.message


def test_a_changed_latency_objective_is_relearned_at_once_and_the_old_recommendation_dropped() -> None:
    made = harness()
    made.cycle_at(0)
    first = published(made)
    made.cycle_at(5, resource=resource(percentile=90))
    second = published(made)
    assert second.fingerprint != first.fingerprint
    assert second.learned_at == "2026-05-28T20:35:00Z"
    assert second.recommended_per_replica is not None and first.recommended_per_replica is not None
    assert second.recommended_per_replica > first.recommended_per_replica  # 90% holds to a higher load


def test_a_cycle_that_spent_its_budget_leaves_learning_for_the_next_one() -> None:
    made = harness()
    knee_metrics(made).slow = cycle.BUDGET_SECONDS + 1
    made.cycle_at(0)
    assert published(made).outcome == "Pending" and knee_metrics(made).learn_reads == 0
    knee_metrics(made).slow = 0.0
    made.cycle_at(5)
    assert published(made).outcome == "Observed"


class BusyFits:
    """``cycle.FITS`` with every slot held by other cycles: a blocking ``with`` still gets through
    (the forecast's own reads wait their turn), a non-blocking acquire fails."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return blocking

    def release(self) -> None:
        pass

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *_: object) -> None:
        pass


def test_learning_never_waits_for_a_fits_slot_and_learns_once_one_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    made = harness()
    with monkeypatch.context() as patched:
        patched.setattr(cycle, "FITS", BusyFits())
        made.cycle_at(0)
    assert published(made).outcome == "Pending" and knee_metrics(made).learn_reads == 0
    assert made.result.decision is not None
    made.cycle_at(5)
    assert published(made).outcome == "Observed"


def test_without_a_latency_objective_nothing_is_learned_or_published() -> None:
    made = harness()
    made.cycle_at(0, resource=resource(latency=False))
    assert made.result.status.capacity is None and knee_metrics(made).learn_reads == 0


def _gauge(namespace: str, name: str) -> float | None:
    value = prometheus_client.REGISTRY.get_sample_value(
        "healthscale_recommended_per_replica", {"namespace": namespace, "clinicalslo": name})
    return None if value is None else float(value)


def test_the_recommendation_is_a_gauge_removed_when_there_is_none_and_when_the_slo_is_gone() -> None:
    made = harness()
    made.cycle_at(0)
    operator_metrics.record(NAMESPACE, SLO_NAME, made.result)
    assert _gauge(NAMESPACE, SLO_NAME) == published(made).recommended_per_replica
    none = dataclasses.replace(made.result, status=made.result.status.model_copy(update={
        "capacity": published(made).model_copy(update={"outcome": "NeverMet", "recommended_per_replica": None})}))
    operator_metrics.record(NAMESPACE, SLO_NAME, none)
    assert _gauge(NAMESPACE, SLO_NAME) is None
    operator_metrics.record(NAMESPACE, SLO_NAME, made.result)
    operator_metrics.forget(NAMESPACE, SLO_NAME)
    assert _gauge(NAMESPACE, SLO_NAME) is None


SPEC_BASE: dict[str, Any] = {"journey": "j", "targetRef": {"name": "ehr-api"}, "indicators": {"demand": "d"},
                             "capacity": {"perReplica": 30, "maxReplicas": 60}}


@pytest.mark.parametrize(
    ("objectives", "indicators", "refused"),
    [
        pytest.param({}, {"demand": "d"}, True, id="learned without a latency objective is refused"),
        pytest.param({"latency": {"percentile": 95, "thresholdSeconds": 1.5}}, {"demand": "d"}, True,
                     id="learned with a latency objective but no latency indicator is refused"),
        pytest.param({}, {"demand": "d", "errors": "e", "total": "t"}, True,
                     id="learned with only an availability objective is refused"),
        pytest.param({"latency": {"percentile": 95, "thresholdSeconds": 1.5}},
                     {"demand": "d", "latencyHistogram": HISTOGRAM}, False,
                     id="learned with a latency objective and its histogram is accepted"),
        pytest.param({"latency": {"percentile": 95, "thresholdSeconds": 1.5}},
                     {"demand": "d", "latencyGood": "g", "errors": "e", "total": "t"}, False,
                     id="learned with a latency objective and latencyGood with total is accepted"),
    ],
)
def test_the_models_refuse_learned_without_a_measured_latency_objective(
        objectives: dict[str, Any], indicators: dict[str, Any], refused: bool) -> None:
    document = {"apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": {"name": "chart"},
                "spec": {**SPEC_BASE, "objectives": objectives, "indicators": indicators,
                         "capacity": {**SPEC_BASE["capacity"], "perReplicaFrom": "Learned"}}}
    if not refused:
        parsed = manifests.parse(clinicalslo.ClinicalSLO, document)
        assert parsed.spec.capacity.per_replica_from == clinicalslo.PerReplicaFrom.LEARNED
        return
    with pytest.raises(manifests.ManifestError) as caught:
        manifests.parse(clinicalslo.ClinicalSLO, document)
    (problem,) = caught.value.problems
    assert problem.startswith("spec: ")
    assert "perReplicaFrom Learned needs objectives.latency" in problem or clinicalslo.LATENCY_MEASURED in problem


def test_perreplica_is_declared_unless_said_otherwise() -> None:
    parsed = manifests.parse(clinicalslo.ClinicalSLO, {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO", "metadata": {"name": "chart"},
        "spec": SPEC_BASE})
    assert parsed.spec.capacity.per_replica_from == clinicalslo.PerReplicaFrom.DECLARED


def test_an_unreadable_capacity_status_is_dropped_and_the_rest_kept() -> None:
    status, dropped = clinicalslo.read_status({"desiredReplicas": 3, "capacity": {"recommendedPerReplica": "x"}})
    assert (status.desired_replicas, status.capacity, dropped) == (3, None, ("capacity",))
    written = clinicalslo.CapacityStatus(outcome=str(capacity.Outcome.OBSERVED), recommended_per_replica=41.5,
                                         learned_at="2026-05-28T20:30:00Z")
    assert clinicalslo.read_status({"capacity": written.wire()})[0].capacity == written
