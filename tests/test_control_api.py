"""The control API over real HTTP: authentication, bad requests, bounds, and actions reaching the fleet."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from npuobs.instrumentation.controlserver import (
    ControlAPIError,
    ControlAuth,
    ControlAuthError,
    ControlClient,
    ControlServer,
)
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import DEFAULT_MODEL, Fleet, FleetConfig
from npuobs.stack.fleetrun import FleetRunner

pytestmark = pytest.mark.integration
NODE = "node-0"
TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def served(tmp_path: Path):
    fleet = Fleet(FleetConfig.single_node(2, seed=1, node=NODE), tmp_path / "sim", VirtualClock())
    fleet.run(5)
    basic = tmp_path / "basic"
    basic.write_text("oncall:correct horse\n")
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    server = ControlServer(fleet.control, ControlAuth.from_files(token, basic), max_connections=2).start()
    try:
        yield fleet, server
    finally:
        server.stop()


def raw(url: str, method: str = "GET", body: bytes | None = None, auth: str | None = f"Bearer {TOKEN}"):
    headers = {"Authorization": auth} if auth else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_every_v1_call_needs_credentials(served) -> None:
    fleet, server = served
    assert raw(server.url + "/-/healthy", auth=None)[0] == 200
    assert raw(server.url + "/v1/state", auth=None)[0] == 401
    assert raw(server.url + "/v1/state", auth="Bearer wrong")[0] == 401
    status, _ = raw(server.url + "/v1/devices/drain", "POST", b'{"node": "node-0", "device": "0"}', auth=None)
    assert status == 401 and fleet.control.accepting(NODE, "0")  # nothing done
    basic = "Basic " + base64.b64encode(b"oncall:correct horse").decode()
    assert raw(server.url + "/v1/state", auth=basic)[0] == 200
    assert raw(server.url + "/v1/state", auth="Basic " + base64.b64encode(b"oncall:nope").decode())[0] == 401


def test_bad_requests_get_clear_errors_and_change_nothing(served) -> None:
    fleet, server = served
    drain = server.url + "/v1/devices/drain"
    assert raw(drain, "POST", b"{not json")[0] == 400
    status, doc = raw(drain, "POST", b'{"node": "node-0"}')
    assert status == 400 and "device" in doc["error"]
    assert raw(drain, "POST", b"[1, 2]")[0] == 400
    status, doc = raw(drain, "POST", b'{"node": "node-0", "device": "9"}')
    assert status == 404 and "no device '9'" in doc["error"]
    status, doc = raw(server.url + "/v1/models/serving-path", "POST", b'{"model": "digits-mlp", "path": "tpu"}')
    assert status == 400 and "unknown serving path" in doc["error"]
    status, doc = raw(server.url + "/v1/models/rollback", "POST", b'{"model": "digits-mlp"}')
    assert status == 409 and "no previous version" in doc["error"]
    status, doc = raw(server.url + "/v1/models/rollout", "POST",
                      b'{"model": "digits-mlp", "version": "v2", "attributes": {"calibration": "odd"}}')
    assert status == 500 and "unknown calibration" in doc["error"]
    assert raw(server.url + "/v1/nothing", "POST", b"{}")[0] == 404
    assert raw(drain, "POST", b"x" * (70 * 1024))[0] == 413
    assert fleet.control.drained() == set()
    assert fleet.control.current_version(DEFAULT_MODEL)[0] == "v1"


def test_client_actions_reach_the_fleet(served) -> None:
    fleet, server = served
    client = ControlClient(server.url, ControlAuth(token=TOKEN))
    assert client.act("drain", by="test", node=NODE, device="1")["changed"]
    fleet.run(3)
    dev = {d["device"]: d for d in client.state()["devices"]}["1"]
    assert dev["drained"] and dev["drain_complete"]
    client.act("rollout", model=DEFAULT_MODEL, version="v2")
    entry = client.act("rollback", model=DEFAULT_MODEL)
    assert (entry["version"], entry["from"]) == ("v1", "v2")
    client.act("serving-path", model=DEFAULT_MODEL, path="cpu")
    assert client.state()["models"][0]["serving_path"] == "cpu"
    client.act("reset", node=NODE, device="0")
    assert any(f.kind == "RESET" and f.reason == "user" for f in fleet.faults.read())
    with pytest.raises(ControlAPIError) as refused:
        ControlClient(server.url, ControlAuth(token="bad")).state()
    assert refused.value.status == 401


def test_connections_beyond_the_cap_are_refused_at_once(served) -> None:
    _, server = served
    host, port = server.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(2)]  # hold both slots
    try:
        with socket.create_connection((host, int(port)), timeout=5) as third:
            third.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            assert third.recv(100).startswith(b"HTTP/1.1 503")
    finally:
        for s in idle:
            s.close()


def test_credentials_files_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ControlAuthError, match="needs credentials"):
        ControlAuth.from_files()
    bad = tmp_path / "basic"
    bad.write_text("no-colon-here\n")
    with pytest.raises(ControlAuthError, match="user:password"):
        ControlAuth.from_files(basic_auth_file=bad)
    with pytest.raises(ControlAuthError, match="cannot read"):
        ControlAuth.from_files(token_file=tmp_path / "missing")


def test_fleet_runner_serves_its_fleet_with_a_private_token(tmp_path: Path) -> None:
    with FleetRunner(tmp_path / "sim", FleetConfig.single_node(1, node=NODE), speed=None).start() as runner:
        assert runner.control_token_file is not None
        assert runner.control_token_file.stat().st_mode & 0o777 == 0o600
        auth = ControlAuth.from_files(runner.control_token_file)
        state = ControlClient(runner.control_url, auth).state()
        assert [d["device"] for d in state["devices"]] == ["0"]


def test_sim_run_refuses_a_control_api_without_credentials(tmp_path: Path, capsys) -> None:
    from npuobs.cli.main import main

    code = main(["sim", "run", "--devices", "1", "--state-dir", str(tmp_path), "--duration", "1s", "--fast",
                 "--quiet", "--control-listen", "127.0.0.1:0"])
    assert code == 2
    assert "needs credentials" in capsys.readouterr().err
