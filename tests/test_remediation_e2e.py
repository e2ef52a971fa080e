"""The whole loop on the embedded stack: simulated fleet -> exporters -> real Prometheus (generated rules)
-> real Alertmanager (generated routing + the remediate webhook) -> ``npuobs remediate`` (its CLI, a
separate process) -> control API -> the fleet. F1 -> the device is drained and its failures stop while
it stays down; a rollout with F3-style bad scales -> the model is rolled back and accuracy recovers.
Grafana is a stand-in checking its annotation API's wire format; PagerDuty is the project's sink.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from remediationkit import GrafanaStandIn

from npuobs.instrumentation.controlserver import ControlAuth, ControlClient
from npuobs.stack.embedded import PAGE_KEY, TICKET_KEY, EmbeddedStack, Timing
from npuobs.stack.proc import free_port

pytestmark = pytest.mark.fleet


class Loop:
    def __init__(self, stack: EmbeddedStack, proc: subprocess.Popen, url: str, state: Path, grafana: GrafanaStandIn,
                 log: Path) -> None:
        self.stack, self.proc, self.url, self.state, self.grafana, self.log = stack, proc, url, state, grafana, log
        assert stack.runner is not None and stack.runner.control_token_file is not None
        self.control = ControlClient(stack.runner.control_url, ControlAuth.from_files(stack.runner.control_token_file))

    def audit(self) -> list[dict]:
        path = self.state / "audit.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    def wait_audit(self, predicate, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"npuobs remediate exited: {self.log.read_text()}"
            found = [e for e in self.audit() if predicate(e)]
            if found:
                return found[0]
            time.sleep(1)
        raise AssertionError(f"no such decision within {timeout}s; audit: {self.audit()}; log: {self.log.read_text()}")

    def query(self, promql: str) -> list[dict]:
        assert self.stack.prometheus is not None
        return self.stack.prometheus.query(promql)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as resp:
            return resp.read().decode()


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, prometheus_bin: str, alertmanager_bin: str):
    work = tmp_path_factory.mktemp("remediation-e2e")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    timing = Timing(scrape_interval="2s", evaluation_interval="2s", group_wait="2s", group_interval="5s",
                    for_cap="10s")
    stack = EmbeddedStack(timing=timing, speed=10.0, workdir=work / "stack", remediate_url=url + "/webhook").start()
    grafana = GrafanaStandIn()
    keys = {}
    for name, key in (("page", PAGE_KEY), ("ticket", TICKET_KEY)):
        keys[name] = work / f"{name}.key"
        keys[name].write_text(key)
    (work / "grafana.token").write_text(grafana.token)
    state, log = work / "remediate-state", work / "remediate.log"
    assert stack.runner is not None and stack.alertmanager and stack.prometheus and stack.sink
    cmd = [sys.executable, "-m", "npuobs.cli.main", "remediate", "--enable", "--listen", f"127.0.0.1:{port}",
           "--control-url", stack.runner.control_url, "--control-token-file", str(stack.runner.control_token_file),
           "--alertmanager", stack.alertmanager.url, "--prometheus", stack.prometheus.url,
           "--state-dir", str(state), "--verify-interval", "2s",
           "--grafana-url", grafana.url, "--grafana-token-file", str(work / "grafana.token"),
           "--pagerduty-url", stack.sink.enqueue_url, "--routing-key-file-page", str(keys["page"]),
           "--routing-key-file-ticket", str(keys["ticket"])]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/-/healthy", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield Loop(stack, proc, url, state, grafana, log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        grafana.stop()
        stack.stop()


def test_f1_device_is_drained_and_its_failures_stop_while_it_stays_down(loop: Loop) -> None:
    loop.stack.inject("F1", node="node-a", device="1")
    acted = loop.wait_audit(lambda e: e["alertname"] == "NpuDeviceDown" and e["result"] == "acted", 120)
    assert acted["target"] == {"node": "node-a", "device": "1"} and acted["action"] == "drain"
    devices = {(d["node"], d["device"]): d for d in loop.control.state()["devices"]}
    assert devices[("node-a", "1")]["drained"]
    verified = loop.wait_audit(lambda e: e["alertname"] == "NpuDeviceDown" and e["result"] == "verified", 180)
    assert verified["fingerprint"] == acted["fingerprint"]
    # the availability SLI stops failing fleet-wide, while the device itself is still down
    assert loop.query('sum(rate(npu_inference_requests_total{outcome!="success"}[30s])) > 0') == []
    assert loop.query('npu_device_up{node="node-a",device="1"} == 0')
    text = loop.metrics()
    assert 'npuobs_remediation_actions_total{action="drain",result="acted"} 1.0' in text
    assert 'npuobs_remediation_actions_total{action="drain",result="verified"} 1.0' in text
    assert any("NpuDeviceDown" in a["tags"] and "acted" in a["tags"] for a in loop.grafana.annotations)
    # NpuDeviceDown pages while its SLO burns and tickets otherwise: the note goes where the alert went
    events = loop.stack.pages() + loop.stack.tickets()
    notes = [e for e in events if e["payload"].get("source") == "npuobs-remediate"]
    assert notes and notes[0]["payload"]["custom_details"]["remediation"]["action"] == "drain"
    # the note carries the dedup key of the event Alertmanager sent for the same group
    assert notes[0]["dedup_key"] in {e.get("dedup_key") for e in events
                                     if e["payload"].get("source") != "npuobs-remediate"}
    loop.stack.clear()
    loop.control.act("undrain", node="node-a", device="1")


def test_f3_bad_calibration_rollout_is_rolled_back_and_accuracy_recovers(loop: Loop) -> None:
    loop.control.act("rollout", model="digits-mlp", version="v2-recalibrated", attributes={"calibration": "bad"})
    acted = loop.wait_audit(lambda e: e["action"] == "rollback" and e["result"] == "acted", 180)
    assert acted["alertname"] in ("NpuAccuracyDeltaHigh", "NpuAccuracyErrorBudgetBurn")
    model = loop.control.state()["models"][0]
    assert model["version"] == "v1"
    loop.wait_audit(lambda e: e["action"] == "rollback" and e["result"] == "verified", 180)
    assert loop.query("max(npu_accuracy_delta_ratio) > 0.02") == []
    # one rollback for the whole model, and no device drained for what was a model problem
    assert sum(e["action"] == "rollback" and e["result"] == "acted" for e in loop.audit()) == 1
    assert not [e for e in loop.audit() if e["action"] == "drain" and e["result"] == "acted"
                and e["alertname"] != "NpuDeviceDown"]


def test_a_device_that_is_up_is_never_drained(loop: Loop) -> None:
    """NpuDeviceDown also covers "down within its window"; a late or replayed alert for a device that is up
    again must not drain it (the rule's when.unless reads npu_device_up from the real Prometheus)."""
    assert loop.query('npu_device_up{node="node-a",device="2"} == 1')
    alert = {"status": "firing", "labels": {"alertname": "NpuDeviceDown", "node": "node-a", "device": "2",
                                             "vendor": "rebellions", "severity": "ticket"},
             "annotations": {}, "startsAt": "2026-12-07T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": "late-node-a-2"}
    body = json.dumps({"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "npuobs-remediate",
                       "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
                       "alerts": [alert]}).encode()
    req = urllib.request.Request(loop.url + "/webhook", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        [decision] = json.loads(resp.read())["decisions"]
    assert decision["result"] == "refused_condition" and "npu_device_up" in decision["reason"]
    devices = {(d["node"], d["device"]): d for d in loop.control.state()["devices"]}
    assert not devices[("node-a", "2")]["drained"]
