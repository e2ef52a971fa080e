"""The one runner every data source goes through, and typed backend options (issue 14 item 3, issue 15 item 10)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from exporterkit import reading

from npuobs.cli.main import main
from npuobs.devices import registry
from npuobs.devices.base import BackendError, ChildrenFailed, Snapshot, SourceResult
from npuobs.devices.source import BackendSource, Source, SourceHealth

pytestmark = pytest.mark.unit


# --- options ------------------------------------------------------------------------------------------


def test_every_registered_backend_declares_typed_options() -> None:
    for name in registry.names():
        entry = registry.entry(name)
        assert "node" in {f for f in entry.options.__dataclass_fields__}, name


@pytest.mark.parametrize(("name", "values", "message"), [
    ("furiosa", {"tool_pth": "/x"}, "backend 'furiosa': unknown option 'tool_pth'; valid options: node, tool_path"),
    ("furiosa", {"timeout": "soon"}, "backend 'furiosa': option 'timeout' must be a number, got 'soon'"),
    ("furiosa", {"timeout": True}, "option 'timeout' must be a number, got True"),
    ("furiosa", {"timeout": "inf"}, "option 'timeout' must be a finite number"),
    ("furiosa", {"tool_path": 3}, "option 'tool_path' must be a string, got 3"),
    ("sim", {"timeout": 1}, "backend 'sim': unknown option 'timeout'; valid options: node, state_dir"),
    ("auto", {"backends": 3}, "option 'backends' must be a list"),
    ("auto", {"child_options": "x"}, "option 'child_options' must be a mapping"),
    ("neuron", {"period": "fast"}, "option 'period' must be a number"),
])
def test_a_bad_option_is_an_error_naming_it(name: str, values: dict, message: str) -> None:
    with pytest.raises(BackendError) as err:
        registry.build(name, values)
    assert message in str(err.value)


def test_strings_are_converted_to_the_declared_type() -> None:
    """What ``--option key=value`` gives: every value a string."""
    options = registry.parse_options("auto", {"timeout": "2.5", "backends": "nvml, furiosa", "node": "n1"})
    assert (options.timeout, options.backends, options.node) == (2.5, ("nvml", "furiosa"), "n1")
    assert registry.parse_options("furiosa", {"tool_path": "none"}).tool_path is None
    assert registry.parse_options("sim", {"state_dir": "/s"}).state_dir == Path("/s")


def test_context_reaches_only_backends_that_declare_it(tmp_path: Path) -> None:
    context = {"node": "n1", "state_dir": tmp_path, "timeout": 3.0, "child_timeout": 1.0}
    sim = registry.build("sim", {}, context=context)  # no timeout/child_timeout: not an error, not passed
    assert sim.state_dir == tmp_path and sim.node == "n1"
    assert registry.build("furiosa", {"timeout": 1.5}, context=context)._timeout == 1.5  # options win


def test_devices_cli_rejects_a_foreign_flag_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["devices", "--backend", "sim", "--node", "n", "--tool-path", "/x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "backend 'sim': unknown option 'tool_path'" in err


# --- the runner ---------------------------------------------------------------------------------------


def test_execute_records_success_duration_and_errors() -> None:
    answers = iter([1, ValueError("boom"), ValueError(""), 2])

    def read() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    source, health = Source("s", read, timeout=1.0), SourceHealth()
    results = []
    for _ in range(4):
        outcome = source.execute()
        results.append((outcome.value, outcome.result.error))
        health.record(outcome.result)
    assert results == [(1, None), (None, "boom"), (None, "ValueError"), (2, None)]
    status = health.statuses()["s"]
    assert status.success and status.errors_total == 2 and status.last_success == outcome.result.started_at


def test_a_hung_source_times_out_and_is_not_started_twice() -> None:
    release, calls = threading.Event(), []

    def read() -> int:
        calls.append(1)
        release.wait(10)
        return 1

    source = Source("hang", read, timeout=0.05)
    try:
        assert source.execute().result.error == "sample timed out after 0.05s"
        second = source.execute()
        assert second.result.error.startswith("previous sample still running") and second.result.duration == 0.0
        assert len(calls) == 1
    finally:
        release.set()


def test_backend_source_fails_on_device_errors_and_keeps_the_snapshot() -> None:
    snap = Snapshot.now("sim", (reading("0"),), errors={"1": "not valid JSON"})
    outcome = BackendSource("sim", lambda: snap, 1.0).execute()
    assert outcome.value is snap and outcome.result.error == "1: not valid JSON"
    garbage = BackendSource("x", lambda: "garbage", 1.0).execute()
    assert garbage.value is None and garbage.result.error == "backend returned str, not a Snapshot"


def test_children_are_sources_of_their_own_even_when_the_parent_fails() -> None:
    child_ok = SourceResult("nvml", 1.0, 0.1)
    child_bad = SourceResult("furiosa", 1.0, 0.2, "furiosa-smi exited 1")

    def every_child_failed() -> Snapshot:
        raise ChildrenFailed("auto: every backend failed", (child_bad,))

    health = SourceHealth()
    health.record(BackendSource("auto", lambda: Snapshot.now("auto", (), children=(child_ok, child_bad)), 1.0)
                  .execute().result)
    statuses = health.statuses()
    assert statuses["auto"].success and statuses["nvml"].success and not statuses["furiosa"].success
    assert statuses["furiosa"].duration_seconds == 0.2
    health.record(BackendSource("auto", every_child_failed, 1.0).execute().result)
    statuses = health.statuses()
    assert not statuses["auto"].success and statuses["furiosa"].errors_total == 2
    health.forget("nvml")
    assert "nvml" not in health.statuses()
