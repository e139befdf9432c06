"""The ``healthscale`` command: ``backtest`` (replay a demand trace), ``run`` (the operator), ``explain``
(a ClinicalSLO's latest decision), ``crds``, ``release`` (restore what healthscale changed and remove its
finalizers, e.g. before uninstalling), ``capacity`` (perReplica learned from Prometheus history), ``rules`` (Prometheus recording
and alert rules for the objectives).

Bad input exits with status 2 and a message that names the option or file, the row or field, and the
rule; a user's mistake never shows a traceback. The help text is plain (no markup from this docstring).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import pathlib
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from healthscale.api import clinicalslo, crdgen, manifests, surgeschedule
from healthscale.backtest import deferral as backtest_deferral, replay, report, trace
from healthscale.domain import residency as residency_rules

if TYPE_CHECKING:  # the runtime (Kopf, kubernetes) is imported only by `healthscale run`
    from healthscale.runtime import webhook
    from healthscale.service import room

EXIT_BAD_INPUT = 2
EXIT_LEFT = 1
EXIT_NOT_FOUND = 1
MAX_DEFERRABLE_REPLICAS = 1_000_000

DESCRIPTION = ("healthscale scales clinical workloads ahead of predictable surges. Commands: backtest (replay a "
               "demand trace), run (the operator), explain (a ClinicalSLO's latest decision), crds (write the "
               "CRDs), release (restore what healthscale changed, before uninstalling), capacity (learn "
               "perReplica from Prometheus history), rules (Prometheus recording and alert rules for "
               "ClinicalSLOs' objectives).")
NO_CLUSTER = ("no cluster credentials: not in a pod with a ServiceAccount, and no kubeconfig at $KUBECONFIG or "
              "~/.kube/config. Set KUBECONFIG to the cluster's kubeconfig (as for kubectl), or run in the cluster "
              "with a ServiceAccount")
NEEDS_PLOT_EXTRA = "plotting needs the plot extra: pip install 'healthscale[plot]'"


def _version() -> str:
    try:
        return importlib.metadata.version("healthscale")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="healthscale", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"healthscale {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    backtest = commands.add_parser(
        "backtest",
        help="replay a demand trace through the engine and reference autoscalers",
        description="Replay TRACE.csv interval by interval: healthscale against reactive HPA, the three-line "
        "heuristic (max of same slot yesterday, same slot last week, last interval), schedule-only floors, "
        "Holt-Winters (Predictive HPA) and a perfect-foresight oracle; the HPA and the heuristic also at "
        "healthscale's replica-hours.",
    )
    backtest.add_argument("--trace", required=True, type=pathlib.Path,
                          help="CSV with columns timestamp,value; times in ISO-8601 (naive, Z or an offset: the "
                          "wall clock as written is used) or epoch seconds (UTC)")
    backtest.add_argument("--slo", required=True, type=pathlib.Path, help="ClinicalSLO manifest (YAML)")
    backtest.add_argument("--schedule", type=pathlib.Path, help="SurgeSchedule manifest (YAML)")
    backtest.add_argument("--output", required=True, type=pathlib.Path, help="where to write PLAN.csv")
    backtest.add_argument("--plot", type=pathlib.Path,
                          help="where to write a PNG timeline (needs the plot extra: pip install 'healthscale[plot]')")
    backtest.add_argument("--warmup-days", type=float, default=None,
                          help="days at the start used only as history (default: the SLO's forecast.history)")
    backtest.add_argument("--no-references", action="store_true", help="replay healthscale only (faster)")
    backtest.add_argument("--node-provisioning-seconds", type=int, default=None, metavar="SECONDS",
                          help="a replica beyond the nodes' room waits this long for a node (every policy alike); "
                               "healthscale reserves room ahead of need and is also replayed without doing so "
                               "(default: the SLO's capacity.nodeProvisioningSeconds; 0: room is never short)")
    backtest.add_argument("--deferrable-replicas", type=int, default=None, metavar="N",
                          help="with a --schedule that has spec.defer: the usual replicas of the workloads spec.defer "
                               "selects, summed; the report then shows the replica-hours deferred per surge window, "
                               "and PLAN.csv a deferred_replicas column")

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
    run.add_argument("--allowed-regions", default="", metavar="REGION[,REGION...]",
                     help="cluster-wide allow-list: no namespace allows a region outside it (a namespace annotation "
                     "listing one is clipped to it); default: no cluster-wide bound")
    run.add_argument("--residency", action=argparse.BooleanOptionalAction, default=True,
                     help="data residency: write the region requirement into ClinicalSLO targets' pod templates and "
                     "audit every pod in enforced namespaces (--no-residency: neither; ClinicalSLOs that name "
                     "regions are then not scaled)")
    run.add_argument("--residency-audit-seconds", type=float, default=60.0, metavar="SECONDS",
                     help="how often every pod in namespaces enforcing residency is checked (default 60)")
    run.add_argument("--pod-deletion-cost", action=argparse.BooleanOptionalAction, default=True,
                     help="before a scale-down, set pods' pod-deletion-cost from indicators.podLoad "
                     "(--no-pod-deletion-cost: never patch pods; podLoad is then ignored)")
    run.add_argument("--prometheus-rules", action=argparse.BooleanOptionalAction, default=True,
                     help="when the cluster serves PrometheusRules (Prometheus Operator), keep one per ClinicalSLO "
                     "with its recording rules and burn-rate alerts, owned by it; burn rates are then read from "
                     "the recorded series (--no-prometheus-rules: never create them)")
    run.add_argument("--keda", action=argparse.BooleanOptionalAction, default=True,
                     help="when a KEDA ScaledObject scales the target, raise the ScaledObject's minReplicaCount "
                     "(never KEDA's own HPA); needs list and patch on scaledobjects.keda.sh (--no-keda: never "
                     "list them; an HPA KEDA controls is then left as it is)")
    run.add_argument("--deferral", action=argparse.BooleanOptionalAction, default=True,
                     help="act on SurgeSchedules' spec.defer: shrink or suspend the selected non-critical workloads "
                     "during surges and put them back after; needs list, get and patch on deployments, statefulsets, "
                     "cronjobs and jobs (and scaledobjects with --keda) (--no-deferral: never list or write them)")
    run.add_argument("--deferral-seconds", type=float, default=20.0, metavar="SECONDS",
                     help="how often SurgeSchedules' spec.defer is acted on (default 20): deferral ends at most this "
                     "long after its window")
    run.add_argument("--node-warmup", action=argparse.BooleanOptionalAction, default=True,
                     help="for ClinicalSLOs with capacity.nodeProvisioningSeconds, hold node room ahead of need with "
                     "a placeholder Deployment per ClinicalSLO, owned by it (--no-node-warmup: report the room "
                     "in status.reservation, create nothing)")
    run.add_argument("--placeholder-image", default=None, metavar="IMAGE",
                     help="image of the placeholder pods (default registry.k8s.io/pause:3.10)")
    run.add_argument("--placeholder-priority-class", default=None, metavar="NAME",
                     help="PriorityClass of the placeholder pods, with a negative value so that real pods "
                     "preempt them (default healthscale-placeholder, which the Helm chart creates)")
    run.add_argument("--webhook-port", type=int, default=0,
                     help="port for the residency admission webhook (0, the default, runs none); every replica "
                     "serves it, in a thread of its own")
    run.add_argument("--webhook-host", default="127.0.0.1",
                     help="without --webhook-service: host name or IP in the webhook's URL (and its certificate)")
    run.add_argument("--webhook-service", metavar="NAMESPACE/NAME",
                     help="a Service in front of every replica: the API server calls it (and the certificate names "
                     "NAME.NAMESPACE.svc) instead of a URL")
    run.add_argument("--webhook-addr", default="127.0.0.1", help="address the webhook server listens on")
    run.add_argument("--webhook-configuration", default="healthscale-residency", metavar="NAME",
                     help="name of the ValidatingWebhookConfiguration the operator applies for its webhook")
    run.add_argument("--webhook-cert-source", choices=("operator", "secret", "cert-manager"), default="operator",
                     help="operator: issue and renew a certificate in the Secret, shared by the replicas; secret: "
                     "read a TLS Secret you keep; cert-manager: read the Secret cert-manager keeps (its CA "
                     "injector fills in the CA bundle)")
    run.add_argument("--webhook-cert-secret", metavar="[NAMESPACE/]NAME",
                     help="the certificate's Secret (default: <configuration>-cert in the operator's namespace)")
    run.add_argument("--webhook-cert-lifetime", default="90d", metavar="DURATION",
                     help="lifetime of the certificates the operator issues, renewed with a third left (default 90d)")
    run.add_argument("--residency-evict", action="store_true",
                     help="evict pods found outside their allowed regions (respects PodDisruptionBudgets)")

    release = commands.add_parser(
        "release", help="restore what healthscale changed and remove its finalizers (run before uninstalling)",
        description="For every ClinicalSLO: put back each field its status records healthscale changed, then "
        "remove healthscale's finalizer, whatever the restore's outcome. One line per ClinicalSLO; exits 1 if "
        "anything was left unrestored. Stop the operator first (--stop-operator), or it puts its finalizer "
        "back on ClinicalSLOs that are not being deleted. Uses the ServiceAccount in a pod, else KUBECONFIG.",
    )
    release.add_argument("--namespace", action="append", default=[], dest="namespaces", metavar="NAMESPACE",
                         help="only this namespace (repeatable; default: all namespaces)")
    release.add_argument("--only-deleting", action="store_true", help="only ClinicalSLOs being deleted")
    release.add_argument("--dry-run", action="store_true", help="list what would be done, change nothing")
    release.add_argument("--stop-operator", metavar="NAMESPACE/DEPLOYMENT",
                         help="first scale the operator's Deployment to 0 and wait (up to 2 minutes) for its pods")
    release.add_argument("--exit-zero", action="store_true",
                         help="exit 0 even when something was left unrestored (still printed, and posted as a "
                         "Warning Event): the Helm hook uses it so that a refused restore never blocks an uninstall")
    release.add_argument("--deferral", action=argparse.BooleanOptionalAction, default=True,
                         help="also put back what SurgeSchedules' spec.defer deferred (status.deferred) and remove "
                         "their finalizer healthscale.io/restore-deferred (--no-deferral: as the operator's flag)")
    release.add_argument("--keda", action=argparse.BooleanOptionalAction, default=True,
                         help="with --deferral, also restore paused KEDA ScaledObjects (--no-keda: as the operator's flag)")

    explain = commands.add_parser(
        "explain", help="print a ClinicalSLO's latest decision, its signals and conditions (from its status)",
        description="Read one ClinicalSLO (with the kubeconfig kubectl uses: KUBECONFIG or ~/.kube/config, or the "
        "ServiceAccount in a pod) and print its latest decision from status: desired and current replicas, the "
        "signal that won and the explanation with its numbers, the forecast peak, the next surge, the conditions, "
        "what healthscale changed and will put back, and residency. Exits 1 if the ClinicalSLO does not exist.",
    )
    explain.add_argument("name", metavar="NAMESPACE/NAME", help="the ClinicalSLO, e.g. ehr/ed-triage-chart")

    learn = commands.add_parser(
        "capacity", help="learn perReplica: the load per ready replica at which the latency objective stops being met",
        description="Read load per ready replica (indicators.demand / ready replicas) and the latency SLI (the "
        "latency objective's good and all requests) from Prometheus over --since, fit the share of good requests "
        "against load with a monotone fit, and print the load at which it falls below objectives.latency.percentile, "
        "with a 5-95% band from resampling whole days, and the evidence. When load never reached that point it "
        "prints 'not observed: at least X'. Exits 0 with a recommendation or a lower bound, 1 with neither (too "
        "little data, or the objective missed even at the lightest load), 2 on bad input or a Prometheus failure.",
    )
    learn.add_argument("--slo", required=True, type=pathlib.Path, help="ClinicalSLO manifest (YAML) with objectives.latency")
    learn.add_argument("--prometheus-url", required=True, help="e.g. http://prometheus.monitoring:9090")
    learn.add_argument("--since", default="14d", help="how much history to read, e.g. 14d (1h to 90d; default 14d)")
    learn.add_argument("--step", default="5m", help="one interval, e.g. 5m (1m to 1d; default 5m)")
    learn.add_argument("--replicas-query", metavar="PROMQL",
                       help="PromQL for the target's ready replicas, one series (default: kube-state-metrics' "
                       "kube_deployment_status_replicas_available, or kube_statefulset_status_replicas_ready, for the "
                       "target's namespace and name); without kube-state-metrics e.g. count(<indicators.podLoad>)")
    learn.add_argument("--plot", type=pathlib.Path,
                       help="where to write a PNG of the latency SLI against load per replica, with the knee "
                       "(needs the plot extra: pip install 'healthscale[plot]')")
    learn.add_argument("--prometheus-bearer-token-file", type=pathlib.Path, help="file holding a bearer token")
    learn.add_argument("--prometheus-ca-file", type=pathlib.Path, help="CA bundle to verify Prometheus' TLS certificate")

    rules = commands.add_parser(
        "rules", help="write Prometheus recording and alert rules for ClinicalSLOs' objectives (like Sloth)",
        description="For each objective a ClinicalSLO measures (availability, latency): recording rules "
        "healthscale:sli_error:ratio_rate<window> over 5m, 30m, 1h, 2h, 6h, 1d, 3d and objectives.window, and "
        "multi-window multi-burn-rate alerts ClinicalSLOErrorBudgetBurn (severity page: 14.4x over 1h and 5m or 6x "
        "over 6h and 30m; ticket: 3x over 1d and 2h or 1x over 3d and 6h). They compute the same ratios as the "
        "operator's status.",
    )
    rules.add_argument("--slo", required=True, nargs="+", action="extend", type=pathlib.Path, metavar="FILE",
                       help="ClinicalSLO manifests (YAML; every ClinicalSLO document in each file)")
    rules.add_argument("--format", default="prometheusrule", choices=("prometheusrule", "rules"),
                       help="prometheusrule: a PrometheusRule (monitoring.coreos.com/v1) per ClinicalSLO; rules: "
                       "one rule file for Prometheus' rule_files and promtool (default: prometheusrule)")
    rules.add_argument("--output", type=pathlib.Path, help="where to write the YAML (default: standard output)")
    rules.add_argument("--latency-bucket", metavar="LE",
                       help="the le label value of latencyHistogram's bucket at thresholdSeconds, exactly as "
                       "Prometheus has it (status.objectives.latency.bucket shows it), e.g. 1 where a Go client on "
                       "Prometheus 2 writes le=\"1\"; default: thresholdSeconds as Prometheus 3 stores it (1.0, 1.5)")

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    crds.add_argument("--output-dir", type=pathlib.Path, default=pathlib.Path("crds"))
    crds.add_argument("--check", action="store_true", help="fail if the files differ from the models instead of writing")
    return parser


def _input_file(option: str, path: pathlib.Path) -> None:
    """An input file that exists and is a file, else ValueError naming the option (not "invalid manifest")."""
    if not path.exists():
        raise ValueError(f"{option} {path}: the file does not exist")
    if path.is_dir():
        raise ValueError(f"{option} {path}: is a directory, not a file")


def _output_file(option: str, path: pathlib.Path) -> None:
    """A file path that can be written, checked before the replay spends minutes on it."""
    if path.is_dir():
        example = path / ("plan.png" if option == "--plot" else "plan.csv")
        raise ValueError(f"{option} {path}: is a directory; name a file in it, e.g. {example}")
    parent = path.parent
    if not parent.exists():
        raise ValueError(f"{option} {path}: the directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{option} {path}: permission denied (cannot write there)")


def _plotting_available(path: pathlib.Path) -> None:
    try:
        import matplotlib  # noqa: F401 - only whether the plot extra is installed
    except ImportError:
        raise ValueError(f"--plot {path}: {NEEDS_PLOT_EXTRA}") from None


def _backtest(arguments: argparse.Namespace) -> int:
    # Everything a user can get wrong is checked before the replay, which takes minutes.
    if arguments.warmup_days is not None and not arguments.warmup_days >= 0:
        raise ValueError("--warmup-days must be >= 0")
    if arguments.node_provisioning_seconds is not None \
            and not 0 <= arguments.node_provisioning_seconds <= clinicalslo.MAX_NODE_PROVISIONING_SECONDS:
        raise ValueError(f"--node-provisioning-seconds must be between 0 and {clinicalslo.MAX_NODE_PROVISIONING_SECONDS}")
    if arguments.deferrable_replicas is not None and not 0 <= arguments.deferrable_replicas <= MAX_DEFERRABLE_REPLICAS:
        raise ValueError(f"--deferrable-replicas must be between 0 and {MAX_DEFERRABLE_REPLICAS}")
    _input_file("--trace", arguments.trace)
    _input_file("--slo", arguments.slo)
    if arguments.schedule is not None:
        _input_file("--schedule", arguments.schedule)
    _output_file("--output", arguments.output)
    if arguments.plot is not None:
        _output_file("--plot", arguments.plot)
        if arguments.plot.resolve() == arguments.output.resolve():
            raise ValueError(f"--plot {arguments.plot}: is the same file as --output")
        _plotting_available(arguments.plot)
    slo = manifests.load_one(clinicalslo.ClinicalSLO, arguments.slo)
    schedule = manifests.load_one(surgeschedule.SurgeSchedule, arguments.schedule) if arguments.schedule else None
    if schedule is not None and not schedule.spec.applies_to(slo.metadata.name, slo.metadata.labels):
        print(f"note: SurgeSchedule {schedule.metadata.name} does not select ClinicalSLO {slo.metadata.name}; "
              "using its surges anyway", file=sys.stderr)
    demand = trace.load(arguments.trace)
    warmup = arguments.warmup_days
    if warmup is None:
        warmup = slo.spec.forecast.history.total_seconds() / 86400
    intervals = replay.scored_intervals(demand, warmup)
    policy, _ = replay.engine_policy(slo.spec, demand.step, arguments.node_provisioning_seconds)
    total = intervals * replay.forecasting_runs(not arguments.no_references, policy)
    started = time.perf_counter()
    from tqdm import tqdm

    with tqdm(total=total, unit="interval", desc="replaying", disable=None, mininterval=0.5, file=sys.stderr) as bar:
        result = replay.replay(demand, slo.spec, schedule.spec if schedule else None, warmup,
                               progress=lambda _: bar.update(), with_references=not arguments.no_references,
                               node_provisioning_seconds=arguments.node_provisioning_seconds)
    elapsed = time.perf_counter() - started
    defer = schedule.spec.defer if schedule is not None else None
    held = (backtest_deferral.over_replay(defer, result, arguments.deferrable_replicas)
            if defer is not None and arguments.deferrable_replicas is not None else None)
    _written("--output", arguments.output, lambda: report.write_plan(result, arguments.output, held))
    print(f"{demand.path.name}: {intervals} intervals of {demand.step}s replayed in {elapsed:.1f}s "
          f"(warm-up {warmup:g} days); plan written to {arguments.output}")
    for note in result.notes:
        print(f"note: {note}")
    print()
    print(report.table(result))
    print()
    print(f"healthscale's reasons: {report.reasons(result)}")
    warm_up = report.warm_up(result)
    if warm_up is not None:
        print(warm_up)
    print(f"forecast calibration: {report.calibration(result).describe()}")
    if held is not None:
        print()
        print(report.deferral(held))
    elif defer is not None:
        print(f"note: {report.NEEDS_REPLICAS}")
    elif arguments.deferrable_replicas is not None:
        print("note: --deferrable-replicas is unused: no --schedule with spec.defer")
    if arguments.plot:
        _written("--plot", arguments.plot, lambda: report.plot(result, arguments.plot))
        print(f"plot written to {arguments.plot}")
    return 0


def _capacity(arguments: argparse.Namespace) -> int:
    from healthscale import ports
    from healthscale.adapters import prometheus
    from healthscale.domain import capacity
    from healthscale.service import capacity as learned

    since = _duration("--since", arguments.since, 3600, 90 * 86400)
    step = _duration("--step", arguments.step, 60, 86400)
    if since < 2 * step:
        raise ValueError(f"--since {arguments.since} must be at least two --step ({arguments.step})")
    _input_file("--slo", arguments.slo)
    if arguments.plot is not None:
        _output_file("--plot", arguments.plot)
        _plotting_available(arguments.plot)
    if arguments.replicas_query is not None and not arguments.replicas_query.strip():
        raise ValueError("--replicas-query must be PromQL returning the target's ready replicas")
    slo = manifests.load_one(clinicalslo.ClinicalSLO, arguments.slo)
    token = _bearer_token(arguments.prometheus_bearer_token_file)
    auth = prometheus.Auth(bearer_token=token,
                           ca_file=str(arguments.prometheus_ca_file) if arguments.prometheus_ca_file else None)
    with prometheus.Client(arguments.prometheus_url, auth, timeout=60.0) as client:
        try:
            observed, estimate = learned.estimate(client, slo, int(time.time()), since, step,
                                                  arguments.replicas_query)
        except ports.MetricsError as error:
            raise ValueError(f"Prometheus at {arguments.prometheus_url} ({error.reason}): {error}") from None
    print(learned.describe(estimate, slo, observed), end="")
    if arguments.plot is not None:
        _written("--plot", arguments.plot, lambda: learned.plot(estimate, slo, observed, arguments.plot))
        print(f"plot written to {arguments.plot}")
    found = estimate.outcome in (capacity.Outcome.OBSERVED, capacity.Outcome.NOT_OBSERVED)
    return 0 if found else EXIT_LEFT


def _node_warmup(arguments: argparse.Namespace) -> room.Settings | None:
    """The placeholders' ``room.Settings``, or None with --no-node-warmup."""
    from healthscale.service import room

    if not arguments.node_warmup:
        return None
    image = arguments.placeholder_image if arguments.placeholder_image is not None else room.DEFAULT_IMAGE
    priority = (arguments.placeholder_priority_class if arguments.placeholder_priority_class is not None
                else room.DEFAULT_PRIORITY_CLASS)
    if not image.strip() or any(character.isspace() for character in image):
        raise ValueError(f"--placeholder-image {image!r}: must be an image reference without spaces")
    if len(priority) > 253 or not re.fullmatch(clinicalslo.OBJECT_NAME, priority):
        raise ValueError(f"--placeholder-priority-class {priority!r}: must be a PriorityClass name "
                         "(lower-case letters, digits, '-' and '.', at most 253)")
    return room.Settings(image=image.strip(), priority_class=priority)


def _duration(option: str, text: str, least: int, most: int) -> int:
    from healthscale.api import durations

    try:
        seconds = int(durations.parse(text).total_seconds())
    except ValueError as error:
        raise ValueError(f"{option}: {error}") from None
    if not least <= seconds <= most:
        raise ValueError(f"{option} {text} must be between {durations.format(dt.timedelta(seconds=least))} and "
                         f"{durations.format(dt.timedelta(seconds=most))}")
    return seconds


def _written(option: str, path: pathlib.Path, write: Callable[[], None]) -> None:
    """Run ``write``; a file system refusal that the early check could not foresee names the option."""
    try:
        write()
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot write: {error.strerror or error}") from None


def _rules(arguments: argparse.Namespace) -> int:
    from healthscale.service import rules

    if arguments.output is not None:
        _output_file("--output", arguments.output)
    found: list[clinicalslo.ClinicalSLO] = []
    where: dict[tuple[str, str], pathlib.Path] = {}
    histograms = 0
    for path in arguments.slo:
        _input_file("--slo", path)
        documents = [document for document in manifests.load_documents(path)
                     if isinstance(document, dict) and document.get("kind") == clinicalslo.KIND]
        if not documents:
            raise ValueError(f"--slo {path}: no {clinicalslo.KIND} document in the file")
        for index, document in enumerate(documents):
            source = str(path) if len(documents) == 1 else f"{path} ({clinicalslo.KIND} {index + 1})"
            resource = manifests.parse(clinicalslo.ClinicalSLO, document, source=source)
            key = (resource.metadata.namespace, resource.metadata.name)
            if key in where:
                raise ValueError(f"--slo {source}: ClinicalSLO {'/'.join(key)} is also in {where[key]}")
            where[key] = path
            try:
                if not rules.slis(resource.spec, arguments.latency_bucket):
                    raise ValueError("it measures no objective: give indicators.errors and total, or "
                                     "objectives.latency with indicators.latencyHistogram or latencyGood")
            except ValueError as error:
                raise ValueError(f"--slo {source}: {error}") from None
            histograms += resource.spec.indicators.latency_histogram is not None
            found.append(resource)
    if arguments.latency_bucket is not None and not histograms:
        raise ValueError(f"--latency-bucket {arguments.latency_bucket}: no ClinicalSLO given reads "
                         "indicators.latencyHistogram")
    text = rules.render(found, arguments.format, arguments.latency_bucket)
    if arguments.output is None:
        sys.stdout.write(text)
        return 0
    _written("--output", arguments.output, lambda: arguments.output.write_text(text, encoding="utf-8"))
    print(f"{len(found)} ClinicalSLO(s): rules written to {arguments.output}", file=sys.stderr)
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


def _release(arguments: argparse.Namespace) -> int:
    import kubernetes

    from healthscale import ports
    from healthscale.adapters import kube
    from healthscale.service import release

    stop = None
    if arguments.stop_operator is not None:
        namespace, _, name = arguments.stop_operator.partition("/")
        if not namespace or not name:
            raise ValueError(f"--stop-operator {arguments.stop_operator!r} must be NAMESPACE/DEPLOYMENT")
        stop = (namespace, name)
    _load_cluster_config()
    slos, workloads, placeholders = kube.ClinicalSLOs(), kube.Workloads(), kube.Placeholders()
    left = False
    try:
        if stop is not None:
            if arguments.dry_run:
                print(f"would scale Deployment {stop[0]}/{stop[1]} to 0 and wait for its pods")
            else:
                operator = kube.OperatorDeployment()
                try:
                    print(release.stop_operator(operator, *stop))
                except (ports.NotFound, ports.ApiError) as error:
                    print(f"could not stop the operator, releasing anyway: {error}")
                finally:
                    operator.close()
        try:
            items = release.select(release.listed(slos, arguments.namespaces), arguments.only_deleting)
        except (ports.NotFound, ports.ApiError) as error:
            print(f"error: could not list ClinicalSLOs: {error}", file=sys.stderr)
            return EXIT_LEFT
        for item in items:
            outcome = (release.plan(item) if arguments.dry_run
                       else release.release_one(workloads, slos, item, placeholders=placeholders))
            print(outcome.line(), flush=True)
            left = left or (not arguments.dry_run and not outcome.ok)
        print(f"{len(items)} ClinicalSLO(s){' (dry run)' if arguments.dry_run else ''}"
              f"{'; something was left, see above' if left else ''}")
        if arguments.deferral:
            left = _release_deferrals(arguments) or left
    finally:
        slos.close()
        workloads.close()
        placeholders.close()
    return EXIT_LEFT if left and not arguments.exit_zero else 0


def _release_deferrals(arguments: argparse.Namespace) -> bool:
    """Put back what SurgeSchedules deferred and remove their finalizer; whether anything was left."""
    from healthscale import ports
    from healthscale.adapters import deferrables
    from healthscale.api import surgeschedule
    from healthscale.service import deferral

    namespaces = tuple(arguments.namespaces)
    port = deferrables.Deferrables(options=("keda",) if arguments.keda else (), namespaces=namespaces)
    try:
        if arguments.dry_run:
            try:
                bodies = port.schedules()
            except (ports.NotFound, ports.ApiError) as error:
                print(f"error: could not list SurgeSchedules: {error}", file=sys.stderr)
                return True
            held = [(body, surgeschedule.read_status(body.get("status"))[0]) for body in bodies]
            for body, status in held:
                for record in status.deferred:
                    print(f"SurgeSchedule {body['metadata'].get('namespace')}/{body['metadata'].get('name')}: would "
                          f"restore {record.kind} {record.name} {record.field} to {record.original.wire() or 'unset'}")
            print(f"{sum(len(status.deferred) for _, status in held)} deferred object(s) (dry run)")
            return False
        deferrer = deferral.Deferrer(port, port.kinds, serves=lambda namespace: not namespaces or namespace in namespaces)
        try:
            outcomes = deferrer.release_all()
        except (ports.NotFound, ports.ApiError) as error:
            print(f"error: could not list SurgeSchedules: {error}", file=sys.stderr)
            return True
        left = False
        for outcome in outcomes:
            for event in outcome.events:
                print(f"SurgeSchedule {outcome.namespace}/{outcome.name}: {event.reason}: {event.message}", flush=True)
                for involved in event.on:
                    try:
                        port.post_event(involved, event.type, event.reason, event.message)
                    except (ports.NotFound, ports.ApiError) as error:
                        print(f"  (Event not posted: {error})")
            for problem in outcome.problems:
                print(f"SurgeSchedule {outcome.namespace}/{outcome.name}: {problem}", flush=True)
            left = left or bool(outcome.problems) or any(event.reason == "RestoreFailed" for event in outcome.events)
        print(f"{len(outcomes)} SurgeSchedule(s) with deferred work{'; something was left, see above' if left else ''}")
        return left
    finally:
        port.close()


def _kubeconfig_path() -> pathlib.Path | None:
    """The kubeconfig kubectl would read (first of $KUBECONFIG, else ~/.kube/config), if there is one."""
    named = [part for part in os.environ.get("KUBECONFIG", "").split(os.pathsep) if part]
    for candidate in [pathlib.Path(part).expanduser() for part in named] or [pathlib.Path("~/.kube/config").expanduser()]:
        if candidate.is_file():
            return candidate
    return None


def _cluster_problem(error: Exception) -> ValueError:
    """What to do when no cluster configuration loads: where credentials come from, or what is wrong in them."""
    path = _kubeconfig_path()
    if path is None:
        return ValueError(NO_CLUSTER)
    return ValueError(f"cannot use the kubeconfig {path}: {error}")


def _load_cluster_config() -> None:
    """Load credentials as kubectl does (in a pod: its ServiceAccount); ValueError saying how to provide them."""
    import kubernetes

    from healthscale.adapters import kube

    try:
        kube.load_config()
    except (kubernetes.config.ConfigException, OSError) as error:
        raise _cluster_problem(error) from None


def _explain(arguments: argparse.Namespace) -> int:
    from healthscale import explain, ports
    from healthscale.adapters import kube

    namespace, _, name = arguments.name.partition("/")
    if not namespace or not name or "/" in name:
        raise ValueError(f"explain {arguments.name!r}: name the ClinicalSLO as NAMESPACE/NAME, e.g. ehr/ed-triage-chart")
    _load_cluster_config()
    import kubernetes

    api = kube.Api()
    listed: dict[str, object] = {}
    try:
        # A list by name, not a get: the operator's own RBAC lists ClinicalSLOs, so this also runs in its pod.
        listed = api.json(f"read ClinicalSLO {namespace}/{name}",
                          kubernetes.client.CustomObjectsApi(api.client).list_namespaced_custom_object,
                          kube.GROUP, kube.VERSION, namespace, "clinicalslos", field_selector=f"metadata.name={name}")
    except ports.NotFound:
        pass  # no such resource: the CRDs are not installed
    except ports.ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    finally:
        api.client.close()  # type: ignore[no-untyped-call]
    found = listed.get("items")
    items = [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []
    if not items:
        print(f"error: ClinicalSLO {namespace}/{name} not found (kubectl get clinicalslos -n {namespace} lists "
              "them; if that fails too, the CRDs are not installed)", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(explain.describe(items[0], dt.datetime.now(dt.timezone.utc)), end="")
    return 0


def _bearer_token(path: pathlib.Path | None) -> str | None:
    """The token in ``--prometheus-bearer-token-file``, or None when none is given."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ValueError(f"--prometheus-bearer-token-file: cannot read {error.filename}: {error.strerror}") from None


def _run(arguments: argparse.Namespace) -> int:
    import kubernetes

    from healthscale.runtime import operator, residency

    token = _bearer_token(arguments.prometheus_bearer_token_file)
    _load_cluster_config()  # before Kopf starts: no credentials is a message, not a ConfigException traceback
    try:
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
            pod_deletion_cost=arguments.pod_deletion_cost,
            prometheus_rules=arguments.prometheus_rules,
            keda=arguments.keda,
            deferral=arguments.deferral,
            deferral_seconds=_interval("--deferral-seconds", arguments.deferral_seconds),
            node_warmup=_node_warmup(arguments),
            residency=residency.Config(
                region_label=_region_label(arguments.region_label),
                default_regions=residency_rules.parse_regions(arguments.default_allowed_regions),
                evict=arguments.residency_evict,
                enabled=arguments.residency,
                allowed_regions=residency_rules.parse_regions(arguments.allowed_regions),
                audit_seconds=_interval("--residency-audit-seconds", arguments.residency_audit_seconds),
            ),
            webhook=_webhook(arguments),
        ))
    except kubernetes.config.ConfigException as error:
        raise _cluster_problem(error) from None


def _webhook(arguments: argparse.Namespace) -> webhook.Config:
    from healthscale.api import durations
    from healthscale.runtime import webhook
    from healthscale.service import admission

    service = None
    if arguments.webhook_service:
        namespace, _, name = arguments.webhook_service.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"--webhook-service {arguments.webhook_service!r} must be NAMESPACE/NAME")
        service = (namespace, name)
    secret = None
    if arguments.webhook_cert_secret:
        namespace, _, name = arguments.webhook_cert_secret.rpartition("/")
        if not name or "/" in namespace:
            raise ValueError(f"--webhook-cert-secret {arguments.webhook_cert_secret!r} must be NAME or NAMESPACE/NAME")
        secret = (namespace or webhook.own_namespace(), name)
    try:
        lifetime = durations.parse(arguments.webhook_cert_lifetime).total_seconds()
    except ValueError as error:
        raise ValueError(f"--webhook-cert-lifetime: {error}") from None
    if lifetime < 60:
        raise ValueError(f"--webhook-cert-lifetime {arguments.webhook_cert_lifetime} must be at least 1m")
    admission.served_namespaces(tuple(arguments.namespaces))  # a pattern no namespace can match fails here, clearly
    return webhook.Config(port=_port("--webhook-port", arguments.webhook_port), addr=arguments.webhook_addr,
                          host=arguments.webhook_host, service=service,
                          configuration_name=arguments.webhook_configuration,
                          cert_source=arguments.webhook_cert_source, cert_secret=secret, cert_lifetime=lifetime,
                          namespaces=tuple(arguments.namespaces))


def _region_label(label: str) -> str:
    if not label.strip():
        raise ValueError("--region-label must name a node label, e.g. topology.kubernetes.io/region")
    return label.strip()


def _interval(option: str, seconds: float) -> float:
    if not 1.0 <= seconds <= 86400.0:
        raise ValueError(f"{option} {seconds:g} must be between 1 and 86400 seconds")
    return seconds


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
        if arguments.command == "release":
            return _release(arguments)
        if arguments.command == "explain":
            return _explain(arguments)
        if arguments.command == "rules":
            return _rules(arguments)
        if arguments.command == "capacity":
            return _capacity(arguments)
        return _crds(arguments)
    except ValueError as error:  # ManifestError, TraceError and bad options all say what and where
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
