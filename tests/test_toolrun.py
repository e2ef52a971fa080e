"""toolrun against real subprocesses: timeouts kill the whole group, output is bounded, failures
carry the tool's stderr, missing tools are named."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest

from npuobs.devices.base import BackendError
from npuobs.devices.toolrun import resolve_tool, run_tool


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as dead (the container's init may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_stdout_is_returned_decoded() -> None:
    code = "import sys; sys.stdout.buffer.write(b'ok \\xe2\\x84\\x83 \\xff\\n')"
    assert run_tool([sys.executable, "-c", code]) == "ok \u2103 \ufffd\n"


def test_arguments_are_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    out = run_tool(["echo", f"$(touch {marker}); rm -rf /"])
    assert out == f"$(touch {marker}); rm -rf /\n"
    assert not marker.exists()


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    tool = _script(tmp_path, "hang-tool", f"sleep 300 &\necho $! > {pidfile}\nwait\n")
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"'hang-tool' timed out after 0.5s"):
        run_tool([tool], timeout=0.5)
    assert time.monotonic() - started < 3
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child), "the tool's forked child survived the timeout"


def test_timeout_while_a_detached_grandchild_holds_the_pipe(tmp_path: Path) -> None:
    # The tool exits at once but leaves a helper holding stdout open: without the group kill the
    # read would never see EOF.
    pidfile = tmp_path / "child.pid"
    tool = _script(tmp_path, "leaky-tool", f"sleep 300 &\necho $! > {pidfile}\nexit 0\n")
    with pytest.raises(BackendError, match="timed out"):
        run_tool([tool], timeout=0.5)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


def test_huge_output_is_bounded() -> None:
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"'yes' wrote more than 65536 bytes"):
        run_tool(["yes"], max_output_bytes=65536, timeout=10)
    assert time.monotonic() - started < 3


def test_output_at_the_limit_is_accepted() -> None:
    code = "import sys; sys.stdout.write('x' * 1000)"
    assert len(run_tool([sys.executable, "-c", code], max_output_bytes=1000)) == 1000


def test_nonzero_exit_carries_code_and_stderr_tail() -> None:
    code = ("import sys; sys.stderr.write('noise\\n' * 500 + 'NVML: Driver/library version mismatch'); "
            "sys.exit(9)")
    with pytest.raises(BackendError) as err:
        run_tool([sys.executable, "-c", code])
    msg = str(err.value)
    assert "exited with code 9" in msg
    assert msg.endswith("NVML: Driver/library version mismatch")
    assert len(msg) < 600


def test_killed_by_signal_is_reported() -> None:
    with pytest.raises(BackendError, match="killed by signal 9"):
        run_tool([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])


def test_env_replaces_the_environment() -> None:
    code = "import os; print(os.environ.get('NPUOBS_T', 'unset'), 'HOME' in os.environ)"
    assert run_tool([sys.executable, "-c", code], env={"NPUOBS_T": "42"}) == "42 False\n"


def test_tool_that_cannot_start() -> None:
    with pytest.raises(BackendError, match="'no-such-tool' could not be started"):
        run_tool(["/nonexistent/no-such-tool"])
    with pytest.raises(BackendError, match="empty"):
        run_tool([])


def test_resolve_tool(tmp_path: Path) -> None:
    tool = _script(tmp_path, "fake-smi", "echo hi\n")
    assert resolve_tool("fake-smi", search_path=str(tmp_path)) == tool
    assert resolve_tool(tool) == tool
    with pytest.raises(BackendError, match="tool 'fake-smi' not found on PATH"):
        resolve_tool("fake-smi", search_path=os.devnull)
    (tmp_path / "not-exec").write_text("")
    with pytest.raises(BackendError, match="not executable"):
        resolve_tool(str(tmp_path / "not-exec"))
