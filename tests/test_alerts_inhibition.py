"""The generated Alertmanager config on a real Alertmanager: inhibited alerts reach no receiver, and each
cause's symptoms land in one PagerDuty incident (docs/alerting.md, "One cause, one page").

Alerts are posted to Alertmanager's API the way Prometheus sends them (labels as the generated rules make
them), so every inhibition and grouping case runs in one Alertmanager within seconds; the rules that make
those labels are covered by promtool (alerts/tests/incident-alerts.test.yaml). PagerDuty itself cannot run
here: the receiver is npuobs.stack.pagerduty_sink, which validates the Events v2 wire format.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import AlertmanagerOptions, RoutingKey, alertmanager_config
from npuobs.amapi import AlertmanagerAPI
from npuobs.gameday.grader import parse_instances
from npuobs.stack import AlertmanagerServer, PagerDutySink

pytestmark = pytest.mark.integration

PAGE_KEY = "inhpage0inhpage0inhpage0inhpage0"
TICKET_KEY = "inhtick0inhtick0inhtick0inhtick0"
BASE = {"service": "npu-inference"}
SLO = {"slo": "digits-mlp-availability", "sli": "availability", "model": "digits-mlp", "team": "npu-sre"}


def _alert(name: str, severity: str, failure_mode: str, **labels: str) -> dict[str, Any]:
    return {"alertname": name, "severity": severity, "failure_mode": failure_mode, **BASE, **labels}


# (alert labels, inhibited?) -- each source first, then what it must (not) suppress
CASES: list[tuple[dict[str, str], bool]] = [
    # composite device-down page: the same device's error alert and the same SLO's burn ticket are its symptoms
    (_alert("NpuDeviceDown", "page", "F1", node="n1", device="0", vendor="furiosa", **SLO), False),
    (_alert("NpuDeviceErrorRateHigh", "page", "F1", node="n1", device="0", vendor="furiosa"), True),
    (_alert("NpuAvailabilityErrorBudgetBurn", "ticket", "SLO", **SLO), True),
    # ... and, at the global tier (docs/scale.md), its cluster's plain ticket for the same device
    (_alert("NpuDeviceDown", "ticket", "F1", node="n1", device="0", vendor="furiosa"), True),
    # ... but not another device's alert, nor another SLO's page (a second cause)
    (_alert("NpuDeviceErrorRateHigh", "page", "F1", node="n1", device="1", vendor="furiosa"), False),
    (_alert("NpuLatencyErrorBudgetBurn", "page", "SLO", slo="digits-mlp-latency", sli="latency",
            model="digits-mlp", team="npu-sre"), False),
    # a page drops its own ticket twin
    (_alert("NpuLatencyErrorBudgetBurn", "ticket", "SLO", slo="digits-mlp-latency", sli="latency",
            model="digits-mlp", team="npu-sre"), True),
    # throttling folds the temperature prediction of its device
    (_alert("NpuThermalThrottling", "ticket", "F2", node="n2", device="2", vendor="intel", reason="thermal"), False),
    (_alert("NpuTemperatureNearLimit", "ticket", "F2", node="n2", device="2", vendor="intel"), True),
    # a lost node (its exporter silent) folds the per-device alerts of that node
    (_alert("NpuExporterDown", "ticket", "SELF", node="n3", instance="n3:9400", job="npuobs"), False),
    (_alert("NpuDeviceAbsent", "page", "F1", node="n3", device="1", vendor="aws", instance="n3:9400"), True),
    # a reset storm explains its device going down
    (_alert("NpuDeviceResets", "page", "RESET", node="n4", device="3", vendor="furiosa"), False),
    (_alert("NpuDeviceDown", "ticket", "F1", node="n4", device="3", vendor="furiosa"), True),
    (_alert("NpuDeviceResets", "ticket", "RESET", node="n4", device="3", vendor="furiosa"), True),
]


def _post(api: AlertmanagerAPI, labels: list[dict[str, str]]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    ends = (now + datetime.timedelta(minutes=10)).isoformat()
    api.request("/api/v2/alerts", method="POST", body=[
        {"labels": lab, "annotations": {"summary": lab["alertname"],
                                        "runbook_url": cv.runbook_url(cv.DEFAULT_RUNBOOK_BASE_URL, lab["alertname"])},
         "startsAt": now.isoformat(), "endsAt": ends} for lab in labels])


def test_inhibited_alerts_reach_no_receiver_and_one_cause_is_one_incident(alertmanager_bin: str,
                                                                          tmp_path: Path) -> None:
    with PagerDutySink(log_path=tmp_path / "events.jsonl") as sink:
        config = alertmanager_config(AlertmanagerOptions(
            page_key=RoutingKey(key=PAGE_KEY), ticket_key=RoutingKey(key=TICKET_KEY),
            pagerduty_url=sink.enqueue_url, group_wait="2s", group_interval="2s"))
        with AlertmanagerServer.start(config, tmp_path / "am", binary=alertmanager_bin) as am:
            api = AlertmanagerAPI(am.url)
            sources = [lab for lab, inhibited in CASES if not inhibited]
            _post(api, sources)
            time.sleep(1.0)  # sources first: inhibition applies to what arrives while they fire
            _post(api, [lab for lab, inhibited in CASES if inhibited])
            # one more source of the composite's incident: a second device of the same node and vendor
            # groups into the same page incident rather than opening its own
            _post(api, [_alert("NpuDeviceDown", "page", "F1", node="n1", device="2", vendor="furiosa", **SLO)])

            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                state = {tuple(sorted(a["labels"].items())): a["status"] for a in api.alerts()}
                delivered = _delivered(sink)
                if len(state) == len(CASES) + 1 and all(
                        tuple(sorted(lab.items())) in delivered for lab in sources):
                    break
                time.sleep(0.5)
            time.sleep(3)  # another group interval: anything inhibited that was going to leak would have
            delivered = _delivered(sink)

            for labels, inhibited in CASES:
                key = tuple(sorted(labels.items()))
                status = state[key]
                if inhibited:
                    assert status["state"] == "suppressed" and status["inhibitedBy"], labels
                    assert key not in delivered, f"inhibited alert reached PagerDuty: {labels}"
                else:
                    assert status["state"] == "active", labels
                    assert key in delivered, f"{labels} never reached PagerDuty"
        assert sink.rejected() == []

    # the receivers: pages to the page key, tickets to the ticket key
    triggers = [e for e in sink.events() if e["event_action"] == "trigger"]
    for event in triggers:
        sev = {a["severity"] for a in parse_instances(event["payload"]["custom_details"]["firing"])}
        assert sev == {"page"} if event["routing_key"] == PAGE_KEY else sev == {"ticket"}
    # one incident (dedup key) per cause: the two devices down on n1 share one
    n1_down = {e["dedup_key"] for e in triggers
               if any(a.get("alertname") == "NpuDeviceDown" and a.get("node") == "n1"
                      for a in parse_instances(e["payload"]["custom_details"]["firing"]))}
    assert len(n1_down) == 1
    incidents = {(e["routing_key"], e["dedup_key"]) for e in triggers}
    pages = {k for r, k in incidents if r == PAGE_KEY}
    # the composite for n1 (two devices, one incident), n1/1's error rate (another device, no SLO named: its
    # own incident), the latency SLO, the reset storm on n4; nothing inhibited adds one
    assert len(pages) == 4


def _delivered(sink: PagerDutySink) -> set[tuple[tuple[str, str], ...]]:
    out = set()
    for event in sink.events():
        if event["event_action"] == "trigger":
            out |= {tuple(sorted(a.items())) for a in parse_instances(event["payload"]["custom_details"]["firing"])}
    return out
