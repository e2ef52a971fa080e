"""The real-stack runners against the real binaries: start, query, deliver, stop without leftovers."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from npuobs.stack import AlertmanagerServer, ManagedProcess, PagerDutySink, PrometheusServer, wait_http_ok
from npuobs.stack.pagerduty_sink import validate_event
from npuobs.stack.proc import StackError, free_port

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
VALID_TRIGGER: dict[str, Any] = {
    "routing_key": ROUTING_KEY,
    "event_action": "trigger",
    "dedup_key": "npu-node-1-0",
    "payload": {"summary": "NPU 0 on node-1 is down", "source": "node-1", "severity": "critical"},
    "links": [{"href": "https://example.invalid/runbooks/NpuDeviceDown.md", "text": "runbook"}],
}


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, waiting for a reaper that may be a bare PID 1) is dead."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_prometheus_scrapes_itself(prometheus_server: PrometheusServer) -> None:
    result = prometheus_server.wait_for('up{job="prometheus"}', lambda r: bool(r) and r[0]["value"][1] == "1",
                                        timeout=20)
    assert result[0]["metric"]["job"] == "prometheus"
    assert prometheus_server.query("1 + 1")[0]["value"][1] == "2"


def test_prometheus_query_error_raises(prometheus_server: PrometheusServer) -> None:
    with pytest.raises(StackError, match="bad_data"):
        prometheus_server.query("sum(")


def test_prometheus_reload(prometheus_server: PrometheusServer) -> None:
    prometheus_server.reload()
    assert prometheus_server.process.running


def test_alertmanager_accepts_and_lists_alerts(alertmanager_server: AlertmanagerServer) -> None:
    alert = [{"labels": {"alertname": "StackSmoke", "severity": "ticket"},
              "annotations": {"summary": "smoke"}}]
    assert _post(f"{alertmanager_server.url}/api/v2/alerts", alert)[0] == 200
    names = [a["labels"]["alertname"] for a in alertmanager_server.alerts()]
    assert "StackSmoke" in names


def test_pagerduty_sink_accepts_valid_trigger_and_resolve(tmp_path: Path) -> None:
    log = tmp_path / "pages.jsonl"
    with PagerDutySink(log_path=log) as sink:
        status, body = _post(sink.enqueue_url, VALID_TRIGGER)
        assert (status, body) == (202, {"status": "success", "message": "Event processed",
                                        "dedup_key": "npu-node-1-0"})
        status, _ = _post(sink.enqueue_url, {"routing_key": ROUTING_KEY, "event_action": "resolve",
                                             "dedup_key": "npu-node-1-0"})
        assert status == 202
        resolved = sink.wait_for(lambda e: e["event_action"] == "resolve", timeout=1)
        assert resolved["dedup_key"] == "npu-node-1-0"
        assert [e["event_action"] for e in sink.events(ROUTING_KEY)] == ["trigger", "resolve"]
        assert sink.events("f" * 32) == []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["event_action"] for line in lines] == ["trigger", "resolve"]


def test_pagerduty_sink_assigns_dedup_key_when_trigger_has_none() -> None:
    with PagerDutySink() as sink:
        event = {k: v for k, v in VALID_TRIGGER.items() if k != "dedup_key"}
        status, body = _post(sink.enqueue_url, event)
        assert status == 202 and body["dedup_key"]


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda e: e.pop("routing_key"), "routing_key"),
    (lambda e: e.update(routing_key="short"), "Length of 'routing_key'"),
    (lambda e: e.update(event_action="escalate"), "event_action"),
    (lambda e: e.pop("payload"), "payload"),
    (lambda e: e["payload"].pop("summary"), "payload.summary"),
    (lambda e: e["payload"].pop("source"), "payload.source"),
    (lambda e: e["payload"].update(severity="page"), "payload.severity"),
    (lambda e: e.update(event_action="resolve", dedup_key=None), "dedup_key"),
    (lambda e: e.update(links=[{"text": "no href"}]), "links[0].href"),
])
def test_pagerduty_sink_rejects_malformed_events(mutate: Any, error: str) -> None:
    event = json.loads(json.dumps(VALID_TRIGGER))
    mutate(event)
    if event.get("dedup_key") is None:
        event.pop("dedup_key", None)
    with PagerDutySink() as sink:
        status, body = _post(sink.enqueue_url, event)
        assert status == 400
        assert body["status"] == "invalid event"
        assert any(error in e for e in body["errors"]), body
        assert sink.events() == []
        assert len(sink.rejected()) == 1


def test_pagerduty_sink_rejects_non_json() -> None:
    with PagerDutySink() as sink:
        status, body = _post(sink.enqueue_url, b"{not json")
        assert status == 400 and body["errors"] == ["Malformed JSON"]


def test_validate_event_accepts_what_alertmanager_sends() -> None:
    assert validate_event(VALID_TRIGGER) == []


def test_pagerduty_sink_standalone_process(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "pages.jsonl"
    argv = [sys.executable, "-m", "npuobs.stack.pagerduty_sink",
            "--listen", f"127.0.0.1:{port}", "--log", str(log)]
    with ManagedProcess(argv, tmp_path / "sink.log") as proc:
        wait_http_ok(f"http://127.0.0.1:{port}/-/healthy", timeout=10, process=proc)
        assert _post(f"http://127.0.0.1:{port}/v2/enqueue", VALID_TRIGGER)[0] == 202
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/events", timeout=5) as resp:
            assert [e["dedup_key"] for e in json.load(resp)] == ["npu-node-1-0"]
    assert proc.poll() == 0, proc.log_tail()
    assert len(log.read_text().splitlines()) == 1


def test_managed_process_stop_kills_whole_group(tmp_path: Path) -> None:
    # A child that ignores SIGTERM and a grandchild: stop() must escalate and leave neither behind.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess([sys.executable, "-c", script], tmp_path / "p.log").start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "p.log").read_text().strip():
        assert time.monotonic() < deadline, "grandchild never started"
        time.sleep(0.02)
    grandchild = int((tmp_path / "p.log").read_text().split()[0])
    leader = proc.pid
    proc.stop(grace=0.5)
    assert not _pid_alive(leader)
    assert not _pid_alive(grandchild)
    assert proc.stop() is not None  # idempotent


def test_servers_leave_no_process_behind(prometheus_bin: str, alertmanager_bin: str, tmp_path: Path) -> None:
    prom = PrometheusServer.start({"global": {"scrape_interval": "15s"}}, tmp_path / "p",
                                  binary=prometheus_bin)
    am = AlertmanagerServer.start({"route": {"receiver": "null"}, "receivers": [{"name": "null"}]},
                                  tmp_path / "a", binary=alertmanager_bin)
    pids = [prom.process.pid, am.process.pid]
    prom.stop()
    am.stop()
    assert not any(_pid_alive(pid) for pid in pids)


def test_start_failure_is_reported_with_log(prometheus_bin: str, tmp_path: Path) -> None:
    with pytest.raises(StackError, match="exited"):
        PrometheusServer.start({"scrape_configs": [{"no_job_name": True}]}, tmp_path, binary=prometheus_bin)
