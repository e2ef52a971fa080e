"""Grade a drill: did the expected alert fire, at the expected severity, reach the expected PagerDuty
receiver with the right runbook, what else fired, and how loud was it: PagerDuty incidents opened
(pages, tickets), time to the first page, alerts Alertmanager suppressed by inhibition?

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
from npuobs.gameday.scenarios import MODEL_ALERTS, Expect, Scenario
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
    suppressed_at: float | None = None  # first seen inhibited in Alertmanager

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


def open_incidents(deliveries: list[Delivery]) -> frozenset[str]:
    """Dedup keys with an open PagerDuty incident after ``deliveries`` (in order)."""
    keys: set[str] = set()
    for d in deliveries:
        if d.action == "trigger":
            keys.add(d.dedup_key)
        elif d.action == "resolve":
            keys.discard(d.dedup_key)
    return frozenset(keys)


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
    pages: list[Delivery] = field(default_factory=list)  # first trigger of each page incident it opened
    tickets: list[Delivery] = field(default_factory=list)  # ... of each ticket incident
    suppressed: list[SeenAlert] = field(default_factory=list)  # its alerts Alertmanager inhibited

    @property
    def pages_opened(self) -> int:
        return len(self.pages)

    @property
    def tickets_opened(self) -> int:
        return len(self.tickets)

    @property
    def first_page_seconds(self) -> float | None:
        return min(d.at for d in self.pages) - self.injected_at if self.pages else None

    @property
    def suppressed_names(self) -> list[str]:
        return sorted({a.alertname for a in self.suppressed})

    @property
    def noise(self) -> list[str]:
        """Why the drill is noisy, per the policy: more than one page for its one cause, a page for a
        cause the policy tickets (an SLO burn excepted: users hurt now pages), an unexpected page."""
        out = []
        if self.pages_opened > 1:
            out.append(f"{self.pages_opened} pages for one cause")
        if self.scenario.policy != cv.SEVERITY_PAGE:
            paged = sorted({a.get("alertname", "") for d in self.pages for a in d.alerts
                            if a.get("failure_mode") != cv.FAILURE_MODE_SLO})
            if paged:
                out.append(f"paged ({', '.join(paged)}) for a cause the policy "
                           f"{'tickets' if self.scenario.policy == cv.SEVERITY_TICKET else 'keeps quiet'}")
        return out

    def verdict(self, strict: bool = False) -> str:
        """ok | missed | misrouted | noisy (see ``noise``; an unexpected page, or with ``strict`` any
        unexpected alert)."""
        for bad in ("missed", "misrouted"):
            if any(e.verdict == bad for e in self.expects):
                return bad
        if self.noise or any(a.severity == cv.SEVERITY_PAGE or strict for a in self.unexpected):
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
        self.served_model = fleet.model  # every simulated device serves the fleet's one model
        self.instances = instances  # node -> scrape instance (host:port)
        self.receivers = receivers
        self.runbook_base_url = runbook_base_url
        self.runbook_dir = runbook_dir if runbook_dir is not None else resources.runbook_dir()

    def in_scope(self, scope: str, scenario: Scenario, labels: dict[str, str]) -> bool:
        if scope == "fleet":
            return True
        if scope == "instance":
            return labels.get("instance") in {self.instances.get(n) for n in scenario.nodes}
        if scope == "node":
            return labels.get("node") in scenario.nodes
        if scope == "model":
            models = {self.models[t] for t in scenario.targets if t in self.models}
            return labels.get("model") in models and labels.get("vendor") in {CATALOGUE[m].vendor for m in models}
        return any(labels.get("node") == node and labels.get("device") == dev for node, dev in scenario.targets)

    def explains(self, scenario: Scenario, alert: SeenAlert) -> bool:
        """Whether ``alert`` belongs to the drill's incident (the incident model, docs/alerting.md): one it
        expects, in scope; any alert about the drill's own devices, node or exporter; an SLO or capacity
        alert of a model the drill's devices serve. One drill's incident excuses no other drill's alerts."""
        if any(e.alertname == alert.alertname and self.in_scope(e.scope, scenario, alert.labels)
               for e in scenario.expect):
            return True
        labels = alert.labels
        if alert.alertname in MODEL_ALERTS:
            return labels.get("model") in self.served(scenario)
        if labels.get("device") and labels.get("node"):
            whole = {n for n, d in scenario.targets if not d}
            return labels["node"] in whole or self.in_scope("device", scenario, labels)
        if labels.get("instance"):
            return self.in_scope("instance", scenario, labels)
        if labels.get("node"):
            return labels["node"] in scenario.nodes
        return False

    def served(self, scenario: Scenario) -> set[str]:
        """The models the drill's devices serve (all of a node's for a whole-node drill)."""
        return {self.served_model} if scenario.targets else set()

    @staticmethod
    def scope_of(labels: dict[str, str]) -> str:
        """The narrowest scope an alert's labels name (SLO alerts name none: fleet)."""
        if labels.get("device") and labels.get("node"):
            return "device"
        if labels.get("instance"):
            return "instance"
        return "model" if labels.get("model") and labels.get("vendor") else "fleet"

    def grade(self, scenario: Scenario, earlier: list[Scenario], injected_at: float, cleared_at: float | None,
              alerts: list[SeenAlert], deliveries: list[Delivery],
              open_before: frozenset[str] = frozenset()) -> ScenarioResult:
        """``alerts``: those first firing (or first inhibited) after ``injected_at``; ``deliveries``: events
        since then; ``open_before``: dedup keys of incidents open when the drill began (not its own)."""
        expects = [self._expect(e, scenario, alerts, deliveries) for e in scenario.expect]
        mine = sorted((a for a in alerts if a.first_firing is not None and self._attributable(scenario, a)),
                      key=lambda a: a.first_firing or 0.0)
        unexpected = [a for a in alerts if a.first_firing is not None
                      and not any(self.explains(s, a) for s in (*earlier, scenario))]
        result = ScenarioResult(scenario, injected_at, cleared_at, expects, mine[0] if mine else None, unexpected)
        # PagerDuty opens an incident for a trigger whose dedup key has no open incident (a resolved one's
        # key opens a new incident); Alertmanager's group key is the dedup key
        open_now = set(open_before)
        for d in deliveries:
            if d.action == "resolve":
                open_now.discard(d.dedup_key)
                continue
            if d.action != "trigger" or d.dedup_key in open_now:
                continue
            open_now.add(d.dedup_key)
            if any(self._attributable(scenario, SeenAlert(labels, {})) for labels in d.alerts):
                (result.pages if d.receiver == cv.RECEIVER_PAGE else result.tickets).append(d)
        result.suppressed = [a for a in alerts if a.suppressed_at is not None and self._attributable(scenario, a)]
        return result

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
