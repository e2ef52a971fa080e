"""Maintenance windows against a real Alertmanager (API v2), cross-checked with the real ``amtool``."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from npuobs.alerting import maintenance
from npuobs.amapi import AlertmanagerAPI, AlertmanagerUnreachable, Matcher
from npuobs.cli.main import main
from npuobs.stack.alertmanager import AlertmanagerServer
from npuobs.stack.proc import free_port


def _fire(api: AlertmanagerAPI, *alerts: dict[str, str]) -> None:
    api.request("/api/v2/alerts", method="POST", body=[{"labels": labels} for labels in alerts])


def _states(api: AlertmanagerAPI, node_prefix: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(alertname, node, device) -> status, for the alerts this test fired."""
    return {(a["labels"]["alertname"], a["labels"].get("node", ""), a["labels"].get("device", "")): a["status"]
            for a in api.alerts() if a["labels"].get("test") == node_prefix}


def test_a_window_silences_npuobs_alerts_on_its_node_only(alertmanager_server: AlertmanagerServer,
                                                          amtool_bin: str) -> None:
    api, tag = alertmanager_server, "w1"
    (silence_id,) = maintenance.start(api, ["w1-a"], duration=timedelta(hours=1), comment="CHG-1 driver upgrade",
                                      created_by="test")
    try:
        _fire(api, {"alertname": "NpuDeviceDown", "node": "w1-a", "device": "0", "test": tag},
              {"alertname": "NpuDeviceDown", "node": "w1-b", "device": "0", "test": tag},
              {"alertname": "NpuAvailabilityErrorBudgetBurn", "slo": "s", "test": tag},  # no node: stays live
              {"alertname": "KubeNodeNotReady", "node": "w1-a", "test": tag})  # not ours: stays live
        states = _states(api, tag)
        assert states[("NpuDeviceDown", "w1-a", "0")] == {"state": "suppressed", "silencedBy": [silence_id],
                                                           "inhibitedBy": []}
        assert {k: s["state"] for k, s in states.items() if k[1] != "w1-a" or k[0] != "NpuDeviceDown"} == {
            ("NpuDeviceDown", "w1-b", "0"): "active", ("NpuAvailabilityErrorBudgetBurn", "", ""): "active",
            ("KubeNodeNotReady", "w1-a", ""): "active"}
        (window,) = [w for w in maintenance.windows(api) if w.id == silence_id]
        assert (window.node, window.device, window.state, window.created_by, window.comment) == (
            "w1-a", "", "active", "test", "CHG-1 driver upgrade")
        # the real amtool reads the same silence
        out = subprocess.run([amtool_bin, "silence", "query", f"--alertmanager.url={api.url}", "-o", "json"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
        (seen,) = [s for s in json.loads(out) if s["id"] == silence_id]
        assert {str(Matcher.from_api(m)) for m in seen["matchers"]} == {'alertname=~"Npu.+"', 'node="w1-a"'}
    finally:
        assert maintenance.end(api, node="w1-a") == [silence_id]
    assert _states(api, tag)[("NpuDeviceDown", "w1-a", "0")]["state"] == "active"
    assert silence_id not in {w.id for w in maintenance.windows(api)}
    assert silence_id in {w.id for w in maintenance.windows(api, include_expired=True)}


def test_device_windows_end_by_id_and_a_wrong_id_ends_nothing(alertmanager_server: AlertmanagerServer) -> None:
    api, tag = alertmanager_server, "w2"
    ids = maintenance.start(api, ["w2-a", "w2-b"], device="1", duration=timedelta(minutes=30), comment="reseat",
                            created_by="test")
    _fire(api, *({"alertname": "NpuThermalThrottling", "node": n, "device": d, "test": tag}
                 for n in ("w2-a", "w2-b") for d in ("0", "1")))
    assert {k: s["state"] for k, s in _states(api, tag).items()} == {
        ("NpuThermalThrottling", "w2-a", "0"): "active", ("NpuThermalThrottling", "w2-a", "1"): "suppressed",
        ("NpuThermalThrottling", "w2-b", "0"): "active", ("NpuThermalThrottling", "w2-b", "1"): "suppressed"}
    with pytest.raises(ValueError, match="not an open npuobs maintenance window: nope"):
        maintenance.end(api, ids=[ids[0], "nope"])
    assert {w.id for w in maintenance.windows(api)} >= set(ids)  # nothing was expired
    assert maintenance.end(api, ids=ids) == ids
    assert all(s["state"] == "active" for s in _states(api, tag).values())


def test_hand_made_silences_are_left_alone(alertmanager_server: AlertmanagerServer) -> None:
    api = alertmanager_server
    now = datetime.now(timezone.utc)
    theirs = api.create_silence([Matcher("node", "w3-a")], now, now + timedelta(hours=1), created_by="someone",
                                comment="kernel patching")
    try:
        assert theirs not in {w.id for w in maintenance.windows(api)}
        assert maintenance.end(api, node="w3-a") == []
        with pytest.raises(ValueError, match="not an open npuobs maintenance window"):
            maintenance.end(api, ids=[theirs])
        assert theirs in {s["id"] for s in api.silences() if s["status"]["state"] == "active"}
    finally:
        api.expire_silence(theirs)


@pytest.mark.parametrize("kwargs, error", [
    ({"nodes": []}, "at least one node"),
    ({"nodes": ["n1", ""]}, "none of them empty"),  # node="" would silence the SLO alerts
    ({"duration": timedelta(0)}, "positive duration"),
    ({"comment": "  "}, "say why"),
])
def test_start_rejects_incomplete_windows(kwargs: dict[str, Any], error: str) -> None:
    args = {"nodes": ["n"], "duration": timedelta(hours=1), "comment": "c", "created_by": "t", **kwargs}
    nodes = args.pop("nodes")
    with pytest.raises(ValueError, match=error):
        maintenance.start(AlertmanagerAPI("http://127.0.0.1:1"), nodes, **args)  # fails before any request


def test_cli_start_list_end(alertmanager_server: AlertmanagerServer, capsys: pytest.CaptureFixture[str]) -> None:
    base, am = ["alerts", "maintenance"], ["--alertmanager", alertmanager_server.url]
    assert main([*base, "start", "--node", "w4-a", "--node", "w4-b", "--duration", "90m",
                 "--comment", "CHG-7 firmware 1.8", "--created-by", "oncall", *am]) == 0
    started = capsys.readouterr().out.splitlines()
    assert [line.split()[1:] for line in started] == [
        ["w4-a:", "npuobs", "alerts", "silenced", "for", "1h30m"], ["w4-b:", "npuobs", "alerts", "silenced", "for",
                                                                    "1h30m"]]
    ids = [line.split()[0] for line in started]
    assert main([*base, "list", *am]) == 0
    listing = capsys.readouterr().out
    assert listing.splitlines()[0].split() == ["id", "node", "device", "state", "starts", "ends", "created", "by",
                                               "comment"]
    for silence_id in ids:
        assert any(line.startswith(silence_id) and "CHG-7 firmware 1.8" in line and "oncall" in line
                   for line in listing.splitlines())
    assert main([*base, "end", "--node", "w4-a", *am]) == 0
    assert capsys.readouterr().out == f"{ids[0]}  ended\n"
    assert main([*base, "end", ids[1], *am]) == 0
    assert main([*base, "end", "--node", "w4-a", *am]) == 0
    assert capsys.readouterr().out == f"{ids[1]}  ended\nno open npuobs maintenance window on w4-a\n"


def test_cli_says_what_is_wrong(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["alerts", "maintenance", "list", "--alertmanager", url]) == 2
    assert f"cannot reach Alertmanager at {url}" in capsys.readouterr().err
    monkeypatch.setenv("NPUOBS_ALERTMANAGER_URL", url)  # the environment names the default
    assert main(["alerts", "maintenance", "list"]) == 2
    assert f"cannot reach Alertmanager at {url}" in capsys.readouterr().err
    assert main(["alerts", "maintenance", "end", "--alertmanager", url]) == 2
    assert "name the windows to end (ids) or a node" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["alerts", "maintenance", "start", "--node", "n", "--duration", "soon", "--comment", "c"])
    assert exit_info.value.code == 2
    assert "not a duration like 30d" in capsys.readouterr().err


def test_a_partly_opened_window_says_which_nodes_are_silenced(alertmanager_server: AlertmanagerServer) -> None:
    """Alertmanager goes away after the first node's silence: that window stays open and the error names
    it, so nobody believes nothing was silenced."""

    class GoneAfterOne(AlertmanagerAPI):
        def create_silence(self, *args: Any, **kwargs: Any) -> str:
            if self.created:
                raise AlertmanagerUnreachable(f"cannot reach Alertmanager at {self.url}: connection refused")
            self.created = super().create_silence(*args, **kwargs)
            return self.created

    api = GoneAfterOne(alertmanager_server.url)
    api.created = ""
    with pytest.raises(AlertmanagerUnreachable, match=r"connection refused; windows already open: w5-a \(\S+\)$"):
        maintenance.start(api, ["w5-a", "w5-b"], duration=timedelta(minutes=5), comment="c", created_by="t")
    assert [w.node for w in maintenance.windows(alertmanager_server) if w.id == api.created] == ["w5-a"]
    assert maintenance.end(alertmanager_server, ids=[api.created]) == [api.created]
