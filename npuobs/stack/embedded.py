"""The embedded stack: simulated fleet + exporters + real Prometheus + Alertmanager + PagerDuty sink.

What ``npuobs demo`` runs and what game days and end-to-end tests drive. Prometheus evaluates the
committed generated rules (``alerts/generated``, regenerated here from ``alerts/slo.yaml`` with the
same generator so an installed package works too), Alertmanager routes with the generated config
pointed at a local PagerDuty Events v2 sink. Only timing differs from production where a caller
asks for it (``Timing``): scrape/eval intervals, Alertmanager grouping waits, and an optional cap on
alert ``for:`` durations so a drill does not wait ten minutes for a ticket.

Prometheus and Alertmanager are optional: when their binaries are missing the stack runs the
fleet and exporters only and says so (``missing``).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import AlertmanagerOptions, RoutingKey
from npuobs.alerting.generate import render
from npuobs.binaries import find_binary
from npuobs.config import Config
from npuobs.durations import format_duration, parse_duration
from npuobs.simulator.fleet import FleetConfig
from npuobs.stack.alertmanager import AlertmanagerServer
from npuobs.stack.fleetrun import FleetRunner
from npuobs.stack.pagerduty_sink import PagerDutySink
from npuobs.stack.prometheus import PrometheusServer, scrape_config

# Demo routing keys: PagerDuty integration keys are 32 characters; these only reach the local sink.
PAGE_KEY = "npuobsdemopage00npuobsdemopage00"
TICKET_KEY = "npuobsdemotick00npuobsdemotick00"


@dataclass(frozen=True)
class Timing:
    scrape_interval: str = "5s"
    evaluation_interval: str = "5s"
    group_wait: str = "10s"
    group_interval: str = "30s"
    for_cap: str | None = None  # cap every alert's ``for:`` at this (None: generated values)
    exporter_interval: float = 1.0  # exporter sampling interval, seconds


def cap_for(rules_yaml: str, cap: str) -> str:
    """Rewrite every ``for:`` in a rule file to at most ``cap`` (expressions stay untouched)."""
    doc = yaml.safe_load(rules_yaml)
    limit = parse_duration(cap)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            if "for" in rule and parse_duration(rule["for"]) > limit:
                rule["for"] = format_duration(limit)
    return yaml.safe_dump(doc, sort_keys=False, width=1_000)


@dataclass
class EmbeddedStack:
    fleet_config: FleetConfig = field(default_factory=FleetConfig.default)
    timing: Timing = field(default_factory=Timing)
    workdir: Path | None = None
    state_dir: Path | None = None  # simulator state (default: <workdir>/sim)
    speed: float = 1.0
    remediate_url: str | None = None  # also route alerts to this npuobs remediate webhook (docs/remediation.md)
    config: Config = field(default_factory=Config.load)  # SLO spec + thresholds the rules come from
    runner: FleetRunner | None = None
    prometheus: PrometheusServer | None = None
    alertmanager: AlertmanagerServer | None = None
    sink: PagerDutySink | None = None
    missing: tuple[str, ...] = ()
    _own_workdir: bool = False

    def start(self) -> EmbeddedStack:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="npuobs-demo-"))
            self._own_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.state_dir or self.workdir / "sim"
        try:
            self.runner = FleetRunner(self.state_dir, self.fleet_config, speed=self.speed,
                                      interval=self.timing.exporter_interval).start()
            self.missing = tuple(b for b in ("prometheus", "prometheus-alertmanager") if not find_binary(b))
            if not self.missing:
                self._start_alerting()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_alerting(self) -> None:
        assert self.workdir is not None and self.runner is not None
        self.sink = PagerDutySink(log_path=self.workdir / "pagerduty-events.jsonl").start()
        files = self.render_alerting()
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir(exist_ok=True)
        rule_paths = []
        for name in cv.RULE_FILES:
            path = rules_dir / name
            content = files[name]
            path.write_text(cap_for(content, self.timing.for_cap) if self.timing.for_cap else content)
            rule_paths.append(path)
        am_path = self.workdir / "alertmanager.yaml"
        am_config = files[cv.ALERTMANAGER_FILE]
        if self.remediate_url:
            from npuobs.remediation.wiring import with_webhook

            am_config = yaml.safe_dump(with_webhook(yaml.safe_load(am_config), self.remediate_url), sort_keys=False)
        am_path.write_text(am_config)
        self.alertmanager = AlertmanagerServer.start(am_path, self.workdir / "alertmanager")
        targets = list(self.runner.targets.values())
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.timing.scrape_interval,
                       "evaluation_interval": self.timing.evaluation_interval},
            "scrape_configs": [scrape_config(cv.DEFAULT_EXPORTER_JOB, targets, self.timing.scrape_interval)],
        }
        # exemplar storage: the latency histograms' trace ids, as the compose stack and dashboards expect
        self.prometheus = PrometheusServer.start(config, self.workdir / "prometheus", rule_files=rule_paths,
                                                 alertmanagers=[self.alertmanager.url],
                                                 extra_args=["--enable-feature=exemplar-storage"])

    def render_alerting(self) -> dict[str, str]:
        """The generated rules and Alertmanager config, with routing pointed at the local sink."""
        assert self.sink is not None
        am = AlertmanagerOptions(page_key=RoutingKey(key=PAGE_KEY), ticket_key=RoutingKey(key=TICKET_KEY),
                                 pagerduty_url=self.sink.enqueue_url, group_wait=self.timing.group_wait,
                                 group_interval=self.timing.group_interval)
        return render(replace(self.config, alertmanager=am))

    def inject(self, kind: str, node: str = "", device: str = "", duration: float | None = None,
               reason: str = "") -> Any:
        assert self.runner is not None
        return self.runner.inject(kind, node=node, device=device, duration=duration, reason=reason)

    def clear(self, **filters: Any) -> Any:
        assert self.runner is not None
        return self.runner.clear(**filters)

    def pages(self) -> list[dict[str, Any]]:
        return self.sink.events(PAGE_KEY) if self.sink else []

    def tickets(self) -> list[dict[str, Any]]:
        return self.sink.events(TICKET_KEY) if self.sink else []

    def stop(self) -> None:
        """Stop everything (reverse order), free ports; safe to call twice."""
        for part in (self.prometheus, self.alertmanager):
            if part is not None:
                part.stop()
        if self.sink is not None:
            self.sink.stop()
        if self.runner is not None:
            self.runner.stop()
        self.prometheus = self.alertmanager = self.sink = self.runner = None
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
