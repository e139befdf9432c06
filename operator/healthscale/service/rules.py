"""Prometheus recording and alert rules for a ClinicalSLO's objectives, like Sloth's and Pyrra's.

For each measured objective (availability from errors/total, latency from latencyHistogram or
latencyGood/total) this owns:

- recording rules ``healthscale:sli_error:ratio_rate<window>``: the SLI's error ratio over every
  window of ``slo.BURN_WINDOWS`` and over ``objectives.window``, labelled journey, namespace,
  clinicalslo, objective and criticality. Windows under ``slo.SLOW_WINDOW_SECONDS`` (5m to 2h) are
  evaluated at the global interval with the alerts; 6h and longer, in a group of their own every
  ``slo.SLOW_INTERVAL``: they slide slowly, and evaluating a 3-day subquery every minute for every
  objective cost Prometheus more than the subqueries the rules replace (BENCHMARKS.md);
- two multi-window, multi-burn-rate alerts (``ClinicalSLOErrorBudgetBurn``): severity ``page`` for
  the fast pairs of ``slo.BURN_WINDOWS`` and ``ticket`` for the slow ones.

The rules compute exactly the operator's ratios: the same indicator PromQL (``cycle.Sli``,
``cycle.histogram_sli``), averaged with the same subqueries (``avg_over_time((X)[Ns:R])``, R from
``slo.resolution``) and read the way ``slo.Counts`` reads them: a missing errors series is no
errors, a missing good series or no events at all is no ratio. Each side is summed to one series
(the operator requires one). Pure: this module reads nothing and writes nothing; in the service layer only to share the
reconcile's query builders.

Text from the spec never becomes PromQL or template source: the journey is a label value (quoted by
the YAML dump), annotations read it back with ``{{ $labels.journey }}``, and the name and namespace
are quoted as PromQL strings in the alerts' selectors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from healthscale.api import clinicalslo, durations
from healthscale.domain import slo
from healthscale.service import cycle

PROMETHEUS_RULE = "prometheusrule"
RULE_FILE = "rules"
FORMATS = (PROMETHEUS_RULE, RULE_FILE)
ALERT = "ClinicalSLOErrorBudgetBurn"
PAGE, TICKET = "page", "ticket"
LABELS = ("journey", "namespace", "clinicalslo", "objective", "criticality")


def prometheus_float(value: float) -> str:
    """``value`` as Prometheus 3 stores a classic histogram's ``le``: Go's shortest ``%g``, with
    ``.0`` added to whole numbers (1 -> "1.0", 1.5 -> "1.5", 0.00001 -> "1e-05", 1e6 -> "1e+06")."""
    sign, digits, exponent = decimal.Decimal(repr(float(value))).normalize().as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"{value} is not a finite number")
    text = "".join(map(str, digits))
    power = len(digits) + exponent - 1
    if power < -4 or power >= 6:  # Go's %g with the shortest precision switches to %e here
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        shown = f"{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    elif exponent >= 0:
        shown = text + "0" * exponent + ".0"
    else:
        point = len(text) + exponent
        shown = (text[:point] or "0") + "." + "0" * max(0, -point) + text[max(0, point):]
    return ("-" if sign else "") + shown


def _percent(value: float) -> decimal.Decimal:
    """A percentage as written (99.9, not 99.90000000000001 after arithmetic)."""
    return decimal.Decimal(repr(value))


def _decimal_text(value: decimal.Decimal) -> str:
    """95.0 -> "95", 0.10 -> "0.1": fixed-point, without trailing zeros."""
    return f"{value:f}".rstrip("0").rstrip(".") if "." in f"{value:f}" else f"{value:f}"


def allowed_ratio(percent: float) -> str:
    """The error ratio an objective allows, in decimal: 99.9 -> "0.001" (no float noise)."""
    return _decimal_text((100 - _percent(percent)) / 100)


def template_literal(text: str) -> str:
    """``text`` as Go template source that prints itself (alert labels are templates)."""
    return text.replace("{{", '{{ "{{" }}')


def slis(spec: clinicalslo.ClinicalSLOSpec, latency_bucket: str | None = None) -> list[cycle.Sli]:
    """The objectives the spec measures, as the reconcile builds them; a latencyHistogram is read at
    ``latency_bucket`` (the ``le`` label value exactly as Prometheus has it), by default at
    thresholdSeconds as ``prometheus_float`` spells it. ValueError when the bucket is not the threshold."""
    found: list[cycle.Sli] = []
    indicators, latency = spec.indicators, spec.objectives.latency
    if indicators.errors is not None and indicators.total is not None:
        found.append(cycle.Sli(slo.AVAILABILITY, spec.objectives.availability, indicators.errors, indicators.total,
                               good=False))
    if latency is not None and indicators.latency_good is not None and indicators.total is not None:
        found.append(cycle.Sli(slo.LATENCY, latency.percentile, indicators.latency_good, indicators.total, good=True))
    elif latency is not None and indicators.latency_histogram is not None:
        le = latency_bucket if latency_bucket is not None else prometheus_float(latency.threshold_seconds)
        if slo.bucket_at(latency.threshold_seconds, [le]) is None:
            raise ValueError(f"the latency bucket le={le!r} is not objectives.latency.thresholdSeconds "
                             f"{latency.threshold_seconds:g} (within {slo.BUCKET_TOLERANCE:.1%})")
        found.append(cycle.histogram_sli(indicators.latency_histogram, latency.percentile, le))
    return found


def _average(indicator: str, seconds: int, resolution: str) -> str:
    # The very subquery cycle._Averages sends, summed to one series.
    return f"sum(avg_over_time(({indicator})[{seconds}s:{resolution}]))"


def error_ratio(sli: cycle.Sli, seconds: int, resolution: str) -> str:
    """PromQL for the SLI's error ratio over ``seconds``, as ``slo.Counts.error_ratio`` computes it."""
    total = f"({_average(sli.total, seconds, resolution)} > 0)"  # no events: no ratio
    if sli.good:
        return f"clamp(1 - {_average(sli.events, seconds, resolution)} / {total}, 0, 1)"
    # No errors series (e.g. no 5xx yet) is no errors, as the operator reads it.
    return f"clamp(({_average(sli.events, seconds, resolution)} or vector(0)) / {total}, 0, 1)"


@dataclasses.dataclass(frozen=True)
class Objective:
    """One measured objective of one ClinicalSLO, with what its rules say about it."""

    resource: clinicalslo.ClinicalSLO
    sli: cycle.Sli

    @property
    def labels(self) -> dict[str, str]:
        meta, spec = self.resource.metadata, self.resource.spec
        return {"journey": spec.journey, "namespace": meta.namespace, "clinicalslo": meta.name,
                "objective": self.sli.objective, "criticality": spec.criticality.value}

    @property
    def window_seconds(self) -> int:
        return int(self.resource.spec.objectives.window.total_seconds())

    def selector(self) -> str:
        meta = self.resource.metadata
        return (f"{{namespace={slo.promql_string(meta.namespace)}, clinicalslo={slo.promql_string(meta.name)}, "
                f"objective={slo.promql_string(self.sli.objective)}}}")

    def stated(self) -> str:
        """The objective in words, e.g. "95% of requests under 1.5s (bucket le=1.5) over 28d"."""
        window = durations.format(self.resource.spec.objectives.window)
        latency = self.resource.spec.objectives.latency
        if self.sli.objective == slo.LATENCY and latency is not None:
            bucket = f" (bucket le={self.sli.bucket})" if self.sli.bucket else ""
            return (f"{_decimal_text(_percent(self.sli.percent))}% of requests under {latency.threshold_seconds:g}s"
                    f"{bucket} over {window}")
        return f"{_decimal_text(_percent(self.sli.percent))}% of requests succeed over {window}"


def _pair(objective: Objective, pair: slo.BurnWindow) -> str:
    threshold = f"({pair.factor:g} * {allowed_ratio(objective.sli.percent)})"
    return (f"(\n  {slo.record_name(pair.long)}{objective.selector()} >= {threshold}\n"
            f"  and\n  {slo.record_name(pair.short)}{objective.selector()} >= {threshold}\n)")


def _alert(objective: Objective, severity: str) -> dict[str, Any]:
    pairs = [pair for pair in slo.BURN_WINDOWS if pair.fast == (severity == PAGE)]
    window = durations.format(objective.resource.spec.objectives.window)
    allowed = f"{_decimal_text(100 - _percent(objective.sli.percent))}%"
    spends = "; ".join(
        f"{pair.factor:g}x over {_label(pair.long)} and {_label(pair.short)} (spends "
        f"{pair.factor * pair.long / objective.window_seconds:.1%} of the {window} budget in {_label(pair.long)})"
        for pair in pairs)
    speed = "fast" if severity == PAGE else "slowly"
    # Only validated numbers are template source; the spec's text is read back through $labels.
    return {
        "alert": ALERT,
        "expr": "\n".join(_pair(objective, pair) for pair in pairs[:1]) + "".join(
            f"\nor\n{_pair(objective, pair)}" for pair in pairs[1:]),
        # The series' labels, repeated so that each alert rule is distinct (promtool's lint).
        "labels": {"severity": severity, "objective": objective.sli.objective,
                   "namespace": template_literal(objective.resource.metadata.namespace),
                   "clinicalslo": template_literal(objective.resource.metadata.name)},
        "annotations": {
            "summary": f"{{{{ $labels.journey }}}}: the {objective.sli.objective} objective is burning its error "
                       f"budget {speed}",
            "description": (
                f"ClinicalSLO {{{{ $labels.namespace }}}}/{{{{ $labels.clinicalslo }}}} ({{{{ $labels.criticality }}}}): "
                f"the {objective.sli.objective} objective ({objective.stated()}) allows {allowed} of requests to fail it. "
                f"{severity.capitalize()} when both windows of a pair burn at least: {spends}."),
        },
    }


def _label(seconds: int) -> str:
    return durations.format(dt.timedelta(seconds=seconds))


def groups(resource: clinicalslo.ClinicalSLO, latency_bucket: str | None = None) -> list[dict[str, Any]]:
    """The rule groups of every objective the ClinicalSLO measures (none when it measures none)."""
    found: list[dict[str, Any]] = []
    meta = resource.metadata
    for sli in slis(resource.spec, latency_bucket):
        objective = Objective(resource, sli)
        name = f"healthscale-{meta.namespace}-{meta.name}-{sli.objective}"
        windows = sorted({*slo.WINDOW_SECONDS, objective.window_seconds})

        def recorded(seconds: int) -> dict[str, Any]:
            return {"record": slo.record_name(seconds), "expr": error_ratio(sli, seconds, slo.resolution(seconds)),
                    "labels": objective.labels}
        fast = [recorded(seconds) for seconds in windows if seconds < slo.SLOW_WINDOW_SECONDS]
        slow = [recorded(seconds) for seconds in windows if seconds >= slo.SLOW_WINDOW_SECONDS]
        found.append({"name": name, "rules": [*fast, _alert(objective, PAGE), _alert(objective, TICKET)]})
        if slow:
            found.append({"name": f"{name}-slow", "interval": slo.SLOW_INTERVAL, "rules": slow})
    return found


def rule_file(all_groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A rule file as Prometheus' rule_files and promtool read it."""
    return {"groups": list(all_groups)}


def prometheus_rule(resource: clinicalslo.ClinicalSLO, its_groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A PrometheusRule (Prometheus Operator) of the same name and namespace as the ClinicalSLO."""
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": resource.metadata.name, "namespace": resource.metadata.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "healthscale"}},
        "spec": rule_file(its_groups),
    }


def render(resources: Sequence[clinicalslo.ClinicalSLO], output_format: str,
           latency_bucket: str | None = None) -> str:
    """YAML for the ClinicalSLOs' rules: one rule file, or one PrometheusRule document per ClinicalSLO."""
    per_resource = [groups(resource, latency_bucket) for resource in resources]
    if output_format == RULE_FILE:
        documents = [rule_file([group for its in per_resource for group in its])]
    else:
        documents = [prometheus_rule(resource, its) for resource, its in zip(resources, per_resource, strict=True)]
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, with multi-line PromQL as literal blocks (readable, diffable)."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _text)
