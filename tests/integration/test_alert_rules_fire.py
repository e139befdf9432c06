"""`healthscale rules` loaded into a real Prometheus: a fast burn fires the page alert, a healthy
objective fires nothing (issue 14).

The test runs a Prometheus of its own (the binary the dev cluster uses, on a free loopback port,
with a temporary config and data dir) that scrapes two loopback histograms every second and
evaluates the generated rule file every 2 seconds: the shared dev cluster's Prometheus keeps its
15s intervals and no rule files, and is not touched. The alerts have no `for`, and their windows'
ratios (1m-resolution subqueries of rate()[5m]) exist once a whole minute has two scrapes behind it,
so the page fires within a couple of minutes of the first scrape although its windows are 5m and 1h.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterlib import REPO_ROOT, HistogramExporter, RecordingPrometheus, stop_process, wait_until
from healthscale.api import clinicalslo, manifests
from healthscale.domain import slo
from healthscale.service import cycle

pytestmark = pytest.mark.integration

RUN = f"{os.getpid()}-{int(time.time())}"
ALERT = "ClinicalSLOErrorBudgetBurn"
SLOW = (("0.5", 0), ("1.5", 8), ("5", 10), ("+Inf", 10))
"""le -> requests a second at or under it: 20% of requests over 1.5 s, a 20x burn against 99%."""
HEALTHY = (("0.5", 0), ("1.5", 999), ("5", 1000), ("+Inf", 1000))
"""0.1% of requests over 1.5 s: a 0.1x burn against 99%."""


def _slo(name: str, journey: str, criticality: str, run: str, errors: str) -> dict[str, Any]:
    """A ClinicalSLO with a latency objective (99% under 1.5 s of the exporter labelled ``run``) and
    an availability objective (``errors`` of 10 requests a second, against 99.9%)."""
    return {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": "wards"},
        "spec": {
            "journey": journey, "criticality": criticality,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "indicators": {"demand": "vector(1)", "errors": errors, "total": "vector(10)",
                           "latencyHistogram": f'healthscale_it_request_seconds_bucket{{run="{run}"}}'},
            "objectives": {"availability": 99.9, "latency": {"percentile": 99, "thresholdSeconds": 1.5},
                           # 7d: averaged at 5m (slo.resolution), recorded minutes after the first scrape.
                           "window": "7d"},
            "capacity": {"perReplica": 1, "minReplicas": 1, "maxReplicas": 10, "startupSeconds": 60},
        },
    }


@dataclass(frozen=True)
class RulesPrometheus:
    url: str
    slos: tuple[dict[str, Any], ...]

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.loads(response.read())["data"]

    def firing(self) -> list[dict[str, str]]:
        """The labels of every firing ClinicalSLOErrorBudgetBurn alert."""
        return [alert["labels"] for alert in self.get("/api/v1/alerts")["alerts"]
                if alert["labels"]["alertname"] == ALERT and alert["state"] == "firing"]

    def ratios(self, window: str) -> dict[tuple[str, str], float]:
        """(clinicalslo, objective) -> the recorded error ratio over ``window``."""
        found = self.get("/api/v1/query", query=f"healthscale:sli_error:ratio_rate{window}")["result"]
        return {(series["metric"]["clinicalslo"], series["metric"]["objective"]): float(series["value"][1])
                for series in found}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def rules_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RulesPrometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: install Debian's package (apt-get install prometheus), as "
                    "tools/devcluster/up.sh explains", pytrace=False)
    home = tmp_path_factory.mktemp("rules-prometheus")
    slos = home / "clinicalslos.yaml"
    manifests_ = (_slo("triage", "ED triage screens", "critical", f"slow-{RUN}", errors="vector(0)"),
                  _slo("portal", "patient portal logins", "standard", f"healthy-{RUN}", errors="vector(0.001)"))
    slos.write_text(yaml.safe_dump_all(manifests_))
    subprocess.run([sys.executable, "-m", "healthscale", "rules", "--format", "rules", "--slo", str(slos),
                    "--output", str(home / "rules.yaml")], check=True, cwd=REPO_ROOT, timeout=60)
    exporters = [HistogramExporter(f"slow-{RUN}", SLOW, sum_per_second=14),
                 HistogramExporter(f"healthy-{RUN}", HEALTHY, sum_per_second=1100)]
    try:
        yield from _prometheus(binary, home, exporters, manifests_)
    finally:
        for exporter in exporters:
            exporter.close()


def _prometheus(binary: str, home: Path, exporters: list[HistogramExporter],
                slos: tuple[dict[str, Any], ...]) -> Iterator[RulesPrometheus]:
    """A Prometheus scraping ``exporters`` every second and evaluating home/rules.yaml every 2 s, stopped
    when the generator is closed."""
    (home / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "2s"},
        "rule_files": [str(home / "rules.yaml")],
        "scrape_configs": [{"job_name": "histograms", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter.port}" for exporter in exporters]}]}],
    }))
    url = f"http://127.0.0.1:{_free_port()}"
    log = home / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}", pytrace=False)
        return _ready(url)

    try:
        wait_until("the rules' Prometheus to be ready", ready, timeout=60)
        yield RulesPrometheus(url, slos)
    finally:
        stop_process(process, log)


def _evaluated(group: dict[str, Any]) -> bool:
    return not str(group["lastEvaluation"]).startswith("0001-")  # Go's zero time: not yet


def test_the_generated_rules_load_and_evaluate_without_errors(rules_prometheus: RulesPrometheus) -> None:
    def burn_groups() -> list[dict[str, Any]] | None:
        found = rules_prometheus.get("/api/v1/rules")["groups"]
        burn = [group for group in found if not group["name"].endswith("-slow")]
        return found if all(_evaluated(group) for group in burn) else None

    groups = wait_until("every burn-window rule group evaluated once", burn_groups, timeout=60)
    assert {group["name"] for group in groups} == {
        f"healthscale-wards-{name}-{objective}{suffix}"
        for name in ("triage", "portal") for objective in ("availability", "latency") for suffix in ("", "-slow")}
    # The slow windows' groups run every 4m from an offset of their own: they may not have run yet.
    health = [(group["name"], rule["name"], rule["health"], rule.get("lastError")) for group in groups
              for rule in group["rules"] if rule["health"] != "ok"]
    assert [found for found in health if not found[0].endswith("-slow") or found[2] != "unknown"] == []


def test_a_fast_latency_burn_fires_the_page_alert_and_a_healthy_objective_fires_nothing(
        rules_prometheus: RulesPrometheus) -> None:
    def page() -> list[dict[str, str]]:
        return [labels for labels in rules_prometheus.firing() if labels["severity"] == "page"
                and (labels["clinicalslo"], labels["objective"]) == ("triage", "latency")]

    started = time.monotonic()
    [fired] = wait_until("the page alert of triage's latency objective", page, timeout=240, pause=2)
    print(f"\npage alert firing {time.monotonic() - started:.0f}s after Prometheus was ready")
    assert fired == {"alertname": ALERT, "severity": "page", "journey": "ED triage screens", "namespace": "wards",
                     "clinicalslo": "triage", "objective": "latency", "criticality": "critical"}

    # Each objective is a rule group of its own, evaluated at its own offset: once every one has recorded
    # its ratios, its alerts (evaluated after the records, in the same group) have seen them too.
    every = {(name, objective) for name in ("triage", "portal") for objective in ("availability", "latency")}

    def recorded() -> list[dict[tuple[str, str], float]] | None:
        found = [rules_prometheus.ratios("5m"), rules_prometheus.ratios("1h")]
        return found if all(set(ratios) == every for ratios in found) else None

    for ratios in wait_until("every objective's 5m and 1h ratios", recorded, timeout=120, pause=2):
        assert ratios[("triage", "latency")] == pytest.approx(0.2, rel=1e-3)
        assert ratios[("portal", "latency")] == pytest.approx(0.001, rel=1e-2)
        assert ratios[("portal", "availability")] == pytest.approx(0.0001, rel=1e-3)
        assert ratios[("triage", "availability")] == 0
    # 20x burns page and ticket for triage's latency; nothing else burns at even 1x. The ticket pairs'
    # long windows (6h, 1d, 3d) are in the slow groups, which run every 4m from offsets of their own, and
    # average 5m steps aligned to the clock: a slow group's first run can precede the first step with data,
    # so wait for the records themselves (up to one 5m step plus one 4m interval), not for one evaluation.
    def long_windows_recorded() -> bool:
        return all(set(rules_prometheus.ratios(window)) == every for window in ("6h", "1d", "3d"))

    wait_until("every objective's 6h, 1d and 3d ratios", long_windows_recorded, timeout=720, pause=5)

    def firing() -> set[tuple[str, str, str]]:
        return {(labels["clinicalslo"], labels["objective"], labels["severity"])
                for labels in rules_prometheus.firing()}

    expected = {("triage", "latency", "page"), ("triage", "latency", "ticket")}
    wait_until("the page and the ticket of triage's latency", lambda: firing() == expected, timeout=120, pause=2)
    time.sleep(6)
    assert firing() == expected, "and nothing else"


def test_the_operator_reads_the_recorded_ratios_with_one_query_and_they_match_its_subqueries(
        rules_prometheus: RulesPrometheus) -> None:
    """With the rules loaded, the reconcile reads every burn window of a ClinicalSLO with one selector
    query, and gets the report its own subqueries give from the raw histogram."""
    triage = manifests.parse(clinicalslo.ClinicalSLO, rules_prometheus.slos[0])
    client = RecordingPrometheus(rules_prometheus.url)
    records_of = (triage.metadata.namespace, triage.metadata.name)

    def from_records() -> dict[str, cycle.Measured] | None:
        client.queries.clear()
        found = cycle.measure(client, triage.spec, cycle.Memory(), int(time.time()), 60, records_of)
        # The slow group (6h and longer) runs every 4m from its own offset; until it has, the budget is unknown.
        done = all(item.source == cycle.RECORDING_RULES and item.report is not None
                   and item.report.budget_remaining is not None for item in found.values())
        return found if done else None

    recorded = wait_until("triage's ratios recorded for every window", from_records, timeout=600, pause=5)
    assert client.queries == [cycle.records_query(*records_of)], "one selector query, no subqueries"
    direct = cycle.measure(RecordingPrometheus(rules_prometheus.url), triage.spec, cycle.Memory(),
                           int(time.time()), 60)
    for objective in (slo.AVAILABILITY, slo.LATENCY):
        ours, theirs = recorded[objective].report, direct[objective].report
        assert ours is not None and theirs is not None and direct[objective].source == cycle.SUBQUERIES
        for window in ("5m", "1h", "6h"):
            assert ours.rates[window] == pytest.approx(theirs.rates[window], rel=0.02, abs=1e-6), (objective, window)
        assert ours.budget_remaining == pytest.approx(theirs.budget_remaining, rel=0.02, abs=1e-6), objective
    latency = recorded[slo.LATENCY].report
    assert latency is not None and latency.fast_burn and latency.rates["1h"] == pytest.approx(20.0, rel=0.01)
