"""Prometheus load at 1,000 ClinicalSLOs: the operator's subqueries against recording rules (issue 14).

Builds N ClinicalSLOs (availability from errors/total, latency from a latencyHistogram, each on
series of its own: 4 per ClinicalSLO), backfills DAYS of their history at 1-minute resolution with
``promtool tsdb create-blocks-from openmetrics``, starts a private Prometheus (Debian's binary, free
loopback port) on that data with a loopback exporter continuing the same counters (scraped every
minute), and drives ``cycle.measure`` exactly as the reconcile does (one ``cycle.Memory`` per
ClinicalSLO kept across cycles, ``now`` advancing by the 1-minute step, so ``slo.reuse_seconds``
re-reads long windows as in production) in two modes:

(a) subqueries (``records_of=None``): CYCLES cycles evaluated at the last CYCLES minutes of the
    backfilled range (instant queries take ``time=``), back to back;
(b) the rules of ``healthscale rules --format rules`` loaded into the same Prometheus (SIGHUP), their
    evaluation measured over RULE_MINUTES real minutes with no queries, then CYCLES cycles of
    ``records_of`` reads (one selector query per ClinicalSLO), back to back at the wall-clock time
    the rules recorded (the recorded series exist only there), ``now`` advancing by the step.

Prometheus' own figures: CPU from ``process_cpu_seconds_total``, samples from ``?stats=all``
(``totalQueryableSamples``) per query and ``prometheus_engine_query_samples_total`` for rule
evaluations, rule time from ``prometheus_rule_evaluation_duration_seconds`` and the groups'
``evaluationTime``. The scrape's own CPU (measured idle before mode (a)) is subtracted from both.

    .venv/bin/python bench/rules_load.py                # 1,000 ClinicalSLOs, 3 days, 15 cycles
    .venv/bin/python bench/rules_load.py --slos 50 --days 1 --cycles 5 --rule-minutes 2   # a quick look
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import http.server
import math
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import requests
import yaml

from healthscale import ports
from healthscale.api import clinicalslo, durations, manifests
from healthscale.domain import slo
from healthscale.service import cycle, rules

NAMESPACE = "bench"
STEP = 60
"""The operator's cycle (forecast.step 1m) and the backfill's resolution."""
CHUNK = 2 * 3600
"""promtool writes 2h blocks; one input file per aligned 2h chunk is parsed once (a single file is
parsed once per block it spans)."""
THRESHOLD = 0.5
JOB, INSTANCE = "hsb", "bench"
"""Backfilled and scraped series carry the same job and instance (``honor_labels``): one series each."""
THREADS = 4
"""ClinicalSLOs measured at once, like the operator's worker threads: keeps Prometheus busy."""


def name_of(index: int) -> str:
    return f"svc-{index:04d}"


def _selector(metric: str, index: int, extra: str = "") -> str:
    return f'{metric}{{slo="{name_of(index)}"{extra}}}'


def manifest(index: int) -> dict[str, Any]:
    name = name_of(index)
    return {
        "apiVersion": "healthscale.io/v1alpha1", "kind": "ClinicalSLO",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "journey": f"bench journey {index}", "criticality": ("critical", "high", "standard")[index % 3],
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "indicators": {"demand": f"sum(rate({_selector('hsb_requests_total', index)}[5m]))",
                           "errors": f"sum(rate({_selector('hsb_errors_total', index)}[5m]))",
                           "total": f"sum(rate({_selector('hsb_requests_total', index)}[5m]))",
                           "latencyHistogram": _selector("hsb_request_seconds_bucket", index)},
            "objectives": {"availability": 99.9, "latency": {"percentile": 99, "thresholdSeconds": THRESHOLD},
                           "window": "28d"},
            "capacity": {"perReplica": 10, "minReplicas": 1, "maxReplicas": 20, "startupSeconds": 60},
        },
    }


@dataclasses.dataclass(frozen=True)
class Series:
    text: str
    """``name{labels}`` as exposed and backfilled."""
    rate: float
    """Mean events a second; the counter's rate moves by +-50% over a day."""

    def values(self, times: np.ndarray) -> np.ndarray:
        # rate * (1 - 0.5 cos(2 pi t / day)) integrated: monotonic, with a daily shape.
        day = 86400.0
        return self.rate * (times - 0.5 * day / (2 * math.pi) * np.sin(2 * math.pi * times / day))


def series(count: int) -> list[Series]:
    found = []
    for index in range(count):
        total = 2.0 + index % 40
        good = 0.995 - 0.001 * (index % 5)
        labels = f'job="{JOB}",instance="{INSTANCE}",slo="{name_of(index)}"'
        found += [Series(f"hsb_requests_total{{{labels}}}", total),
                  Series(f"hsb_errors_total{{{labels}}}", total * 0.0005 * (1 + index % 4)),
                  Series(f'hsb_request_seconds_bucket{{{labels},le="{rules.prometheus_float(THRESHOLD)}"}}',
                         total * good),
                  Series(f'hsb_request_seconds_bucket{{{labels},le="+Inf"}}', total)]
    return found


def backfill(all_series: list[Series], start: int, end: int, data: pathlib.Path, scratch: pathlib.Path) -> None:
    """Samples every minute in [start, end] of every series, as TSDB blocks in ``data``."""
    running: subprocess.Popen[bytes] | None = None
    chunk_start = start - start % CHUNK
    index = 0
    while chunk_start <= end:
        times = np.arange(max(start, chunk_start), min(end, chunk_start + CHUNK - STEP) + 1, STEP, dtype=np.float64)
        path = scratch / f"chunk-{index}.om"
        with open(path, "w") as out:
            stamps = [str(int(t)) for t in times]
            for one in all_series:
                prefix = one.text + " "
                out.write("".join(f"{prefix}{value:.3f} {stamp}\n" for value, stamp in zip(one.values(times), stamps)))
            out.write("# EOF\n")
        if running is not None:  # promtool on the previous chunk ran while this one was written
            _finish(running)
        running = subprocess.Popen(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(path),
                                    str(data)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        chunk_start += CHUNK
        index += 1
    if running is not None:
        _finish(running)
    for path in scratch.glob("chunk-*.om"):
        path.unlink()


def _finish(process: subprocess.Popen[bytes]) -> None:
    output, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"promtool failed ({process.returncode}): {output.decode()[-2000:]}")


class Exporter:
    """The same counters on loopback, at their values when scraped (continuing the backfill)."""

    def __init__(self, all_series: list[Series]) -> None:
        texts = [one.text for one in all_series]
        rates = [one for one in all_series]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                now = np.array([time.time()])
                body = "".join(f"{text} {one.values(now)[0]:.3f}\n" for text, one in zip(texts, rates)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Counting:
    """``ports.Metrics`` over Prometheus' HTTP API at a chosen evaluation time, counting what it asks:
    queries, ``totalQueryableSamples`` (``?stats=all``) and the wall time of each request. The
    package's client has no ``time=`` (the operator always asks about now); this bench needs it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.at: int | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self.queries = self.label_reads = self.samples = 0
        self.seconds = 0.0

    def reset(self) -> None:
        with self._lock:
            self.queries = self.label_reads = self.samples = 0
            self.seconds = 0.0

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        started = time.perf_counter()
        try:
            response = session.get(f"{self.url}{path}", params=params, timeout=120)
        except requests.RequestException as error:
            raise ports.MetricsError("PrometheusUnavailable", str(error)) from None
        elapsed = time.perf_counter() - started
        document = response.json()
        if response.status_code != 200 or document.get("status") != "success":
            raise ports.MetricsError("InvalidQuery", f"HTTP {response.status_code}: {document.get('error')}")
        with self._lock:
            self.seconds += elapsed
        return document["data"]

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        params: dict[str, Any] = {"query": query, "stats": "all"}
        if self.at is not None:
            params["time"] = self.at
        data = self._get("/api/v1/query", params)
        samples = int(data.get("stats", {}).get("samples", {}).get("totalQueryableSamples", 0))
        with self._lock:
            self.queries += 1
            self.samples += samples
        if data["resultType"] != "vector":
            raise ports.MetricsError("InvalidQuery", f"{data['resultType']}, not a vector")
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def label_values(self, label: str, selector: str, start: int, end: int) -> list[str]:
        data = self._get(f"/api/v1/label/{label}/values", {"match[]": selector, "start": start, "end": end})
        with self._lock:
            self.label_reads += 1
        return list(data)

    def range(self, query: str, start: int, end: int, step: int) -> list[ports.Samples]:
        raise AssertionError("measure reads no ranges")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)")


def scrape_self(url: str) -> dict[str, float]:
    """Prometheus' own /metrics, each metric name summed over its series."""
    found: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            value = float(match.group(3))
            if math.isfinite(value):
                found[match.group(1)] = found.get(match.group(1), 0.0) + value
    return found


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    return after[name] - before[name] if name in after and name in before else None


@dataclasses.dataclass
class CycleFigures:
    queries: int
    label_reads: int
    samples: int
    query_seconds: float
    wall_seconds: float
    cpu_seconds: float
    sources: dict[str, int]
    unmeasured: int


def run_cycles(client: Counting, url: str, resources: list[clinicalslo.ClinicalSLO], memories: list[cycle.Memory],
               nows: list[int], at: Callable[[int], int | None], records: bool,
               idle_cpu_per_second: float) -> list[CycleFigures]:
    """One operator cycle per ``now``: ``measure`` for every ClinicalSLO, THREADS at a time."""
    figures = []
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        for now in nows:
            client.reset()
            client.at = at(now)
            before, started = scrape_self(url), time.perf_counter()

            def one(pair: tuple[clinicalslo.ClinicalSLO, cycle.Memory]) -> dict[str, cycle.Measured]:
                resource, memory = pair
                of = (resource.metadata.namespace, resource.metadata.name) if records else None
                return cycle.measure(client, resource.spec, memory, now, STEP, of)

            results = list(pool.map(one, zip(resources, memories)))
            wall = time.perf_counter() - started
            cpu = (delta(before, scrape_self(url), "process_cpu_seconds_total") or 0.0) - idle_cpu_per_second * wall
            sources: dict[str, int] = {}
            unmeasured = 0
            for result in results:
                for measured in result.values():
                    sources[measured.source] = sources.get(measured.source, 0) + 1
                    unmeasured += measured.report is None
            figures.append(CycleFigures(client.queries, client.label_reads, client.samples, client.seconds, wall,
                                        max(cpu, 0.0), sources, unmeasured))
            print(f"  cycle at {now}: {client.queries} queries, {client.samples:,} samples, "
                  f"{wall:.1f}s, cpu {cpu:.2f}s, sources {sources}, unmeasured {unmeasured}", flush=True)
    return figures


@dataclasses.dataclass
class RuleFigures:
    minutes: float
    cpu_per_minute: float
    samples_per_minute: float | None
    rule_seconds_per_minute: float | None
    group_seconds_per_minute: float
    groups: int
    rules: int
    missed: float | None


class PrometheusRun:
    def __init__(self, home: pathlib.Path, exporter_port: int) -> None:
        self.home, self.exporter_port = home, exporter_port
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.config(rule_files=[])
        self.log = open(home / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn",
             "--storage.tsdb.retention.time=60d", "--query.max-concurrency=20"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def config(self, rule_files: list[str]) -> None:
        (self.home / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": f"{STEP}s", "evaluation_interval": f"{STEP}s"},
            "rule_files": rule_files,
            "scrape_configs": [{"job_name": JOB, "honor_labels": True, "static_configs": [
                {"targets": [f"127.0.0.1:{self.exporter_port}"]}]}],
        }))

    def reload(self, rule_files: list[str]) -> None:
        self.config(rule_files)
        self.process.send_signal(signal.SIGHUP)

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(f"{self.url}{path}", params=params, timeout=60)
        response.raise_for_status()
        return response.json()["data"]

    def wait(self, what: str, ready: Callable[[], bool], timeout: float, pause: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"prometheus exited: {(self.home / 'prometheus.log').read_text()[-3000:]}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(pause)
        raise SystemExit(f"timed out waiting for {what}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def settle_compaction(prometheus: PrometheusRun) -> None:
    """Wait until Prometheus has compacted the backfilled 2h blocks (as a long-running one would have)."""
    last: list[float] = []

    def settled() -> bool:
        figures = scrape_self(prometheus.url)
        key = (figures.get("prometheus_tsdb_blocks_loaded", 0.0), figures.get("prometheus_tsdb_compactions_total", 0.0))
        last.append(key[0] * 1e6 + key[1])
        # Prometheus plans compactions once a minute: unchanged for 75 s has seen at least one plan.
        return len(last) >= 16 and len(set(last[-16:])) == 1

    prometheus.wait("the backfilled blocks to be compacted", settled, timeout=900, pause=5)


def rule_window(prometheus: PrometheusRun, minutes: float, idle_cpu_per_second: float) -> RuleFigures:
    before, started = scrape_self(prometheus.url), time.perf_counter()
    time.sleep(minutes * 60)
    after, elapsed = scrape_self(prometheus.url), time.perf_counter() - started
    per_minute = 60.0 / elapsed
    cpu = (delta(before, after, "process_cpu_seconds_total") or 0.0) - idle_cpu_per_second * elapsed
    samples = delta(before, after, "prometheus_engine_query_samples_total")
    evaluation = delta(before, after, "prometheus_rule_evaluation_duration_seconds_sum")
    groups = prometheus.get("/api/v1/rules", type="record")["groups"]
    group_seconds = sum(float(group["evaluationTime"]) * 60.0 / float(group["interval"]) for group in groups)
    return RuleFigures(elapsed / 60, cpu * per_minute, None if samples is None else samples * per_minute,
                       None if evaluation is None else evaluation * per_minute, group_seconds, len(groups),
                       sum(len(group["rules"]) for group in groups),
                       delta(before, after, "prometheus_rule_group_iterations_missed_total"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slos", type=int, default=1000)
    parser.add_argument("--days", type=float, default=3.0, help="history backfilled, at 1-minute resolution")
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--rule-minutes", type=float, default=5.0,
                        help="real minutes over which rule evaluation is measured (5: every 5m group once)")
    parser.add_argument("--markdown", type=pathlib.Path, help="also write the section here")
    args = parser.parse_args()
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        print("error: prometheus and promtool not found (Debian: apt-get install prometheus)", file=sys.stderr)
        return 2
    resources = [manifests.parse(clinicalslo.ClinicalSLO, manifest(index)) for index in range(args.slos)]
    all_series = series(args.slos)
    with tempfile.TemporaryDirectory(prefix="rules-load-") as scratch_name:
        home = pathlib.Path(scratch_name)
        (home / "data").mkdir()
        (home / "rules.yaml").write_text(rules.render(resources, rules.RULE_FILE))
        end = int(time.time()) // STEP * STEP
        start = end - int(args.days * 86400)
        started = time.perf_counter()
        print(f"backfilling {len(all_series):,} series x {(end - start) // STEP + 1:,} minutes ...", flush=True)
        backfill(all_series, start, end, home / "data", home)
        backfill_seconds = time.perf_counter() - started
        print(f"backfilled in {backfill_seconds:.0f}s", flush=True)
        exporter = Exporter(all_series)
        prometheus = PrometheusRun(home, exporter.port)
        try:
            figures = _measure(prometheus, resources, args, end)
        finally:
            prometheus.stop()
            exporter.close()
    lines = section(figures, args, backfill_seconds)
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


def _measure(prometheus: PrometheusRun, resources: list[clinicalslo.ClinicalSLO], args: argparse.Namespace,
             end: int) -> dict[str, Any]:
    prometheus.wait("Prometheus to be ready",
                    lambda: requests.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200, timeout=300)
    settle_compaction(prometheus)
    blocks = scrape_self(prometheus.url).get("prometheus_tsdb_blocks_loaded", 0.0)
    before, started = scrape_self(prometheus.url), time.perf_counter()
    time.sleep(60)
    idle = (delta(before, scrape_self(prometheus.url), "process_cpu_seconds_total") or 0.0) / (time.perf_counter() - started)
    print(f"{blocks:.0f} blocks; idle (scraping) CPU {idle * 60:.2f}s a minute", flush=True)
    client = Counting(prometheus.url)

    print("(a) subqueries", flush=True)
    memories = [cycle.Memory() for _ in resources]
    nows = [end - STEP * (args.cycles - 1 - k) for k in range(args.cycles)]
    subqueries = run_cycles(client, prometheus.url, resources, memories, nows, lambda now: now, False, idle)

    print("(b) recording rules: loading them", flush=True)
    prometheus.reload([str(prometheus.home / "rules.yaml")])
    expected = 0
    for resource in resources:
        expected += len(rules.slis(resource.spec)) * len(slo.WINDOW_SECONDS)
    short = [slo.record_name(seconds) for seconds in slo.WINDOW_SECONDS]

    def recorded() -> bool:
        found = prometheus.get("/api/v1/query", query=f'count({{__name__=~"{"|".join(short)}"}})')["result"]
        return bool(found) and int(float(found[0]["value"][1])) >= expected

    prometheus.wait("every burn window recorded", recorded, timeout=600, pause=5)
    print(f"  rules evaluating; measuring them for {args.rule_minutes:g} minutes", flush=True)
    rule_figures = rule_window(prometheus, args.rule_minutes, idle)
    print(f"  {rule_figures}", flush=True)
    # The records stay queryable at the time they were recorded once the rules are unloaded: the
    # reads are then measured alone, not against a background of rule evaluations.
    wall_now = int(time.time())
    prometheus.reload([])
    prometheus.wait("the rules to be unloaded", lambda: not prometheus.get("/api/v1/rules")["groups"], timeout=60)
    time.sleep(STEP / 2)  # an evaluation that had started when the rules were unloaded has finished
    memories = [cycle.Memory() for _ in resources]
    nows = [wall_now + STEP * k for k in range(args.cycles)]
    records = run_cycles(client, prometheus.url, resources, memories, nows, lambda now: wall_now, True, idle)
    rule_figures.samples_per_minute = rule_samples(client, resources, wall_now)
    return {"subqueries": subqueries, "records": records, "rules": rule_figures, "idle_cpu_per_minute": idle * 60,
            "blocks": blocks}


RULE_SAMPLE = 20
"""ClinicalSLOs whose recording rules are re-run as instant queries to count the samples an evaluation
touches (Prometheus 2.42 exports no samples counter); every ClinicalSLO's series are alike."""


def rule_samples(client: Counting, resources: list[clinicalslo.ClinicalSLO], at: int) -> float:
    """Samples the recording rules of every ClinicalSLO touch a minute, from RULE_SAMPLE of them."""
    client.reset()
    client.at = at
    per_minute = 0.0
    sampled = resources[:RULE_SAMPLE]
    for resource in sampled:
        for group in rules.groups(resource):
            interval = durations.parse(group["interval"]).total_seconds() if group.get("interval") else STEP
            for rule in group["rules"]:
                if "record" in rule:
                    before = client.samples
                    client.instant(rule["expr"])
                    per_minute += (client.samples - before) * 60 / interval
    return per_minute * len(resources) / len(sampled)


def _mean(values: Iterator[float] | list[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def section(figures: dict[str, Any], args: argparse.Namespace, backfill_seconds: float) -> list[str]:
    sub: list[CycleFigures] = figures["subqueries"]
    rec: list[CycleFigures] = figures["records"]
    rule: RuleFigures = figures["rules"]
    steady_sub, steady_rec = sub[1:] or sub, rec[1:] or rec

    def per_cycle(cycles: list[CycleFigures], pick: Callable[[CycleFigures], float], fmt: str) -> str:
        return format(_mean(pick(one) for one in cycles), fmt)

    rules_samples = "n/a" if rule.samples_per_minute is None else f"{rule.samples_per_minute:,.0f}"
    sub_cpu = _mean(one.cpu_seconds for one in steady_sub)
    rec_cpu = _mean(one.cpu_seconds for one in steady_rec) + rule.cpu_per_minute
    days = f"{args.days:g}"
    sub_samples = _mean(one.samples for one in steady_sub)
    rec_samples = _mean(one.samples for one in steady_rec) + (rule.samples_per_minute or 0.0)
    sub_queries, rec_queries = _mean(one.queries for one in steady_sub), _mean(one.queries for one in steady_rec)
    sub_wall, rec_wall = _mean(one.wall_seconds for one in steady_sub), _mean(one.wall_seconds for one in steady_rec)
    rows = [
        ("queries sent per cycle, first cycle", f"{sub[0].queries:,}", f"{rec[0].queries:,}"),
        ("queries sent per cycle, steady (mean of the others)", per_cycle(steady_sub, lambda c: c.queries, ",.0f"),
         per_cycle(steady_rec, lambda c: c.queries, ",.0f")),
        ("bucket-boundary reads (label values) per cycle, steady",
         per_cycle(steady_sub, lambda c: c.label_reads, ",.1f"), per_cycle(steady_rec, lambda c: c.label_reads, ",.1f")),
        ("samples touched by the queries per cycle, first cycle", f"{sub[0].samples:,}", f"{rec[0].samples:,}"),
        ("samples touched by the queries per cycle, steady", per_cycle(steady_sub, lambda c: c.samples, ",.0f"),
         per_cycle(steady_rec, lambda c: c.samples, ",.0f")),
        ("samples touched by rule evaluations per minute (their expressions re-run with `stats=all`)", "0",
         rules_samples),
        ("rule groups (rules) evaluated", "0", f"{rule.groups:,} ({rule.rules:,})"),
        ("rule evaluation time per minute: groups' `evaluationTime` (rules' durations), summed; groups run "
         "concurrently", "0 s", f"{rule.group_seconds_per_minute:.1f} s" + (
             "" if rule.rule_seconds_per_minute is None else f" ({rule.rule_seconds_per_minute:.1f} s)")),
        ("rule group iterations missed while measured", "0", f"{rule.missed:.0f}" if rule.missed is not None else "n/a"),
        ("Prometheus CPU per simulated minute: queries, steady", f"{sub_cpu:.2f} s",
         f"{_mean(one.cpu_seconds for one in steady_rec):.2f} s"),
        ("Prometheus CPU per minute: rule evaluation", "0 s", f"{rule.cpu_per_minute:.2f} s"),
        ("Prometheus CPU per minute, total (queries + rules)", f"{sub_cpu:.2f} s", f"{rec_cpu:.2f} s"),
        ("Prometheus CPU, first cycle (queries)", f"{sub[0].cpu_seconds:.2f} s", f"{rec[0].cpu_seconds:.2f} s"),
        ("query wall time per cycle, steady: sum over queries (cycle wall, 4 threads)",
         f"{_mean(c.query_seconds for c in steady_sub):.1f} s ({_mean(c.wall_seconds for c in steady_sub):.1f} s)",
         f"{_mean(c.query_seconds for c in steady_rec):.1f} s ({_mean(c.wall_seconds for c in steady_rec):.1f} s)"),
        ("query wall time, first cycle: sum (cycle wall)", f"{sub[0].query_seconds:.1f} s ({sub[0].wall_seconds:.1f} s)",
         f"{rec[0].query_seconds:.1f} s ({rec[0].wall_seconds:.1f} s)"),
        ("objectives measured from recording rules / subqueries, last cycle",
         f"{sub[-1].sources.get(cycle.RECORDING_RULES, 0):,} / {sub[-1].sources.get(cycle.SUBQUERIES, 0):,}",
         f"{rec[-1].sources.get(cycle.RECORDING_RULES, 0):,} / {rec[-1].sources.get(cycle.SUBQUERIES, 0):,}"),
    ]
    return [
        "## Prometheus load at 1,000 ClinicalSLOs: subqueries vs recording rules",
        "",
        "```",
        f".venv/bin/python bench/rules_load.py --slos {args.slos} --days {days} --cycles {args.cycles} "
        f"--rule-minutes {args.rule_minutes:g}",
        "```",
        "",
        f"Measured on {dt.date.today().isoformat()} with Debian's Prometheus "
        f"{_prometheus_version()} on {os.cpu_count()} shared cores. {args.slos:,} ClinicalSLOs, each with an",
        "availability objective (errors/total, 99.9%) and a latency objective (latencyHistogram, 99% under",
        f"0.5 s) over 28d, on series of their own (4 each: total, errors, bucket le=0.5, bucket le=+Inf): "
        f"{4 * args.slos:,} series",
        f"backfilled for {days} day(s) at 1-minute resolution with promtool ({backfill_seconds:.0f} s) and then scraped",
        "live every minute. `cycle.measure` runs as the reconcile does (one Memory per ClinicalSLO kept across",
        f"cycles, `now` advancing by 1 minute, so long windows are re-read per `slo.reuse_seconds`), {args.cycles}",
        "cycles per mode, 4 ClinicalSLOs at a time. (a) subqueries: the cycles are evaluated at the last",
        f"{args.cycles} minutes of the backfill (`time=`), back to back. (b) the rules of `healthscale rules --format",
        f"rules` loaded into the same Prometheus; their evaluation is measured over {rule.minutes:.1f} real minutes",
        "with no queries; then the rules are unloaded and the cycles read the records (one selector query per",
        "ClinicalSLO) at the wall-clock time they were recorded, back to back, measured alone. Samples",
        "are Prometheus' `totalQueryableSamples` (`?stats=all`) for queries; for rule evaluations (2.42 has no",
        f"samples counter) the recording rules of {min(RULE_SAMPLE, args.slos)} ClinicalSLOs are re-run once as instant queries with",
        "`stats=all` and scaled to all (their series are alike). CPU is the delta of",
        f"`process_cpu_seconds_total` less the idle scrape's ({figures['idle_cpu_per_minute']:.2f} s a minute). "
        "\"Steady\" is the mean",
        "of cycles 2 onwards; the first cycle reads every window (a restart).",
        "",
        "| per cycle (1 minute) | (a) subqueries | (b) recording rules + records reads |",
        "|---|---:|---:|",
        *(f"| {label} | {a} | {b} |" for label, a, b in rows),
        "",
        f"In short, per minute at this history: (b) costs Prometheus {rec_cpu / sub_cpu:.2f}x the CPU of (a) and "
        f"{rec_samples / sub_samples:.2f}x the samples,",
        f"while the operator sends {sub_queries / rec_queries:.0f}x fewer queries and waits "
        f"{sub_wall / rec_wall:.0f}x less for them.",
        "",
        f"What the history covers: {days} day(s) (and the minutes scraped since). "
        + ("The 3d burn window is whole, but" if args.days >= 3 else
           f"The 3d burn window sees {days} of its 3 days and"),
        "the 28d objective window (its subquery in (a), its slow-group rule in (b)) sees only those days,",
        f"so those windows cost here about {min(args.days, 3) / 3:.0%} (3d) and {args.days / 28:.0%} (28d) of what they cost on a",
        "Prometheus holding 28 days, in both modes (samples grow with the window). (a) reads the 28d and 3d windows once every 7.5-15",
        f"minutes per objective; (b) evaluates the windows of 6h and longer every {slo.SLOW_INTERVAL} and the shorter",
        "ones every minute per objective, whether or not anyone reads them. Both read each window at the",
        "resolution of `slo.resolution` (1m under a day, 5m up to a week, 15m beyond). The counters move with a daily shape (+-50%) and",
        "compress like real ones; real services' histograms have more buckets, which the rules read no more",
        "of (one bucket and +Inf).",
        "",
    ]


def _prometheus_version() -> str:
    output = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", output)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    sys.exit(main())
