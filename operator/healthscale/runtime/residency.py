"""Data residency in the Kopf runtime: the residency step of every ClinicalSLO cycle.

- ``run_cycle`` is what the ClinicalSLO timer calls instead of ``cycle.run``: bound the regions by
  the namespace's, enforce the region requirement, plan and scale, audit where the pods run
  (``service.residency.run_cycle``), and publish the residency metrics. With residency off
  (``--no-residency``) a ClinicalSLO that names regions is not scaled (``service.residency.disabled``).
- ``warn_if_untrusted``: the start-up WARNING when the region label is one kubelets can set.

The audit of every pod in enforced namespaces is ``runtime.audit``'s loop.

The admission webhook is not Kopf's: ``runtime.webhook`` serves it from a thread of its own.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from healthscale.adapters import placement
from healthscale.api import clinicalslo, surgeschedule
from healthscale.domain import residency as rules
from healthscale.runtime import metrics
from healthscale.service import cycle
from healthscale.service import residency

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Config:
    """The residency settings of ``healthscale run``."""

    region_label: str = rules.DEFAULT_REGION_LABEL
    default_regions: tuple[str, ...] = ()
    evict: bool = False
    enabled: bool = True
    """False (--no-residency): no template writes, no audit; ClinicalSLOs with residency are not scaled."""
    allowed_regions: tuple[str, ...] = ()
    """The cluster-wide allow-list (--allowed-regions); empty: none."""
    audit_seconds: float = 60.0
    """How often the namespace audit (runtime/audit.py) looks at every pod in enforced namespaces."""

    def settings(self) -> residency.Settings:
        return residency.Settings(self.region_label, self.default_regions, self.evict, self.allowed_regions)


@dataclasses.dataclass
class Runtime:
    """Residency's share of Kopf's memo."""

    config: Config
    placement: placement.Placement


def warn_if_untrusted(config: Config) -> None:
    """Say loudly at start-up when the region label is one kubelets can set on their own Node."""
    trusted, message = residency.label_trust(config.region_label)
    if not trusted:
        log.warning("RESIDENCY IS ONLY AS GOOD AS THE REGION LABEL: %s. Every ClinicalSLO with residency reports "
                    "RegionLabelTrusted=False until then.", message)


def run_cycle(memo: Any, slo: clinicalslo.ClinicalSLO, schedules: list[surgeschedule.SurgeSchedule], now: int,
              ports_: cycle.Ports, memory: cycle.Memory, status: clinicalslo.ClinicalSLOStatus,
              dry_run: bool) -> cycle.Result:
    """One ClinicalSLO cycle with residency (a plain ``cycle.run`` when residency is not configured)."""
    runtime = memo.get("residency")
    if not isinstance(runtime, Runtime) or not runtime.config.enabled:
        if slo.spec.residency is not None and slo.spec.residency.regions:
            return residency.disabled(slo, status, now)
        return cycle.run(slo, schedules, now, ports_, memory, status, dry_run)
    result, outcome = residency.run_cycle(slo, schedules, now, ports_, runtime.placement, runtime.config.settings(),
                                          memory, status, dry_run)
    metrics.record_residency(slo.metadata.namespace, slo.metadata.name, outcome)
    return result


def regions(memo: Any, slo: clinicalslo.ClinicalSLO) -> rules.Policy | None:
    """The ClinicalSLO's own regions on this operator's region label (placeholders require them on
    top of the target's node affinity, which carries the namespace's bounds)."""
    runtime = memo.get("residency")
    label = runtime.config.region_label if isinstance(runtime, Runtime) else rules.DEFAULT_REGION_LABEL
    return rules.Policy.of(slo.spec, label)


def make_runtime(config: Config) -> Runtime:
    """After ``kube.load_config()``: the residency runtime."""
    return Runtime(config, placement.Placement())
