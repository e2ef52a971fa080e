"""Grade a drill: did the expected alert fire, at the expected severity, reach the expected PagerDuty
receiver with the right runbook, and what else fired?

Inputs are observations, not the stack: alerts as Prometheus reported them (first seen pending,
firing, gone) and PagerDuty events as the sink received them. So the grading is a pure function,
tested without any server, and the same for any way of producing the observations.

A PagerDuty event is tied to alerts through Alertmanager's default ``pagerduty.default.instances``
template in ``custom_details.firing``, which lists every alert of the group with all its labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npuobs import resources
from npuobs.alerting import conventions as cv
from npuobs.gameday.scenarios import Expect, Scenario
from npuobs.simulator.fleet import FleetConfig
from npuobs.simulator.hardware import CATALOGUE

_LABEL_LINE = re.compile(r"^\s*-\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*(.*)$")


@dataclass
class SeenAlert:
    """One alert instance (name + labels) as polled from Prometheus, with wall-clock first sightings."""

    labels: dict[str, str]
    annotations: dict[str, str]
    first_pending: float | None = None
    first_firing: float | None = None
    gone_at: float | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))


@dataclass(frozen=True)
class Delivery:
    """One PagerDuty event the sink accepted, with when the runner first saw it."""

    at: float
    action: str  # trigger | resolve
    receiver: str  # pagerduty-page | pagerduty-ticket | unknown
    alerts: tuple[dict[str, str], ...]  # label sets listed as firing (trigger) or resolved (resolve)
    runbook: str
    dedup_key: str

    def carries(self, labels: dict[str, str]) -> bool:
        return any(a == labels for a in self.alerts)


def parse_instances(text: str) -> list[dict[str, str]]:
    """Label sets from Alertmanager's ``pagerduty.default.instances`` text (``Labels: - k = v ...``)."""
    out: list[dict[str, str]] = []
    for block in text.split("Labels:")[1:]:
        labels = {}
        for line in block.split("Annotations:")[0].splitlines():
            match = _LABEL_LINE.match(line)
            if match:
                labels[match.group(1)] = match.group(2).strip()
        if labels:
            out.append(labels)
    return out


def delivery_from_event(event: dict[str, Any], at: float, receivers: dict[str, str]) -> Delivery:
    """A sink event as a :class:`Delivery`; ``receivers`` maps routing key -> receiver name."""
    details = (event.get("payload") or {}).get("custom_details") or {}
    action = str(event.get("event_action", ""))
    text = str(details.get("resolved" if action == "resolve" else "firing", ""))
    links = event.get("links") or []
    return Delivery(at, action, receivers.get(str(event.get("routing_key")), "unknown"),
                    tuple(parse_instances(text)), str(links[0].get("href", "")) if links else "",
                    str(event.get("dedup_key", "")))


@dataclass
class ExpectResult:
    expect: Expect
    alert: SeenAlert | None = None
    delivery: Delivery | None = None
    resolved_delivery: Delivery | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.alert is None or self.alert.first_firing is None:
            return "missed"
        return "misrouted" if self.problems else "ok"


@dataclass
class ScenarioResult:
    scenario: Scenario
    injected_at: float
    cleared_at: float | None
    expects: list[ExpectResult]
    first_alert: SeenAlert | None
    unexpected: list[SeenAlert]
    notes: list[str] = field(default_factory=list)

    def verdict(self, strict: bool = False) -> str:
        """ok | missed | misrouted | noisy (an unexpected page, or with ``strict`` any unexpected alert)."""
        for bad in ("missed", "misrouted"):
            if any(e.verdict == bad for e in self.expects):
                return bad
        if any(a.severity == cv.SEVERITY_PAGE or strict for a in self.unexpected):
            return "noisy"
        return "ok"

    @property
    def detect_seconds(self) -> float | None:
        """Injection to the first expected alert's PagerDuty event: what the on-call experiences."""
        times = [e.delivery.at for e in self.expects if e.delivery]
        return min(times) - self.injected_at if times else None

    @property
    def resolve_seconds(self) -> float | None:
        """Clearing to the last expected alert leaving Prometheus (None: not all resolved in time)."""
        gone = [e.alert.gone_at for e in self.expects if e.alert]
        if self.cleared_at is None or not gone or any(g is None for g in gone):
            return None
        return max(g for g in gone if g is not None) - self.cleared_at


class Grader:
    """Knows the fleet (to tie alerts to drill targets) and the routing keys (to name receivers)."""

    def __init__(self, fleet: FleetConfig, instances: dict[str, str], receivers: dict[str, str],
                 runbook_base_url: str = cv.DEFAULT_RUNBOOK_BASE_URL, runbook_dir: Path | None = None) -> None:
        self.models = {(n.name, str(i)): m for n in fleet.nodes for i, m in enumerate(n.devices)}
        self.instances = instances  # node -> scrape instance (host:port)
        self.receivers = receivers
        self.runbook_base_url = runbook_base_url
        self.runbook_dir = runbook_dir if runbook_dir is not None else resources.runbook_dir()

    def in_scope(self, scope: str, scenario: Scenario, labels: dict[str, str]) -> bool:
        if scope == "fleet":
            return True
        if scope == "instance":
            return labels.get("instance") in {self.instances.get(n) for n in scenario.nodes}
        if scope == "model":
            models = {self.models[t] for t in scenario.targets if t in self.models}
            return labels.get("model") in models and labels.get("vendor") in {CATALOGUE[m].vendor for m in models}
        return any(labels.get("node") == node and labels.get("device") == dev for node, dev in scenario.targets)

    def explains(self, scenario: Scenario, alert: SeenAlert) -> bool:
        """Whether ``alert`` is one the drill expects or allows, in its scope: an allowed alert about a
        device must be about one of the drill's devices (one drill's allowance excuses no other's)."""
        if alert.alertname in scenario.allow:
            return self.in_scope(self.scope_of(alert.labels), scenario, alert.labels)
        return any(e.alertname == alert.alertname and self.in_scope(e.scope, scenario, alert.labels)
                   for e in scenario.expect)

    @staticmethod
    def scope_of(labels: dict[str, str]) -> str:
        """The narrowest scope an alert's labels name (SLO alerts name none: fleet)."""
        if labels.get("device") and labels.get("node"):
            return "device"
        if labels.get("instance"):
            return "instance"
        return "model" if labels.get("model") and labels.get("vendor") else "fleet"

    def grade(self, scenario: Scenario, earlier: list[Scenario], injected_at: float, cleared_at: float | None,
              alerts: list[SeenAlert], deliveries: list[Delivery]) -> ScenarioResult:
        """``alerts``: those first firing after ``injected_at``; ``deliveries``: events since then."""
        expects = [self._expect(e, scenario, alerts, deliveries) for e in scenario.expect]
        mine = sorted((a for a in alerts if a.first_firing is not None and self._attributable(scenario, a)),
                      key=lambda a: a.first_firing or 0.0)
        unexpected = [a for a in alerts if a.first_firing is not None
                      and not any(self.explains(s, a) for s in (*earlier, scenario))]
        return ScenarioResult(scenario, injected_at, cleared_at, expects, mine[0] if mine else None, unexpected)

    def _attributable(self, scenario: Scenario, alert: SeenAlert) -> bool:
        scoped = any(self.in_scope(s, scenario, alert.labels) for s in ("device", "model", "instance"))
        return scoped or self.explains(scenario, alert)

    def _expect(self, e: Expect, scenario: Scenario, alerts: list[SeenAlert],
                deliveries: list[Delivery]) -> ExpectResult:
        candidates = [a for a in alerts if a.alertname == e.alertname and a.first_firing is not None
                      and self.in_scope(e.scope, scenario, a.labels)]
        if not candidates:
            return ExpectResult(e, problems=[f"{e.alertname} never fired for {scenario.name}"])
        # prefer the instance at the expected severity (a page and a ticket may share a name)
        alert = min(candidates, key=lambda a: (a.severity != e.severity, a.first_firing or 0.0))
        result = ExpectResult(e, alert)
        if alert.severity != e.severity:
            result.problems.append(f"severity {alert.severity}, expected {e.severity}")
        if alert.labels.get("failure_mode") != e.failure_mode:
            result.problems.append(f"failure_mode {alert.labels.get('failure_mode')}, expected {e.failure_mode}")
        result.delivery = next((d for d in deliveries if d.action == "trigger" and d.carries(alert.labels)), None)
        result.resolved_delivery = next((d for d in deliveries if d.action == "resolve" and d.carries(alert.labels)),
                                        None)
        if result.delivery is None:
            result.problems.append("no PagerDuty event carried it")
        else:
            if result.delivery.receiver != e.receiver:
                result.problems.append(f"reached {result.delivery.receiver}, expected {e.receiver}")
            result.problems += self._runbook_problems(e.alertname, result.delivery.runbook)
        return result

    def _runbook_problems(self, alertname: str, href: str) -> list[str]:
        want = cv.runbook_url(self.runbook_base_url, alertname)
        if href != want:
            return [f"runbook link {href or '(none)'}, expected {want}"]
        if self.runbook_dir.is_dir() and not (self.runbook_dir / f"{alertname}.md").is_file():
            return [f"runbook {alertname}.md is missing from {self.runbook_dir}"]
        return []
