"""The Alertmanager config: severity routes to two PagerDuty Events v2 receivers, grouping and
inhibition that keep one incident one page.

The incident model: an Alertmanager group is one PagerDuty incident (its group key is the event's
``dedup_key``), and the group is ``conventions.INCIDENT_LABELS``: cluster, service, failure mode, node,
vendor and (served) model. So the symptoms of one cause that fire as different alerts (a thermal
prediction and the throttling; two devices of one vendor down on one node; the availability and the
latency SLO of one model) update one incident, while a second cause (another failure mode, node or
model) opens its own. Inhibition then drops what an already-firing cause explains (rules below).

Routing keys are secrets, so the committed config reads them from files
(``routing_key_file``, mounted from a Secret). ``npuobs alerts generate`` embeds a key instead
when ``NPUOBS_PAGERDUTY_ROUTING_KEY_PAGE`` / ``..._TICKET`` are set at generate time (for
local demos and tests, never for a committed file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from npuobs.alerting import conventions as cv

DEFAULT_KEY_DIR = "/etc/alertmanager/secrets"
ENV_ROUTING_KEY = {cv.SEVERITY_PAGE: "NPUOBS_PAGERDUTY_ROUTING_KEY_PAGE",
                   cv.SEVERITY_TICKET: "NPUOBS_PAGERDUTY_ROUTING_KEY_TICKET"}
DEVICE_DOWN_ALERTS = (cv.ALERT_DEVICE_DOWN, cv.ALERT_DEVICE_ABSENT)
SLO_BURNS = "|".join(cv.SLO_BURN_ALERTS.values())

# One PagerDuty incident per Alertmanager group: summary of the single alert, or a count.
DESCRIPTION = (
    '{{ if eq (len .Alerts) 1 }}{{ (index .Alerts 0).Annotations.summary }}'
    '{{ else }}{{ .CommonLabels.alertname }}: {{ len .Alerts.Firing }} firing'
    '{{ if .CommonLabels.node }} on {{ .CommonLabels.node }}{{ end }}{{ end }}'
)
SOURCE = ('{{ if .CommonLabels.node }}{{ .CommonLabels.node }}'
          '{{ else if .CommonLabels.slo }}slo/{{ .CommonLabels.slo }}'
          '{{ else if .CommonLabels.model }}model/{{ .CommonLabels.model }}{{ else }}npuobs{{ end }}')


@dataclass(frozen=True)
class RoutingKey:
    """Where a receiver's PagerDuty integration key comes from: a file (default) or inline."""

    key: str | None = None
    key_file: str | None = None

    def as_config(self) -> dict[str, str]:
        if self.key:
            return {"routing_key": self.key}
        if not self.key_file:
            raise ValueError("a routing key or a routing key file is required")
        return {"routing_key_file": self.key_file}


@dataclass(frozen=True)
class AlertmanagerOptions:
    page_key: RoutingKey = RoutingKey(key_file=f"{DEFAULT_KEY_DIR}/pagerduty-page.key")
    ticket_key: RoutingKey = RoutingKey(key_file=f"{DEFAULT_KEY_DIR}/pagerduty-ticket.key")
    pagerduty_url: str | None = None  # None: PagerDuty's own endpoint (Alertmanager's default)
    group_wait: str = "30s"
    group_interval: str = "5m"
    page_repeat_interval: str = "1h"
    ticket_repeat_interval: str = "24h"


def _pagerduty(severity: str, key: RoutingKey, url: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {**key.as_config()}
    if url:
        config["url"] = url
    config.update({
        "send_resolved": True,
        "severity": cv.PAGERDUTY_SEVERITY[severity],
        "description": DESCRIPTION,
        "source": SOURCE,
        "class": "{{ .CommonLabels.failure_mode }}",
        "component": "{{ .CommonLabels.vendor }}",
        "group": "{{ .CommonLabels.node }}",
        "links": [{"href": "{{ .CommonAnnotations.runbook_url }}",
                   "text": "Runbook: {{ .CommonLabels.alertname }}"}],
        "details": {
            "description": "{{ .CommonAnnotations.description }}",
            "failure_mode": "{{ .CommonLabels.failure_mode }}",
            "firing": '{{ template "pagerduty.default.instances" .Alerts.Firing }}',
            "resolved": '{{ template "pagerduty.default.instances" .Alerts.Resolved }}',
            "num_firing": "{{ .Alerts.Firing | len }}",
            "num_resolved": "{{ .Alerts.Resolved | len }}",
        },
    })
    return config


def inhibit_rules() -> list[dict[str, Any]]:
    """Suppress the symptoms of a cause that is already firing. Every source that names a device or a
    node must have it (``=~".+"``): Alertmanager treats a label missing on both sides as equal, so a
    node-less source would otherwise silence every node-less alert (the SLO pages)."""
    down = "|".join(DEVICE_DOWN_ALERTS)
    return [
        # A down/vanished device explains every other alert about that device, except its resets: a reset
        # storm is the cause when it takes the device down (the storm rule below), and two rules that
        # inhibit each other would silence both.
        {"source_matchers": [f'alertname=~"{down}"', 'device=~".+"'],
         "target_matchers": ['alertname=~"Npu.+"', f'alertname!~"{down}|NpuDeviceResets"'],
         "equal": ["cluster", "node", "device"]},
        # The composite device-down page names the SLO: that SLO's burn (its ticket) is the same incident.
        {"source_matchers": [f'alertname="{cv.ALERT_DEVICE_DOWN}"', f'severity="{cv.SEVERITY_PAGE}"',
                             'slo=~".+"'],
         "target_matchers": [f'alertname=~"{SLO_BURNS}"'],
         "equal": ["cluster", "slo"]},  # cluster: a device down in c1 says nothing about c2's burn
        # The composite page folds its device's plain ticket. One Prometheus never fires both (the ticket
        # leaves out what the composite pages); at the global tier each cluster tickets every down device
        # and the global engine pages the composite, and the ticket has no slo label to match the rule below.
        {"source_matchers": [f'alertname="{cv.ALERT_DEVICE_DOWN}"', f'severity="{cv.SEVERITY_PAGE}"',
                             'device=~".+"'],
         "target_matchers": [f'alertname="{cv.ALERT_DEVICE_DOWN}"', f'severity="{cv.SEVERITY_TICKET}"'],
         "equal": ["cluster", "node", "device"]},
        # A lost node (its exporter silent) explains the per-device alerts on it.
        {"source_matchers": [f'alertname="{cv.ALERT_EXPORTER_DOWN}"', 'node=~".+"'],
         "target_matchers": ['alertname=~"Npu.+"', f'alertname!="{cv.ALERT_EXPORTER_DOWN}"', 'device=~".+"'],
         "equal": ["cluster", "node"]},
        # The page already covers the same problem: drop its ticket twin (SLO burn page -> its ticket,
        # reset storm -> the reset ticket).
        {"source_matchers": [f'severity="{cv.SEVERITY_PAGE}"'],
         "target_matchers": [f'severity="{cv.SEVERITY_TICKET}"'],
         "equal": ["alertname", "cluster", "node", "device", "slo"]},
        # A reset storm takes the device offline and fails its queue: that is the storm's incident.
        {"source_matchers": ['alertname="NpuDeviceResets"', f'severity="{cv.SEVERITY_PAGE}"'],
         "target_matchers": [f'alertname=~"{cv.ALERT_DEVICE_DOWN}|NpuDeviceErrorRateHigh"'],
         "equal": ["cluster", "node", "device"]},
        # Throttling already happens: "near the limit" adds nothing (its for: is the longer one, so the
        # throttling ticket fires first whenever the die goes on to throttle).
        {"source_matchers": ['alertname="NpuThermalThrottling"'],
         "target_matchers": ['alertname="NpuTemperatureNearLimit"'],
         "equal": ["cluster", "node", "device"]},
    ]


def alertmanager_config(options: AlertmanagerOptions = AlertmanagerOptions()) -> dict[str, Any]:
    url = options.pagerduty_url
    return {
        "route": {
            # Unmatched severities still reach a human (as a ticket) instead of being dropped.
            "receiver": cv.RECEIVER_TICKET,
            # one group = one incident (module docstring)
            "group_by": list(cv.INCIDENT_LABELS),
            "group_wait": options.group_wait,
            "group_interval": options.group_interval,
            "repeat_interval": options.ticket_repeat_interval,
            "routes": [
                {"matchers": [f'severity="{cv.SEVERITY_PAGE}"'], "receiver": cv.RECEIVER_PAGE,
                 "repeat_interval": options.page_repeat_interval},
                {"matchers": [f'severity="{cv.SEVERITY_TICKET}"'], "receiver": cv.RECEIVER_TICKET},
            ],
        },
        "inhibit_rules": inhibit_rules(),
        "receivers": [
            {"name": cv.RECEIVER_PAGE,
             "pagerduty_configs": [_pagerduty(cv.SEVERITY_PAGE, options.page_key, url)]},
            {"name": cv.RECEIVER_TICKET,
             "pagerduty_configs": [_pagerduty(cv.SEVERITY_TICKET, options.ticket_key, url)]},
        ],
    }
