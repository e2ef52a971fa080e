"""End to end through the real stack: exporter target -> Prometheus (generated rules) -> Alertmanager
(generated routing) -> the local PagerDuty Events v2 sink; a page arrives, then its resolve.

PagerDuty itself cannot run here; the sink validates the Events v2 wire format the way the real
endpoint does. Only timing is test-specific (1 s scrape/eval/group intervals, a 2 s ``for``):
expressions, labels, annotations, routes and receivers are the generated ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import AlertmanagerOptions, RoutingKey, alertmanager_config
from npuobs.stack import AlertmanagerServer, PagerDutySink, PrometheusServer, scrape_config

REPO = Path(__file__).resolve().parent.parent
PAGE_KEY = "e2epage0e2epage0e2epage0e2epage0"  # PagerDuty integration keys are 32 characters
TICKET_KEY = "e2etick0e2etick0e2etick0e2etick0"
DEVICE = {"node": "n1", "device": "0", "vendor": "furiosa"}


@dataclass(frozen=True)
class ScrapeTarget:
    """What the E2E needs from an exporter: where to scrape it and how to take device 0 of n1 down/up."""

    address: str  # host:port serving /metrics
    set_device_up: Callable[[bool], None]


@pytest.fixture
def npu_scrape_target() -> Iterator[ScrapeTarget]:
    """A tiny static exporter serving ``npu_device_up`` for one device.

    The hook for the real thing: a fixture yielding a ``ScrapeTarget`` backed by the npuobs
    exporter over a simulated fleet (``set_device_up`` toggling fault F1) can replace this one
    without touching the test.
    """
    registry = CollectorRegistry()
    up = Gauge("npu_device_up", "1 when the device answers its backend.", list(DEVICE), registry=registry)
    gauge = up.labels(**DEVICE)
    gauge.set(0)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield ScrapeTarget(f"127.0.0.1:{server.server_port}", lambda ok: gauge.set(1 if ok else 0))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _test_rules(tmp_path: Path) -> Path:
    """The committed device alerts, with NpuDeviceDown's ``for`` shortened from 2m to 2s. No SLO traffic
    here: the device is down with no SLO burning, so it is the ticket (the composite page needs the SLO
    rules; alerts/tests/incident-alerts.test.yaml and tests/test_alerts_inhibition.py cover it)."""
    doc = yaml.safe_load((REPO / "alerts/generated" / cv.DEVICE_ALERTS_FILE).read_text())
    rules = [r for g in doc["groups"] for r in g["rules"] if r["alert"] == "NpuDeviceDown"]
    assert rules, "generated device alerts lack NpuDeviceDown"
    for rule in rules:
        rule["for"] = "2s"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "e2e", "rules": rules}]}))
    return path


def test_device_down_tickets_pagerduty_and_resolves(npu_scrape_target: ScrapeTarget, prometheus_bin: str,
                                                  alertmanager_bin: str, tmp_path: Path) -> None:
    with PagerDutySink(log_path=tmp_path / "pages.jsonl") as sink:
        am_config = alertmanager_config(AlertmanagerOptions(
            page_key=RoutingKey(key=PAGE_KEY), ticket_key=RoutingKey(key=TICKET_KEY),
            pagerduty_url=sink.enqueue_url, group_wait="1s", group_interval="1s"))
        with AlertmanagerServer.start(am_config, tmp_path / "am", binary=alertmanager_bin) as am:
            prom_config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [scrape_config(cv.DEFAULT_EXPORTER_JOB, [npu_scrape_target.address], "1s")],
            }
            with PrometheusServer.start(prom_config, tmp_path / "prom", rule_files=[_test_rules(tmp_path)],
                                        alertmanagers=[am.url], binary=prometheus_bin) as prom:
                prom.wait_for('npu_device_up{job="npuobs"} == 0', timeout=20)

                page = sink.wait_for(lambda e: e["event_action"] == "trigger", timeout=20)
                _assert_ticket(page)

                npu_scrape_target.set_device_up(True)
                resolve = sink.wait_for(lambda e: e["event_action"] == "resolve", timeout=20)
                assert resolve["dedup_key"] == page["dedup_key"]
                assert resolve["routing_key"] == TICKET_KEY
        assert sink.rejected() == []
        assert sink.events(PAGE_KEY) == []
    assert len((tmp_path / "pages.jsonl").read_text().splitlines()) == len(sink.events())


def _assert_ticket(event: dict[str, Any]) -> None:
    assert event["routing_key"] == TICKET_KEY
    assert event["dedup_key"]
    payload = event["payload"]
    assert payload["severity"] == "warning"
    assert payload["summary"] == "NPU 0 on n1 is down (no SLO impact)"
    assert payload["source"] == "n1"
    assert payload["class"] == "F1"
    assert payload["component"] == "furiosa"
    assert "has not answered its backend" in payload["custom_details"]["description"]
    assert {"href": f"{cv.DEFAULT_RUNBOOK_BASE_URL}/runbooks/NpuDeviceDown.md",
            "text": "Runbook: NpuDeviceDown"} in event["links"]
