"""``npuobs devices --backend sim --json`` against a running simulator (a wall-clock process, hence
integration), validated against the inventory JSON Schema like every vendor backend in
test_devices_inventory.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_devices_inventory import run_cli, validate

pytestmark = pytest.mark.integration


def test_devices_json_for_the_simulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "sim"
    # a running simulator: the state of one that has exited is stale and fails the sim backend
    sim = subprocess.Popen([sys.executable, "-m", "npuobs.cli.main", "sim", "run", "--devices", "2", "--quiet",
                            "--state-dir", str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (state / "nodes" / "node-0" / "devices" / "1.json").exists():
            assert sim.poll() is None and time.monotonic() < deadline, sim.stderr.read() if sim.stderr else ""
            time.sleep(0.1)
        code, out, err = run_cli(capsys, "--backend", "sim", "--state-dir", str(state), "--json")
    finally:
        sim.kill()
        sim.wait()
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    assert [d["device"] for d in doc["devices"]] == ["0", "1"]
    assert all(d["ops"] and d["readings"]["energy_joules_total"] >= 0 for d in doc["devices"])
