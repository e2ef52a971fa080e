"""The simulator's state tree under bad days: one typed document, staleness, counter recovery,
corrupt control input, private directories (issue 15 items 2, 3, 4, 6; issue 14 item 4)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from npuobs.devices.base import BackendError
from npuobs.devices.sim import SimBackend
from npuobs.simulator.faults import FaultBook, FaultError
from npuobs.simulator.fleet import Fleet, FleetConfig
from npuobs.simulator.state import (
    StateError,
    default_state_dir,
    device_file,
    ensure_private_dir,
    previous_file,
    publisher,
    read_device_state,
    stale_reason,
)
from npuobs.statedoc import DOCUMENT_VERSION, DeviceState, DocumentError

pytestmark = pytest.mark.unit

NOBODY = 65534


def _fleet(state: Path, devices: int = 2) -> Fleet:
    return Fleet(FleetConfig.single_node(devices, node="n"), state)


# --- one typed document ------------------------------------------------------------------------------

def test_document_round_trips_through_json_and_is_what_the_backend_reads(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    fleet.run(5)
    dev = fleet.device("n", "0")
    written = dev.to_state(fleet.clock.now)
    again = DeviceState.from_json(json.loads(json.dumps(written.to_json())), "x")
    assert again == written and again.version == DOCUMENT_VERSION
    on_disk = read_device_state(device_file(tmp_path, "n", "0"))
    assert on_disk.counters.energy_joules_total == pytest.approx(dev.physics.state.energy_joules)
    assert on_disk.publisher is not None and on_disk.publisher.pid == os.getpid()
    snap = SimBackend(state_dir=tmp_path, node="n").sample()
    assert snap.devices[0].energy_joules_total == on_disk.counters.energy_joules_total
    assert snap.devices[0].counters_epoch_started_at == on_disk.counters.epoch_started_at


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(version=99), "version 99 is not one this npuobs reads"),
    (lambda d: d["counters"].update(energy_joules_total="hot"), "counters.energy_joules_total: expected a finite"),
    (lambda d: d["counters"]["resets_total"].update(driver=-1), "counters.resets_total.driver: expected a non-neg"),
    (lambda d: d.update(state="melted"), "state: expected one of online, offline"),
    (lambda d: d.pop("runtime"), "runtime: missing"),
    (lambda d: d["sensors"].update(healthy="yes"), "sensors.healthy: expected true or false"),
])
def test_document_rejects_what_it_did_not_write(tmp_path: Path, mutate, message: str) -> None:
    fleet = _fleet(tmp_path, 1)
    fleet.run(1)
    doc = fleet.device("n", "0").to_state(fleet.clock.now).to_json()
    mutate(doc)
    with pytest.raises(DocumentError, match=message):
        DeviceState.from_json(doc, "dev.json")


# --- staleness (item 2) --------------------------------------------------------------------------------

def test_publisher_of_a_dead_process_or_missed_heartbeats_is_stale() -> None:
    live = publisher(heartbeat_seconds=1.0)
    assert stale_reason(live) is None
    assert stale_reason(replace(live, heartbeat_seconds=None), now=live.published_at + 3600) is None  # finished run
    assert "not updated for 60.0s" in stale_reason(live, now=live.published_at + 60)
    assert stale_reason(live, now=live.published_at + 9) is None  # never sooner than STALE_MIN_SECONDS
    dead = replace(live, pid=2**22 + 12345)  # beyond pid_max: no such process
    assert "is gone" in stale_reason(dead)
    reused = replace(live, started_at=live.started_at - 1000)  # same pid, another process
    assert "is gone" in stale_reason(reused)
    other_ns = replace(dead, pid_namespace="pid:[1]")  # another namespace: the pid means nothing here
    assert stale_reason(other_ns) is None


def test_sim_backend_fails_on_a_stale_node(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path)
    fleet.publish(heartbeat_seconds=0.5)
    backend = SimBackend(state_dir=tmp_path, node="n")
    assert len(backend.sample().devices) == 2
    for dev in ("0", "1"):  # the same documents, written 30 s ago by a simulator that promised 0.5 s
        path = device_file(tmp_path, "n", dev)
        doc = json.loads(path.read_text())
        doc["publisher"]["published_at"] -= 30
        path.write_text(json.dumps(doc))
    with pytest.raises(BackendError, match=r"simulated node 'n': state in .* is stale: not updated for 3\d\.\ds"):
        backend.sample()


# --- counters never silently reset (item 3) ---------------------------------------------------------

def _counters(state: Path) -> tuple[float, int]:
    s = read_device_state(device_file(state, "n", "0"))
    return s.counters.energy_joules_total, sum(s.runtime.tenants["canary"].requests.values())


def test_truncated_current_file_recovers_from_the_previous_generation(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    _fleet(tmp_path).run(30)
    energy, requests = _counters(tmp_path)
    prev = read_device_state(previous_file(device_file(tmp_path, "n", "0")))
    assert 0 < prev.counters.energy_joules_total <= energy
    path = device_file(tmp_path, "n", "0")
    path.write_bytes(path.read_bytes()[:100])  # torn write
    with caplog.at_level(logging.WARNING, "npuobs.simulator"):
        fleet = _fleet(tmp_path)
    fleet.run(2)
    after_energy, after_requests = _counters(tmp_path)
    assert after_energy >= prev.counters.energy_joules_total and after_requests >= 1
    assert after_energy > 0.9 * energy  # recovered, not restarted from zero
    assert any("recovered counters from" in r.getMessage() and "n/0" in r.getMessage() for r in caplog.records)
    assert fleet.device("n", "0").resets["driver"] == prev.counters.resets_total["driver"]  # no reset counted


def test_no_readable_copy_starts_a_visible_new_epoch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _fleet(tmp_path)
    first.run(20)
    epoch0 = read_device_state(device_file(tmp_path, "n", "0")).counters.epoch_started_at
    for p in (device_file(tmp_path, "n", "0"), previous_file(device_file(tmp_path, "n", "0"))):
        p.write_text("{\"device\": ")
    with caplog.at_level(logging.ERROR, "npuobs.simulator"):
        fleet = _fleet(tmp_path)
    fleet.run(2)
    state = read_device_state(device_file(tmp_path, "n", "0"))
    assert state.counters.epoch_started_at > epoch0  # the epoch start moved: visible in the metric
    assert state.counters.resets_total["driver"] == 1  # and counted as a reset
    assert [r.getMessage() for r in caplog.records if "new epoch" in r.getMessage()][0].startswith("n/0: no readable")
    other = read_device_state(device_file(tmp_path, "n", "1"))
    assert other.counters.epoch_started_at == epoch0 and other.counters.resets_total["driver"] == 0


def test_epoch_start_is_served_as_a_metric(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, 1)
    fleet.run(2)
    reading = SimBackend(state_dir=tmp_path, node="n").sample().devices[0]
    assert reading.counters_epoch_started_at == fleet.clock.start


# --- corrupt control input, unwritable directories (item 4) -------------------------------------------

def test_corrupt_fault_file_is_reported_once_and_the_fleet_keeps_running(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    fleet = _fleet(tmp_path)
    fleet.faults.inject("F1", node="n", device="0", now=fleet.clock.now)
    fleet.run(2)
    fleet.faults.path.write_bytes(b"\xff\xfe not json")
    with caplog.at_level(logging.ERROR, "npuobs.simulator"):
        fleet.run(5)
    lines = [r.getMessage() for r in caplog.records if "fault control file" in r.getMessage()]
    assert len(lines) == 1 and "keeping the 1 fault(s) read before" in lines[0]
    assert not fleet.device("n", "0").online  # the fault read before the corruption stays in force
    with pytest.raises(FaultError, match="is unreadable"):
        fleet.faults.inject("F2", now=fleet.clock.now)
    assert fleet.faults.clear() == []  # clearing everything replaces the corrupt file
    fleet.run(2)
    assert fleet.device("n", "0").online


def test_fleet_restarted_on_a_corrupt_fault_file_starts(tmp_path: Path) -> None:
    _fleet(tmp_path).run(1)
    (tmp_path / "control" / "faults.json").write_text('[{"kind": 1}]')
    _fleet(tmp_path).run(2)  # no exception


def test_unwritable_devices_dir_at_start_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "nodes" / "n").mkdir(parents=True)
    (tmp_path / "nodes" / "n" / "devices").write_text("not a directory")
    with pytest.raises(StateError, match=r"devices.*(not a directory|File exists|Not a directory)"):
        _fleet(tmp_path)


def test_devices_dir_lost_while_running_is_reported_and_retried(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    fleet = _fleet(tmp_path)
    fleet.run(1)
    devices = device_file(tmp_path, "n", "0").parent
    for p in devices.iterdir():
        p.unlink()
    devices.rmdir()
    devices.write_text("")  # now a file: every publication fails
    with caplog.at_level(logging.ERROR, "npuobs.simulator"):
        fleet.run(5)
    assert len([r for r in caplog.records if "cannot publish" in r.getMessage()]) == 1  # once, not per tick
    devices.unlink()
    devices.mkdir(mode=0o700)
    fleet.run(1)
    assert read_device_state(device_file(tmp_path, "n", "0")).updated_at == fleet.clock.now


# --- private state directories (item 6) -----------------------------------------------------------------

def test_default_state_dir_is_per_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NPUOBS_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_state_dir() == tmp_path / "npuobs" / "sim"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_state_dir().parent.name == f"npuobs-{os.geteuid()}"
    made = ensure_private_dir(tmp_path / "a" / "b")
    assert (made.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("setup, message", [
    (lambda d: os.chmod(d, 0o777), "writable by group or others"),
    (lambda d: os.chmod(d, 0o770), "writable by group or others"),
    (lambda d: os.chown(d, NOBODY, NOBODY), f"owned by uid {NOBODY}"),
])
def test_foreign_or_shared_state_dir_is_refused(tmp_path: Path, setup, message: str) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if os.geteuid() != 0 and "owned" in message:
        pytest.skip("chown to another user needs root")  # CI runs the suite as root (the case that matters)
    setup(state)
    with pytest.raises(StateError, match=message):
        _fleet(state)
    with pytest.raises(FaultError, match=message):
        FaultBook(state).inject("F1", now=0.0)


def test_symlinked_temp_name_does_not_overwrite_its_target(tmp_path: Path) -> None:
    """The attack from issue 15: a pre-created state directory with the old fixed temporary name
    (control/faults.tmp) linked to another file; injecting a fault must leave that file alone."""
    state = tmp_path / "state"
    _fleet(state).run(1)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in ("faults.tmp", "faults.lock"):
        (state / "control" / name).unlink(missing_ok=True)
        (state / "control" / name).symlink_to(victim)
    try:
        FaultBook(state).inject("F2", now=0.0)
    except FaultError as exc:  # the O_NOFOLLOW lock refuses the planted link: fine, as long as it is one line
        assert "faults.json" in str(exc)
    assert victim.read_text() == "precious"
    leftovers = [p for p in (state / "control").iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    assert leftovers == []
    for name in ("faults.tmp", "faults.lock"):
        (state / "control" / name).unlink()
    FaultBook(state).inject("F2", now=0.0)
    assert [f.kind for f in FaultBook(state).read()] == ["F2"]
    assert victim.read_text() == "precious"


def test_sim_status_says_whether_the_simulator_still_publishes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from npuobs.cli.main import main

    fleet = _fleet(tmp_path)
    fleet.publish(heartbeat_seconds=0.5)
    assert main(["sim", "status", "--state-dir", str(tmp_path)]) == 0
    assert f"simulator: pid {os.getpid()}, last published" in capsys.readouterr().out
    for dev in ("0", "1"):
        path = device_file(tmp_path, "n", dev)
        doc = json.loads(path.read_text())
        doc["publisher"]["published_at"] -= 60
        path.write_text(json.dumps(doc))
    assert main(["sim", "status", "--state-dir", str(tmp_path)]) == 0
    assert "simulator: NOT PUBLISHING: not updated for 60" in capsys.readouterr().out
