"""``npuobs demo`` end to end, as a user runs it: start, scrape, inject a fault, see the page, stop, no orphans."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

PAGE_WAIT_SECONDS = 150


def _wait_line(proc: subprocess.Popen[str], pattern: str, timeout: float, seen: list[str]) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"demo never printed {pattern!r}; output:\n{''.join(seen)}")


def _query(base: str, promql: str) -> list[dict]:
    url = f"{base}api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)["data"]["result"]


def _exemplar_trace_ids(base: str, selector: str) -> set[str]:
    now = time.time()
    params = urllib.parse.urlencode({"query": selector, "start": f"{now - 300:.3f}", "end": f"{now:.3f}"})
    with urllib.request.urlopen(f"{base}api/v1/query_exemplars?{params}", timeout=5) as resp:
        data = json.load(resp)["data"]
    return {e["labels"].get("trace_id", "") for series in data for e in series["exemplars"]}


@pytest.mark.usefixtures("prometheus_bin", "alertmanager_bin")
def test_demo_pages_on_device_offline_and_stops_clean(tmp_path: Path) -> None:
    state = tmp_path / "sim"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "npuobs.cli.main", "demo", "--duration", "240",
                             "--workdir", str(tmp_path / "work"), "--state-dir", str(state), "--alert-for-cap", "5s"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen: list[str] = []
    try:
        dash = _wait_line(proc, r"dashboards\s+(http://\S+/)", 90, seen).group(1)
        prom = _wait_line(proc, r"prometheus\s+(http://\S+/)", 10, seen).group(1)
        hint = _wait_line(proc, r"^\s*(npuobs alerts maintenance start .*?)\s+# silence a node", 10, seen).group(1)
        _wait_line(proc, r"Ctrl-C stops everything", 10, seen)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert {c.name() for c in children} >= {"prometheus", "prometheus-alertmanager"}
        ports = [c.laddr.port for c in psutil.Process(proc.pid).net_connections() if c.status == "LISTEN"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            up = _query(prom, 'up{job="npuobs"}')
            if len(up) == 2 and all(r["value"][1] == "1" for r in up):
                break
            time.sleep(1)
        else:
            raise AssertionError(f"exporters never came up in Prometheus: {up}")
        assert len(_query(prom, "npu_device_up == 1")) == 8
        deadline = time.monotonic() + 60  # the demo's Prometheus stores exemplars: latency -> trace id
        while not (trace_ids := _exemplar_trace_ids(prom, "npu_inference_latency_seconds_bucket")):
            assert time.monotonic() < deadline, "no exemplars stored by the demo's Prometheus"
            time.sleep(1)
        assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)

        # the banner's maintenance hint works as printed against the demo's Alertmanager (ended before F1)
        npuobs = [sys.executable, "-m", "npuobs.cli.main"]
        started = subprocess.run([*npuobs, *shlex.split(hint)[1:]], capture_output=True, text=True, timeout=60)
        assert started.returncode == 0 and "node-a: npuobs alerts silenced for 30m" in started.stdout, started
        am = re.search(r"--alertmanager (\S+)", hint).group(1)
        listed = subprocess.run([*npuobs, "alerts", "maintenance", "list", "--alertmanager", am],
                                capture_output=True, text=True, timeout=60)
        assert "planned work" in listed.stdout and "node-a" in listed.stdout, listed
        ended = subprocess.run([*npuobs, "alerts", "maintenance", "end", "--node", "node-a", "--alertmanager", am],
                               capture_output=True, text=True, timeout=60)
        assert ended.returncode == 0 and ended.stdout.endswith("ended\n"), ended

        inject = subprocess.run([sys.executable, "-m", "npuobs.cli.main", "sim", "inject", "F1", "--node", "node-a",
                                 "--device", "0", "--state-dir", str(state)], capture_output=True, text=True,
                                check=False, timeout=60)
        assert inject.returncode == 0, inject.stderr
        events = tmp_path / "work" / "pagerduty-events.jsonl"
        deadline = time.monotonic() + PAGE_WAIT_SECONDS
        page = None
        while time.monotonic() < deadline and page is None:
            lines = events.read_text().splitlines() if events.exists() else []
            for line in lines:
                body = json.loads(line)
                if "NpuDeviceDown" in json.dumps(body) and body.get("event_action") == "trigger":
                    page = body
            time.sleep(1)
        assert page is not None, f"no NpuDeviceDown page within {PAGE_WAIT_SECONDS}s; output:\n{''.join(seen)}"
        # the live on-call dashboard (drawn from the demo's Prometheus, no Grafana) shows the firing alert
        with urllib.request.urlopen(f"{dash}d/oncall", timeout=60) as resp:
            oncall = resp.read().decode()
        assert '<meta http-equiv="refresh"' in oncall and "<polyline" in oncall
        assert "<td>NpuDeviceDown</td>" in oncall, oncall[-3000:]
        assert page["payload"]["severity"] == "critical"
        assert any("runbooks/NpuDeviceDown.md" in link["href"] for link in page.get("links", []))

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        rest = proc.stdout.read()
        assert "npuobs demo: stopped" in rest
        for child in children:
            assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child
        listening = {c.laddr.port for c in psutil.net_connections() if c.status == "LISTEN"}
        assert not set(ports) & listening
    finally:  # a failing run must not leave its servers behind for the rest of the session
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
