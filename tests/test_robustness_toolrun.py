"""Issue 15, probe 11: a vendor tool still hung when the exporter stops is killed with its process group.

A real hung ``furiosa-smi`` (a shell script that forks a helper and then blocks) runs under the
real exporter; stopping the exporter must leave neither the tool nor its helper running.
"""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest

from npuobs.exporter import Exporter, ExporterConfig

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited, it only waits for its parent to reap it


def _wait(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_hung_vendor_tool_group_is_killed_on_exporter_stop(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    tool = tmp_path / "furiosa-smi"
    tool.write_text("#!/bin/sh\n"
                    f"sleep 300 & echo $! >> {pids}\n"  # a helper in the tool's process group
                    f"echo $$ >> {pids}\n"
                    "exec sleep 300\n")  # the tool itself hangs
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    config = ExporterConfig(backend="furiosa", node="n1", listen="127.0.0.1:0", interval=60, sample_timeout=50,
                            backend_options={"tool_path": str(tool), "timeout": 45})
    exporter = Exporter(config).start(ready_timeout=0.1)
    try:
        assert _wait(lambda: pids.exists() and len(pids.read_text().split()) == 2, 10), "the tool never started"
        running = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in running)
    finally:
        t0 = time.monotonic()
        exporter.stop()
        stop_took = time.monotonic() - t0
    assert _wait(lambda: not any(_alive(p) for p in running), 5), "hung tool left running after stop"
    assert stop_took < 5, stop_took  # stop did not wait out the tool's 45 s timeout
