"""The ``healthscale`` command: ``backtest`` (replay a demand trace), ``run`` (the operator), ``crds``.

Bad input exits with status 2 and a message that names the file, the row or field, and the rule.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence

from healthscale.api import clinicalslo, crdgen, manifests, surgeschedule
from healthscale.backtest import replay, report, trace
from healthscale.domain import residency as residency_rules

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthscale", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)

    backtest = commands.add_parser(
        "backtest",
        help="replay a demand trace through the engine and reference autoscalers",
        description="Replay TRACE.csv interval by interval: healthscale against reactive HPA, schedule-only "
        "floors, Holt-Winters (Predictive HPA) and a perfect-foresight oracle.",
    )
    backtest.add_argument("--trace", required=True, type=pathlib.Path, help="CSV with columns timestamp,value")
    backtest.add_argument("--slo", required=True, type=pathlib.Path, help="ClinicalSLO manifest (YAML)")
    backtest.add_argument("--schedule", type=pathlib.Path, help="SurgeSchedule manifest (YAML)")
    backtest.add_argument("--output", required=True, type=pathlib.Path, help="where to write PLAN.csv")
    backtest.add_argument("--plot", type=pathlib.Path, help="where to write a PNG timeline")
    backtest.add_argument("--warmup-days", type=float, default=None,
                          help="days at the start used only as history (default: the SLO's forecast.history)")
    backtest.add_argument("--no-references", action="store_true", help="replay healthscale only (faster)")

    run = commands.add_parser(
        "run", help="run the operator (in-cluster, or with the kubeconfig named by KUBECONFIG)",
        description="Watch ClinicalSLOs and SurgeSchedules, forecast from Prometheus and scale ahead of demand.",
    )
    run.add_argument("--prometheus-url", required=True, help="e.g. http://prometheus.monitoring:9090")
    run.add_argument("--prometheus-bearer-token-file", type=pathlib.Path, help="file holding a bearer token")
    run.add_argument("--prometheus-ca-file", type=pathlib.Path, help="CA bundle to verify Prometheus' TLS certificate")
    run.add_argument("--prometheus-insecure-skip-verify", action="store_true", help="do not verify TLS (testing only)")
    run.add_argument("--namespace", action="append", default=[], dest="namespaces",
                     help="watch only this namespace (repeatable; default: all namespaces)")
    run.add_argument("--dry-run", action="store_true", help="plan and report everything, change no workload")
    run.add_argument("--metrics-port", type=int, default=9102, help="port for /metrics (0 turns it off)")
    run.add_argument("--health-port", type=int, default=8080, help="port for /healthz (0 turns it off)")
    run.add_argument("--log-format", choices=("plain", "json"), default="plain", help="json for log pipelines")
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.add_argument("--peering", metavar="NAME", help="Kopf peering object for several replicas (default: standalone)")
    run.add_argument("--peering-priority", type=int, metavar="N",
                     help="this replica's peering priority; the highest is active (default: random)")
    run.add_argument("--region-label", default="topology.kubernetes.io/region",
                     help="node label read as the region (recommended: an admin-only node-restriction.kubernetes.io/ "
                     "label, which kubelets cannot set on their own Node)")
    run.add_argument("--default-allowed-regions", default="", metavar="REGION[,REGION...]",
                     help="allowed regions for namespaces that opt into residency without the "
                     "healthscale.io/allowed-regions annotation")
    run.add_argument("--webhook-port", type=int, default=0,
                     help="port for the residency admission webhook (0, the default, runs none)")
    run.add_argument("--webhook-host", default="127.0.0.1",
                     help="host name or IP the API server uses to reach the webhook (put in its certificate)")
    run.add_argument("--webhook-addr", default="127.0.0.1", help="address the webhook server listens on")
    run.add_argument("--webhook-configuration", default="healthscale-residency", metavar="NAME",
                     help="name of the ValidatingWebhookConfiguration the operator applies for its webhook")
    run.add_argument("--residency-evict", action="store_true",
                     help="evict pods found outside their allowed regions (respects PodDisruptionBudgets)")

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    crds.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("crds"))
    crds.add_argument("--check", action="store_true", help="fail if the files differ from the models instead of writing")
    return parser


def _backtest(arguments: argparse.Namespace) -> int:
    slo = manifests.load_one(clinicalslo.ClinicalSLO, arguments.slo)
    schedule = manifests.load_one(surgeschedule.SurgeSchedule, arguments.schedule) if arguments.schedule else None
    if schedule is not None and not schedule.spec.applies_to(slo.metadata.name, slo.metadata.labels):
        print(f"note: SurgeSchedule {schedule.metadata.name} does not select ClinicalSLO {slo.metadata.name}; "
              "using its surges anyway", file=sys.stderr)
    demand = trace.load(arguments.trace)
    warmup = arguments.warmup_days
    if warmup is None:
        warmup = slo.spec.forecast.history.total_seconds() / 86400
    if warmup < 0:
        raise ValueError("--warmup-days must be >= 0")
    intervals = replay.scored_intervals(demand, warmup)
    total = intervals * (1 if arguments.no_references else len(replay.FORECASTING))
    started = time.perf_counter()
    from tqdm import tqdm

    with tqdm(total=total, unit="interval", desc="replaying", disable=None, mininterval=0.5, file=sys.stderr) as bar:
        result = replay.replay(demand, slo.spec, schedule.spec if schedule else None, warmup,
                               progress=lambda _: bar.update(), with_references=not arguments.no_references)
    elapsed = time.perf_counter() - started
    report.write_plan(result, arguments.output)
    print(f"{demand.path.name}: {intervals} intervals of {demand.step}s replayed in {elapsed:.1f}s "
          f"(warm-up {warmup:g} days); plan written to {arguments.output}")
    for note in result.notes:
        print(f"note: {note}")
    print()
    print(report.table(result))
    print()
    print(f"healthscale's reasons: {report.reasons(result)}")
    if arguments.plot:
        report.plot(result, arguments.plot)
        print(f"plot written to {arguments.plot}")
    return 0


def _crds(arguments: argparse.Namespace) -> int:
    if arguments.check:
        drifted = crdgen.drift(arguments.output_dir)
        if drifted:
            print(f"CRDs out of date in {arguments.output_dir}: {', '.join(drifted)}; run `healthscale crds`",
                  file=sys.stderr)
            return 1
        print(f"CRDs in {arguments.output_dir} match the models")
        return 0
    for path in crdgen.write(arguments.output_dir):
        print(f"wrote {path}")
    return 0


def _run(arguments: argparse.Namespace) -> int:
    from healthscale.runtime import operator, residency

    token = None
    if arguments.prometheus_bearer_token_file is not None:
        try:
            token = arguments.prometheus_bearer_token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(f"--prometheus-bearer-token-file: cannot read {error.filename}: {error.strerror}") from None
    return operator.run(operator.Options(
        prometheus_url=arguments.prometheus_url,
        bearer_token=token,
        ca_file=str(arguments.prometheus_ca_file) if arguments.prometheus_ca_file else None,
        insecure_skip_verify=arguments.prometheus_insecure_skip_verify,
        namespaces=tuple(arguments.namespaces),
        dry_run=arguments.dry_run,
        metrics_port=arguments.metrics_port,
        health_port=arguments.health_port,
        peering=arguments.peering,
        peering_priority=arguments.peering_priority,
        log_format=arguments.log_format,
        verbose=arguments.verbose,
        residency=residency.Config(
            region_label=_region_label(arguments.region_label),
            default_regions=residency_rules.parse_regions(arguments.default_allowed_regions),
            evict=arguments.residency_evict,
            webhook_port=_port("--webhook-port", arguments.webhook_port),
            webhook_host=arguments.webhook_host,
            webhook_addr=arguments.webhook_addr,
            configuration_name=arguments.webhook_configuration,
        ),
    ))


def _region_label(label: str) -> str:
    if not label.strip():
        raise ValueError("--region-label must name a node label, e.g. topology.kubernetes.io/region")
    return label.strip()


def _port(option: str, port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"{option} {port} is not a port (0-65535)")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    # Small per-series solves run fastest on one BLAS thread (see healthscale/__init__.py).
    threadpool_limits(1)
    arguments = _parser().parse_args(argv)
    try:
        if arguments.command == "backtest":
            return _backtest(arguments)
        if arguments.command == "run":
            return _run(arguments)
        return _crds(arguments)
    except ValueError as error:  # ManifestError, TraceError and bad options all say what and where
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
