"""The load test's driver (`make loadtest`; tests/integration/test_loadtest.py runs ``--profile short``).

Three pools of the same service (``loadtest.service``: 2 slots, exponential 50 ms service), each
behind its own balancer, scraped every second by a Prometheus of the load test's own. Locust sends
every pool the same users at the same moments (one user class per pool). Phases:

1. **Sweep.** Every pool at 2 replicas; load per replica ramps from ``SWEEP[0]`` to ``SWEEP[1]``
   times the true knee and back. ``healthscale capacity`` (``service.capacity``) learns perReplica
   from it; the true knee is ``loadtest.knee`` (Erlang C, checked by simulation).
2. **Replay.** A real morning (the bank call centre's, ../shared/traces, 07:30-10:30 of
   ``DAY``), time-compressed, scaled so that its peak is ``PEAK_KNEES`` true knees per pool. Each
   pool is scaled by one row of ``POLICIES``: the real reconcile (``cycle.run`` every 5 s with
   the real Prometheus adapter, the learned perReplica and a SurgeSchedule floor for the 09:00
   shift change sized from the previous day's peak), or an HPA-style reactive policy (slot
   utilisation over 30 s against a 60% or a 70% target, every 15 s). All wait the same
   ``STARTUP_SECONDS`` for a new replica. Only the trace is compressed: the policies' delays are
   real seconds, so a ramp of hours takes a couple of minutes and every lag weighs ~40x more
   than it would in a real morning (both ways: the reconcile's forecast has minutes of history,
   not weeks, and plays no part).
3. **Checks.** Compliance of each pool over the replay (from the raw counters); the reconcile's
   latency burn rates against an independent computation from the raw histogram; a PNG of it all.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime as dt
import json
import math
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import yaml

from healthscale.adapters import prometheus as prometheus_adapter
from healthscale.api import clinicalslo
from healthscale.domain import capacity as capacity_domain
from healthscale.service import capacity, cycle
from loadtest import knee, manifests, pool

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRACES = ROOT.parent / "shared" / "traces"
TRACE, DAY, PREVIOUS_DAY, FROM, TO, SHIFT = "call_centre_bank_5min.csv", "2003-03-04", "2003-03-03", "07:30", "10:30", "09:00"
SLOTS, MEAN_SECONDS, THRESHOLD, PERCENTILE = 2, 0.05, 0.25, 95.0
STARTUP_SECONDS = 10.0
MAX_REPLICAS = 8
HEADROOM = 20.0
SWEEP = (0.5, 1.5)
"""Load per replica during the sweep, in true knees: from well below to well above it."""
SWEEP_REPLICAS = 2
PEAK_KNEES = 2.8
"""The replayed morning's peak, in true knees per pool (the replicas it needs at the knee)."""
WARMUP = 15.0
GAP = 15.0
"""Seconds between sweep and replay: the capacity fit runs while the load holds at the sweep's start."""
SEED = 14


@dataclasses.dataclass(frozen=True)
class Profile:
    sweep_seconds: float
    point_seconds: float
    """Real seconds per 5-minute trace point."""


PROFILES = {"long": Profile(sweep_seconds=240, point_seconds=8.0), "short": Profile(sweep_seconds=120, point_seconds=3.5)}


# ------------------------------------------------------------------------------ the trace


def morning(traces: pathlib.Path, day: str) -> list[tuple[str, float]]:
    """The trace's (HH:MM, calls per 5 min) of ``day`` from FROM to TO inclusive."""
    found = []
    with open(traces / TRACE) as handle:
        for row in csv.DictReader(handle):
            stamp = row["timestamp"]
            if stamp.startswith(day) and FROM <= stamp[11:16] <= TO:
                found.append((stamp[11:16], float(row["value"])))
    if not found:
        raise ValueError(f"{traces / TRACE} has no rows for {day} {FROM}-{TO}")
    return found


@dataclasses.dataclass(frozen=True)
class Plan:
    """When each phase runs (epoch seconds) and the users per pool Locust follows."""

    start: float
    sweep_end: float
    replay_start: float
    replay_end: float
    points: list[tuple[float, float]]
    """(seconds from start, users per pool), linear in between."""
    rps_per_call: float
    replay: list[tuple[str, float]]
    shift_at: float


def plan(profile: Profile, traces: pathlib.Path, true_knee: float, start: float) -> Plan:
    replay = morning(traces, DAY)
    per_call = PEAK_KNEES * true_knee / max(value for _, value in replay)
    low, high = (SWEEP_REPLICAS * factor * true_knee for factor in SWEEP)
    half = profile.sweep_seconds / 2
    points = [(0.0, low), (WARMUP, low), (WARMUP + half, high), (WARMUP + 2 * half, low),
              (WARMUP + 2 * half + GAP, low)]
    replay_start = WARMUP + 2 * half + GAP
    for index, (_, value) in enumerate(replay):
        at = replay_start + index * profile.point_seconds
        # Each point is held for its interval, with a short ramp into the next (Locust spawns users).
        points += [(at + 0.5, value * per_call), (at + profile.point_seconds, value * per_call)]
    shift = next(index for index, (clock, _) in enumerate(replay) if clock >= SHIFT)
    # Users think ~1 s, so users per pool ~ requests a second (a little more: each waits for its answer).
    users = [(at, rate * (1 + MEAN_SECONDS)) for at, rate in points]
    return Plan(start, start + WARMUP + 2 * half, start + replay_start, start + points[-1][0], users, per_call,
                replay, start + replay_start + shift * profile.point_seconds)


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def prometheus(home: pathlib.Path, targets: dict[str, list[int]]) -> Iterator[str]:
    """A Prometheus of the load test's own (the binary the dev cluster uses, on a free loopback port),
    scraping every replica slot of each pool every second; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus not found: `make system-packages` installs Debian's package")
    (home / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "15s"},
        "scrape_configs": [{"job_name": "replicas", "static_configs": [
            {"targets": [f"127.0.0.1:{port}" for port in ports], "labels": {"pool": name}}
            for name, ports in targets.items()]}],
    }))
    url = f"http://127.0.0.1:{free_port()}"
    with open(home / "prometheus.log", "wb") as out:
        process = subprocess.Popen(
            [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address={url.removeprefix('http://')}", "--log.level=warn"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not _up(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prometheus did not start:\n{(home / 'prometheus.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process)


# ------------------------------------------------------------------------------ policies


@dataclasses.dataclass
class Operator:
    """The real reconcile over a pool: ``cycle.run`` with the real Prometheus adapter."""

    resource: clinicalslo.ClinicalSLO
    schedule: Any
    ports: cycle.Ports
    memory: cycle.Memory = dataclasses.field(default_factory=cycle.Memory)
    status: clinicalslo.ClinicalSLOStatus = dataclasses.field(default_factory=clinicalslo.ClinicalSLOStatus)
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def step(self, now: float) -> None:
        result = cycle.run(self.resource, [self.schedule], int(now), self.ports, self.memory, self.status)
        self.status = result.status
        self.log.append({"time": now, "desired": result.status.desired_replicas, "explanation": result.status.explanation})


@dataclasses.dataclass
class Reactive:
    """HPA-style: desired = ceil(replicas x utilisation / target), utilisation of the slots over the
    last 30 s (replicas still booting count as idle, as the HPA counts unready pods on scale-up),
    no change within 10% of the target, scale-down to the highest desire of the last 60 s."""

    pool: pool.Pool
    metrics: prometheus_adapter.Client
    target: float = 0.6
    tolerance: float = 0.1
    stabilization: float = 60.0
    desires: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def step(self, now: float) -> None:
        busy = cycle.scalar(self.metrics, f'sum(rate(loadtest_busy_seconds_total{{pool="{self.pool.name}"}}[30s]))')
        current = self.pool.desired
        if busy is None or current == 0:
            return
        utilisation = busy / (SLOTS * current)
        ratio = utilisation / self.target
        desired = current if abs(ratio - 1) <= self.tolerance else math.ceil(current * ratio)
        desired = max(1, min(MAX_REPLICAS, desired))
        self.desires = [(at, value) for at, value in self.desires if at > now - self.stabilization] + [(now, desired)]
        if desired < current:
            desired = min(current, max(value for _, value in self.desires))
        self.pool.scale(desired)
        self.log.append({"time": now, "desired": desired, "utilisation": utilisation})


@dataclasses.dataclass(frozen=True)
class PolicyRow:
    name: str
    tick: float
    """Seconds between decisions."""
    make: Callable[[pool.Pool, prometheus_adapter.Client, clinicalslo.ClinicalSLO, Any], Operator | Reactive]


POLICIES = (
    PolicyRow("operator", 5.0, lambda pool_, metrics, slo, schedule: Operator(
        slo, schedule, cycle.Ports(metrics, pool.Workloads(pool_), pool.Records()))),
    # The HPA at 60% is tuned just below the knee (66% utilisation) as if its owner knew it; at 70%,
    # a common target, it is tuned as its owner would without that knowledge.
    PolicyRow("hpa-60", 15.0, lambda pool_, metrics, slo, schedule: Reactive(pool_, metrics, target=0.6)),
    PolicyRow("hpa-70", 15.0, lambda pool_, metrics, slo, schedule: Reactive(pool_, metrics, target=0.7)),
)


class Loop(threading.Thread):
    """Runs ``step`` every ``tick`` seconds until stopped; keeps the first error to re-raise."""

    def __init__(self, name: str, tick: float, step: Callable[[float], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.tick, self.step_ = tick, step
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.halt.is_set():
            began = time.time()
            try:
                self.step_(began)
            except BaseException as error:  # noqa: BLE001 - re-raised by the driver
                self.error = error
                return
            self.halt.wait(max(0.0, self.tick - (time.time() - began)))


# -------------------------------------------------------------------------------- checks


def _ratio_query(pool_name: str, le: str, window: str) -> str:
    return f'sum(rate({manifests.HISTOGRAM}_bucket{{pool="{pool_name}", le="{le}"}}[{window}]))'


def independent_burn(url: str, pool_name: str, seconds: int, at: int) -> float | None:
    """The latency burn rate over ``seconds`` ending at ``at``, computed here from the raw histogram:
    Prometheus' rate()[5m] of the threshold bucket and of +Inf at each whole minute of the window
    (a range query, as the reconcile's 1m-resolution subquery sees them), averaged in numpy."""
    end = at - at % 60
    start = end - seconds + 60
    found = []
    for le in (f"{THRESHOLD:g}", "+Inf"):
        answer = _get(url, "/api/v1/query_range", query=_ratio_query(pool_name, le, "5m"), start=str(start),
                      end=str(end), step="60")
        values = [float(value) for series in answer["result"] for _, value in series["values"]]
        if not values:
            return None
        found.append(float(np.mean(values)))
    good, total = found
    return (1 - min(1.0, good / total)) / (1 - PERCENTILE / 100) if total > 0 else None


def _get(url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=30) as response:
        return json.loads(response.read())["data"]


def compliance(url: str, pool_name: str, start: float, end: float) -> float:
    """The share of the pool's requests within the threshold over [start, end], from the raw counters."""
    seconds = int(end - start)
    counts = []
    for le in (f"{THRESHOLD:g}", "+Inf"):
        query = f'sum(increase({manifests.HISTOGRAM}_bucket{{pool="{pool_name}", le="{le}"}}[{seconds}s]))'
        [series] = _get(url, "/api/v1/query", query=query, time=f"{end:.3f}")["result"]
        counts.append(float(series["value"][1]))
    return counts[0] / counts[1]


def series(url: str, query: str, start: float, end: float, step: float = 2.0) -> tuple[list[float], list[float]]:
    answer = _get(url, "/api/v1/query_range", query=query, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
    if not answer["result"]:
        return [], []
    values = answer["result"][0]["values"]
    return [float(at) for at, _ in values], [float(value) for _, value in values]


# ----------------------------------------------------------------------------------- run


def run(profile: Profile, out: pathlib.Path, traces: pathlib.Path = TRACES, echo: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """The whole load test; returns its figures (also written to ``out``/results.json)."""
    out.mkdir(parents=True, exist_ok=True)
    true_knee = knee.knee(SLOTS, MEAN_SECONDS, THRESHOLD, PERCENTILE)
    config = pool.Config(SLOTS, MEAN_SECONDS, STARTUP_SECONDS, SEED)
    targets = {row.name: [free_port() for _ in range(MAX_REPLICAS)] for row in POLICIES}
    with contextlib.ExitStack() as stack:
        home = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loadtest-")))
        url = stack.enter_context(prometheus(home, targets))
        metrics = prometheus_adapter.Client(url)
        stack.callback(metrics.close)
        pools: dict[str, pool.Pool] = {}
        for row in POLICIES:
            pools[row.name] = pool.Pool(row.name, targets[row.name], free_port(), config, out)
            stack.callback(pools[row.name].close)
            pools[row.name].scale(SWEEP_REPLICAS)
        for each in pools.values():
            each.wait_ready()
        schedule_plan = plan(profile, traces, true_knee, time.time() + 3)
        shape = out / "shape.json"
        shape.write_text(json.dumps({"start": schedule_plan.start, "points": schedule_plan.points}))
        env = {**os.environ, "LOADTEST_SHAPE": str(shape), "LOADTEST_SEED": str(SEED),
               "LOADTEST_POOLS": json.dumps({name: each.balancer_url for name, each in pools.items()})}
        with open(out / "locust.log", "wb") as log:
            locust = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
                                       "--headless", "--only-summary", "--loglevel", "WARNING"],
                                      stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        stack.callback(stop, locust)
        echo(f"true knee {true_knee:.2f} req/s per replica; sweep until +{schedule_plan.sweep_end - time.time():.0f}s, "
             f"replay {len(schedule_plan.replay)} points until +{schedule_plan.replay_end - time.time():.0f}s")

        # 1. the sweep, then learn perReplica from it
        _sleep_until(schedule_plan.sweep_end + 3, locust)
        capacity_slo = manifests.capacity(PERCENTILE, THRESHOLD, true_knee, MAX_REPLICAS, STARTUP_SECONDS)
        now = int(time.time())
        observed = capacity.read(metrics, capacity_slo, now, int(now - (schedule_plan.start + WARMUP)), 1,
                                 manifests.REPLICAS_QUERY)
        estimate = capacity.learn(observed, capacity_slo)
        echo(capacity.describe(estimate, capacity_slo, observed).rstrip())
        learned = estimate.recommended

        # 2. the replay, each pool scaled by its policy
        per_replica = learned if learned is not None else true_knee
        if learned is None:
            echo(f"WARNING: nothing learned ({estimate.outcome}); the reconcile plans with the true knee instead")
        slo = manifests.operator(PERCENTILE, THRESHOLD, per_replica, MAX_REPLICAS, STARTUP_SECONDS, HEADROOM)
        yesterday = max(value for _, value in morning(traces, PREVIOUS_DAY)) * schedule_plan.rps_per_call
        floor = math.ceil(yesterday * (1 + HEADROOM / 100) / per_replica)
        shift = dt.datetime.fromtimestamp(schedule_plan.shift_at, dt.UTC).strftime("%Y-%m-%dT%H:%M")
        until = dt.datetime.fromtimestamp(schedule_plan.replay_end + 120, dt.UTC).strftime("%Y-%m-%dT%H:%M")
        schedule = manifests.schedule(shift, until, floor)
        policies = {row.name: row.make(pools[row.name], metrics, slo, schedule) for row in POLICIES}
        _sleep_until(schedule_plan.replay_start, locust)
        loops = [Loop(row.name, row.tick, policies[row.name].step) for row in POLICIES]
        for loop in loops:
            loop.start()
        for loop in loops:
            stack.callback(loop.halt.set)
        try:
            _sleep_until(schedule_plan.replay_end, locust, loops)
        finally:
            for loop in loops:
                loop.halt.set()
                loop.join(timeout=60)
        for loop in loops:
            if loop.error is not None:
                raise RuntimeError(f"the {loop.name} policy failed") from loop.error
        time.sleep(2)  # the last scrape

        # 3. checks
        operator = policies["operator"]
        assert isinstance(operator, Operator)
        # A dry-run cycle with a fresh memory reads every window now (nothing reused from earlier
        # cycles); it and the independent reads must fall within one minute, so that the
        # reconcile's 1m-resolution subqueries and the range queries see the same grid.
        while True:
            while 50 <= time.time() % 60 or time.time() % 60 < 3:
                time.sleep(0.5)
            began = int(time.time())
            check = cycle.run(slo, [schedule], began, operator.ports, cycle.Memory(), operator.status, dry_run=True)
            read_at = int(time.time())
            if began // 60 == read_at // 60:
                break
        latency = check.status.objectives.latency if check.status.objectives else None
        burns = {}
        for label, seconds in (("5m", 300), ("30m", 1800), ("1h", 3600)):
            burns[label] = {"status": latency.burn_rates.get(label) if latency else None,
                            "prometheus": independent_burn(url, "operator", seconds, read_at)}
        results: dict[str, Any] = {
            "profile": dataclasses.asdict(profile),
            "true_knee": true_knee,
            "simulated_knee": knee.simulated_knee(SLOTS, MEAN_SECONDS, THRESHOLD, PERCENTILE, seed=SEED),
            "learned": {"outcome": str(estimate.outcome), "recommended": learned, "low": estimate.low,
                        "high": estimate.high, "intervals": estimate.intervals, "reason": estimate.reason},
            "knee_error": None if learned is None else learned / true_knee - 1,
            "floor": floor, "shift_change": shift, "per_replica_used": per_replica,
            "compliance": {name: compliance(url, name, schedule_plan.replay_start, schedule_plan.replay_end)
                           for name in pools},
            "replica_seconds": {name: _replica_seconds(pools[name].timeline, schedule_plan) for name in pools},
            "burn_rates": burns,
            "latency_compliance_status": latency.compliance if latency else None,
            "replay": {"trace": TRACE, "day": DAY, "from": FROM, "to": TO,
                       "seconds": schedule_plan.replay_end - schedule_plan.replay_start},
            "operator_model": operator.status.model,
            "operator_log": operator.log[-3:],
        }
        plot_data = _plot_data(url, schedule_plan, pools, observed, estimate, true_knee)
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        (out / "plot-data.json").write_text(json.dumps(plot_data))
    return results


def _replica_seconds(timeline: list[tuple[float, int, int]], schedule_plan: Plan) -> float:
    """Desired replicas integrated over the replay (what the pool cost)."""
    start, end = schedule_plan.replay_start, schedule_plan.replay_end
    total, current, last = 0.0, 0, start
    for at, desired, _ in timeline:
        if at >= end:
            break
        if at > start:
            total += current * (at - last)
            last = at
        current = desired
    return total + current * (end - last)


def _plot_data(url: str, schedule_plan: Plan, pools: dict[str, pool.Pool], observed: capacity.Observed,
               estimate: capacity_domain.Estimate, true_knee: float) -> dict[str, Any]:
    start, end = schedule_plan.replay_start, schedule_plan.replay_end
    found: dict[str, Any] = {"replay_start": start, "replay_end": end, "shift_at": schedule_plan.shift_at,
                             "target": PERCENTILE, "true_knee": true_knee, "learned": estimate.recommended,
                             "low": estimate.low, "high": estimate.high, "pools": {}}
    for name, each in pools.items():
        selector = f'pool="{name}"'
        found["pools"][name] = {
            "demand": series(url, f"sum(rate(loadtest_requests_total{{{selector}}}[15s]))", start, end),
            "ready": series(url, f'count(up{{job="replicas", {selector}}} == 1)', start, end),
            "compliance": series(url, f"{_ratio_query(name, f'{THRESHOLD:g}', '15s')} / "
                                      f"{_ratio_query(name, '+Inf', '15s')}", start, end),
            "desired": [(at, desired) for at, desired, _ in each.timeline],
        }
    found["sweep"] = {"load": [None if not math.isfinite(value) else value for value in observed.load.tolist()],
                      "share": [None if not math.isfinite(value) else value for value in observed.good_share.tolist()],
                      "curve": list(estimate.curve)}
    return found


def _sleep_until(moment: float, locust: subprocess.Popen[bytes], loops: Sequence[Loop] = ()) -> None:
    while time.time() < moment:
        if locust.poll() is not None and time.time() < moment - 1:
            raise RuntimeError(f"locust exited early with {locust.returncode}")
        if any(loop.error is not None for loop in loops):
            return
        time.sleep(min(1.0, max(0.0, moment - time.time())))


def _terminated(signum: int, _: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="long")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "out" / "loadtest")
    parser.add_argument("--plot", type=pathlib.Path, default=None, help="write the figure here (PNG)")
    parser.add_argument("--traces", type=pathlib.Path, default=TRACES)
    options = parser.parse_args()
    # SIGTERM (a test's cleanup, Ctrl-C's sibling) unwinds the ExitStack: every process started is stopped.
    signal.signal(signal.SIGTERM, _terminated)
    if not (options.traces / TRACE).is_file():
        raise SystemExit(f"error: {options.traces / TRACE} not found; the load test replays ../shared/traces")
    results = run(PROFILES[options.profile], options.out, options.traces)
    from loadtest import figure

    figure.draw(json.loads((options.out / "plot-data.json").read_text()), options.plot or options.out / "loadtest.png")
    print(figure.summary(results))


if __name__ == "__main__":
    main()
