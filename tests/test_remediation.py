"""``npuobs remediate``'s guardrails against real parts: the control API of a simulated fleet, a real
Alertmanager (maintenance silences), the project's PagerDuty Events v2 sink and a Grafana annotations
stand-in that checks Grafana's wire format."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from remediationkit import GrafanaStandIn, ServedFleet, alert, payload

from npuobs.alerting import maintenance
from npuobs.amapi import AlertmanagerAPI
from npuobs.remediation.controller import Controller
from npuobs.remediation.notify import Grafana, PagerDuty, dedup_key
from npuobs.remediation.policy import load_policy, parse_policy
from npuobs.remediation.state import StateDirError, StateStore
from npuobs.remediation.webhook import WebhookServer
from npuobs.stack.pagerduty_sink import PagerDutySink

pytestmark = pytest.mark.integration
PAGE_KEY = "remediatetestpage0remediatetest0"
TICKET_KEY = "remediatetestticket0remediatetes"
GROUP = '{}/{alertname=~"Npu.+"}:{alertname="NpuDeviceDown", node="node-a"}'  # the webhook route's group
PD_GROUP = '{}/{severity="page"}:{alertname="NpuDeviceDown", node="node-a"}'  # the same group, PagerDuty route


@pytest.fixture(scope="module")
def sink():
    with PagerDutySink() as s:
        yield s


@pytest.fixture(scope="module")
def grafana():
    g = GrafanaStandIn()
    yield g
    g.stop()


@pytest.fixture
def served(tmp_path: Path):
    s = ServedFleet(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def make(tmp_path: Path, served: ServedFleet, alertmanager_server, prometheus_server, sink, grafana):
    """Build controllers on one state dir (a restart is a second call after closing the first)."""
    made: list[Controller] = []

    def build(policy=None, *, enabled: bool = True, prometheus=prometheus_server, alertmanager=alertmanager_server,
              state_dir: Path | None = None) -> Controller:
        c = Controller(policy or load_policy(), StateStore(state_dir or tmp_path / "state"), served.client,
                       enabled=enabled, alertmanager=alertmanager, prometheus=prometheus,
                       grafana=Grafana(grafana.url, grafana.token),
                       pagerduty=PagerDuty(sink.enqueue_url, {"page": PAGE_KEY, "ticket": TICKET_KEY}),
                       verify_interval=0.2, log=io.StringIO())
        made.append(c)
        return c

    yield build
    for c in made:
        c.stop()
        c.state.close()


def policy_with(**guardrails) -> object:
    doc = yaml.safe_load(_default_text())
    doc["guardrails"].update(guardrails)
    return parse_policy(doc, "test policy")


def _default_text() -> str:
    from importlib import resources

    return resources.files("npuobs.remediation").joinpath("remediation.yaml").read_text()


def down(node: str, device: str, fp: str, vendor: str = "furiosa") -> dict:
    return alert("NpuDeviceDown", fp, node=node, device=device, vendor=vendor, severity="page", failure_mode="F1")


def audit(c: Controller) -> list[dict]:
    return [json.loads(line) for line in c.audit_path.read_text().splitlines()] if c.audit_path.exists() else []


def counted(c: Controller, action: str, result: str) -> float:
    return c.registry.get_sample_value("npuobs_remediation_actions_total", {"action": action, "result": result}) or 0


def test_dry_run_decides_records_everywhere_and_does_not_act(make, served, sink, grafana) -> None:
    c = make(enabled=False)
    sink.clear()
    [d] = c.handle(payload(down("node-a", "1", "fp-dry"), group_key=GROUP))
    assert d.result == "dry_run" and d.target == {"node": "node-a", "device": "1"}
    assert served.actions("drain") == [] and served.fleet.control.accepting("node-a", "1")
    [line] = audit(c)
    assert line["result"] == "dry_run" and line["dry_run"] is True and line["alertname"] == "NpuDeviceDown"
    assert counted(c, "drain", "dry_run") == 1
    note = grafana.annotations[-1]
    assert {"npuobs-remediation", "drain", "dry_run", "NpuDeviceDown"} <= set(note["tags"])
    assert "node-a" in note["text"] and abs(note["time"] / 1000 - time.time()) < 60
    # the note lands on the original alert's PagerDuty incident: same routing key and dedup key
    [event] = sink.events(PAGE_KEY)
    assert event["dedup_key"] == dedup_key(PD_GROUP) and event["event_action"] == "trigger"
    assert event["payload"]["custom_details"]["remediation"]["result"] == "dry_run"
    assert not sink.rejected()


def test_acts_once_per_alert_fingerprint(make, served) -> None:
    c = make()
    [d] = c.handle(payload(down("node-a", "1", "fp-once")))
    assert d.result == "acted" and not served.fleet.control.accepting("node-a", "1")
    [again] = c.handle(payload(down("node-a", "1", "fp-once")))  # Alertmanager re-sends the group
    assert again.result == "duplicate"
    assert len(served.actions("drain")) == 1
    assert counted(c, "drain", "acted") == 1 and counted(c, "drain", "duplicate") == 1


def test_rate_limit_per_device_family_and_per_cluster(make, served) -> None:
    c = make(policy_with(max_actions_per_hour={"device_family": 2, "cluster": 3}, max_drained_ratio=1.0))
    results = [c.handle(payload(down("node-a", dev, f"fp-rl{dev}", vendor="furiosa")))[0] for dev in "012"]
    assert [r.result for r in results] == ["acted", "acted", "refused_rate_limit"]
    assert "device family 'furiosa'" in results[2].reason
    other = c.handle(payload(down("node-b", "0", "fp-rl-b0", vendor="aws")))[0]
    assert other.result == "acted"  # another family still has budget, the cluster has 3
    last = c.handle(payload(down("node-b", "2", "fp-rl-b2", vendor="habana")))[0]
    assert last.result == "refused_rate_limit" and "cluster 'default'" in last.reason
    assert len(served.actions("drain")) == 3


def test_capacity_floor_refuses_the_second_drain_of_a_model(make, served) -> None:
    c = make()  # default: at most 20 % of a model's 8 devices drained
    assert c.handle(payload(down("node-a", "1", "fp-cap1")))[0].result == "acted"
    second = c.handle(payload(down("node-b", "3", "fp-cap2")))[0]
    assert second.result == "refused_capacity" and "2 of 8 devices" in second.reason
    assert served.fleet.control.accepting("node-b", "3") and len(served.actions("drain")) == 1


def test_no_action_during_a_maintenance_silence(make, served, alertmanager_server) -> None:
    ids = maintenance.start(alertmanager_server, ["node-b"], duration=timedelta(minutes=10),
                            comment="CHG-1 firmware update", created_by="test")
    try:
        c = make()
        d = c.handle(payload(down("node-b", "2", "fp-maint")))[0]
        assert d.result == "refused_maintenance" and "CHG-1" in d.reason
        elsewhere = c.handle(payload(down("node-a", "2", "fp-maint-a")))[0]
        assert elsewhere.result == "acted"  # node-a is not in maintenance
    finally:
        for i in ids:
            alertmanager_server.expire_silence(i)
    assert served.fleet.control.accepting("node-b", "2")


def test_unreachable_alertmanager_means_no_action(make, served) -> None:
    c = make(alertmanager=AlertmanagerAPI("http://127.0.0.1:9", timeout=1))
    d = c.handle(payload(down("node-a", "1", "fp-noam")))[0]
    assert d.result == "error" and "maintenance" in d.reason
    assert served.actions("drain") == []


def test_rollback_only_with_a_previous_version(make, served) -> None:
    c = make()
    acc = alert("NpuAccuracyDeltaHigh", "fp-acc1", node="node-b", device="1", model="digits-mlp",
                severity="ticket", failure_mode="F3")
    first = c.handle(payload(acc))[0]
    assert first.result == "refused_condition" and "no previous version" in first.reason
    served.fleet.control.rollout("digits-mlp", "v2", {"calibration": "bad"})
    acc2 = alert("NpuAccuracyDeltaHigh", "fp-acc2", node="node-b", device="1", model="digits-mlp",
                 severity="ticket", failure_mode="F3")
    second = alert("NpuAccuracyDeltaHigh", "fp-acc3", node="node-a", device="0", model="digits-mlp",
                   severity="ticket", failure_mode="F3")
    results = [d.result for d in c.handle(payload(acc2, second))]
    assert results == ["acted", "cooldown"]  # eight devices alerting is one rollback
    assert served.fleet.control.current_version("digits-mlp")[0] == "v1"


def test_controller_restart_mid_action_does_not_act_twice(make, served, prometheus_server, tmp_path) -> None:
    doc = yaml.safe_load(_default_text())
    doc["rules"][0]["verify"] = {"clears": "vector(1) > 0", "within": "1h"}  # stays unverified while we restart
    policy = parse_policy(doc, "test")
    first = make(policy, prometheus=prometheus_server)
    assert first.handle(payload(down("node-a", "1", "fp-restart")))[0].result == "acted"
    first.stop()
    first.state.close()  # the controller dies with the action unverified
    # and one that died inside the control call: its record says "acting", the call's fate is unknown
    crashed = StateStore(tmp_path / "state")
    crashed.put("fp-crash@2026-12-07T10:00:00Z", {"alertname": "NpuDeviceDown", "fingerprint": "fp-crash",
                                                   "action": "drain", "target": {"node": "node-b", "device": "0"},
                                                   "status": "acting", "at": time.time()})
    crashed.close()
    second = make(policy, prometheus=prometheus_server)
    second.resume()
    assert {e["fingerprint"] for e in audit(second) if e["result"] == "resumed"} == {"fp-restart", "fp-crash"}
    assert second.handle(payload(down("node-a", "1", "fp-restart")))[0].result == "duplicate"
    assert second.handle(payload(down("node-b", "0", "fp-crash")))[0].result == "duplicate"
    assert len(served.actions("drain")) == 1


def test_one_controller_per_state_dir(tmp_path) -> None:
    held = StateStore(tmp_path / "s")
    try:
        with pytest.raises(StateDirError, match="another npuobs remediate"):
            StateStore(tmp_path / "s")
    finally:
        held.close()
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(StateDirError, match="writable by group or others"):
        StateStore(tmp_path / "open")


def test_failed_verification_undoes_and_pages(make, served, prometheus_server, sink) -> None:
    doc = yaml.safe_load(_default_text())
    doc["rules"][0]["verify"] = {"clears": "vector(1) > 0", "within": "1s"}  # never clears
    c = make(parse_policy(doc, "test"), prometheus=prometheus_server)
    sink.clear()
    assert c.handle(payload(down("node-a", "2", "fp-verify"), group_key=GROUP))[0].result == "acted"
    deadline = time.time() + 20
    while time.time() < deadline and not any(e["result"] == "verify_failed" for e in audit(c)):
        time.sleep(0.2)
    failed = [e for e in audit(c) if e["result"] == "verify_failed"]
    assert failed and "undone with undrain" in failed[0]["reason"]
    assert served.fleet.control.accepting("node-a", "2")  # undone
    pages = [e for e in sink.events(PAGE_KEY) if e["dedup_key"] == "npuobs-remediate/fp-verify"]
    assert pages and "tried drain" in pages[0]["payload"]["summary"]
    assert counted(c, "drain", "verify_failed") == 1


def wait_result(c: Controller, result: str, timeout: float = 20) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline and not any(e["result"] == result for e in audit(c)):
        time.sleep(0.2)
    return [e for e in audit(c) if e["result"] == result]


def test_verification_clears_on_a_real_prometheus(make, served, prometheus_server) -> None:
    doc = yaml.safe_load(_default_text())
    # the condition holds for 3 more seconds, then clears
    doc["rules"][0]["verify"] = {"clears": f"vector(time()) < {time.time() + 3:.0f}", "within": "30s"}
    c = make(parse_policy(doc, "test"), prometheus=prometheus_server)
    c.handle(payload(down("node-a", "3", "fp-ok")))
    [verified] = wait_result(c, "verified")
    assert "cleared" in verified["reason"] and counted(c, "drain", "verified") == 1


def test_a_verify_query_that_never_held_proves_nothing(make, served, prometheus_server) -> None:
    doc = yaml.safe_load(_default_text())
    doc["rules"][0]["verify"] = {"clears": 'up{job="no-such-job"} == 1', "within": "30s"}  # never returns anything
    c = make(parse_policy(doc, "test"), prometheus=prometheus_server)
    c.handle(payload(down("node-a", "3", "fp-vacuous")))
    [unverified] = wait_result(c, "unverified")
    assert "cannot tell whether this worked" in unverified["reason"]
    assert counted(c, "drain", "verified") == 0


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(("body", "says"), [
    (b"{nope", "not JSON"),
    (b"[]", "JSON object"),
    (json.dumps({**payload(), "version": "3"}).encode(), "version"),
    (json.dumps({**payload(), "alerts": {"a": 1}}).encode(), "'alerts' must be a list"),
    (json.dumps(payload({**down("n", "0", "f"), "labels": {"node": "n"}})).encode(), "no alertname"),
    (json.dumps(payload({**down("n", "0", "f"), "status": "burning"})).encode(), "status"),
    (json.dumps(payload({**down("n", "0", "f"), "fingerprint": ""})).encode(), "fingerprint"),
    (json.dumps(payload({**down("n", "0", "f"), "labels": {"alertname": "X", "n": 1}})).encode(), "string values"),
])
def test_bad_webhook_payloads_get_400_and_nothing_is_done(make, served, body: bytes, says: str) -> None:
    c = make()
    server = WebhookServer(c).start()
    try:
        status, doc = _post(server.url + "/webhook", body)
        assert status == 400 and says in doc["error"]
        assert audit(c) == [] and served.actions("drain") == []
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp:
            assert b"npuobs_remediation_actions_total{" not in resp.read()
        status, doc = _post(server.url + "/webhook", json.dumps(payload(down("node-a", "1", "fp-good"))).encode())
        assert status == 200 and doc["decisions"][0]["result"] == "acted"
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp:
            assert b'npuobs_remediation_actions_total{action="drain",result="acted"} 1.0' in resp.read()
    finally:
        server.stop()
