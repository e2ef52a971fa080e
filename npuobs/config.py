"""One loaded configuration feeds every artifact (kubernetes-mixin's ``config.libsonnet``).

``Config`` is the SLO spec file (SLOs, fleet policy and its ``thresholds:`` section, see
``alerts/slo.yaml``) plus the deployment settings that are flags rather than file content: the
burn-rate policy, where runbooks and Grafana's datasources live, Alertmanager's routing keys and
the executive dashboard's prices. Alert rules (``npuobs.alerting.generate``), dashboards
(``npuobs.dashboards``), game days, the demo and ``npuobs slo report`` all take one ``Config``,
so a threshold set in the spec moves the alert and the dashboard's red line together.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from npuobs import resources
from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import AlertmanagerOptions
from npuobs.alerting.burnrate import DEFAULT_POLICY
from npuobs.alerting.slo_spec import Spec, load_spec
from npuobs.thresholds import Thresholds

TEMPO_UID = "tempo"


def tempo_explore_url() -> str:
    """Grafana Explore on the provisioned Tempo datasource, with ``{trace_id}`` where the ID goes.

    Traces reach Tempo over OTLP; Tempo has no UI of its own, Grafana's Explore is it.
    """
    pane = {"datasource": TEMPO_UID,
            "queries": [{"refId": "A", "datasource": {"type": "tempo", "uid": TEMPO_UID},
                         "queryType": "traceql", "query": "TRACE_ID"}],
            "range": {"from": "now-1h", "to": "now"}}
    encoded = urllib.parse.quote(json.dumps(pane, separators=(",", ":")), safe="")
    return "/explore?orgId=1&left=" + encoded.replace("TRACE_ID", "{trace_id}")


@dataclass(frozen=True)
class Config:
    """Everything the generators read besides the metric schema."""

    spec: Spec
    # alerting
    policy: str = DEFAULT_POLICY
    runbook_base_url: str = cv.DEFAULT_RUNBOOK_BASE_URL
    alertmanager: AlertmanagerOptions = field(default_factory=AlertmanagerOptions)
    # dashboards
    # the executive dashboard's default prices; None: the spec's thresholds (energy_kwh_cost,
    # device_hour_cost), the prices the cost-anomaly alert judges, so the panel and the alert agree
    cost_per_kwh: float | None = None
    cost_per_device_hour: float | None = None
    currency_unit: str = "currencyUSD"
    datasource_name: str = "Prometheus"
    datasource_uid: str = "prometheus"
    prometheus_url: str = "http://prometheus:9090"
    scrape_interval: str = "15s"  # the datasource's timeInterval: Grafana sizes $__rate_interval from it
    tempo_url: str = "http://tempo:3200"
    trace_url: str = field(default_factory=tempo_explore_url)  # one trace's URL; {trace_id} = the exemplar's ID

    @classmethod
    def load(cls, spec_path: Path | None = None, **settings: Any) -> Config:
        """The spec at ``spec_path`` (default: the packaged ``alerts/slo.yaml``) with ``settings``.

        Raises :class:`npuobs.alerting.slo_spec.SpecError` naming the file and key of a bad value.
        """
        return cls(spec=load_spec(spec_path or resources.default_slo_spec()), **settings)

    @property
    def thresholds(self) -> Thresholds:
        """The shared thresholds: defaults from ``npuobs.thresholds`` under the spec's ``thresholds:``."""
        return self.spec.thresholds

    @property
    def kwh_price(self) -> float:
        """Energy price per kWh the executive dashboard starts from."""
        return self.thresholds.energy_kwh_cost if self.cost_per_kwh is None else self.cost_per_kwh

    @property
    def device_hour_price(self) -> float:
        """Price of one device-hour the executive dashboard starts from."""
        return self.thresholds.device_hour_cost if self.cost_per_device_hour is None else self.cost_per_device_hour

    @cached_property
    def known_alerts(self) -> frozenset[str]:
        """Names of the alerts the rules generated from this config define (runbook links must name one)."""
        from npuobs.alerting.generate import build_rules  # generate imports this module

        return frozenset(a.name for a in build_rules(self).alerts)
