"""SIGTERM (``kill``, systemd, a CI timeout) stops long commands cleanly: nothing they started survives.

Real processes throughout: the command runs as ``python -m npuobs.cli.main`` and its children are
the real Prometheus and Alertmanager (game day) or the recording's worker processes (soak).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration  # real processes signalled (npuobs, Prometheus, Alertmanager)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # exited meanwhile
        return ""


def _names(children: list[psutil.Process]) -> set[str]:
    names = set()
    for c in children:
        try:
            names.add(c.name())
        except psutil.Error:
            pass
    return names


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _terminate_after(argv: list[str], started: Callable[[list[psutil.Process]], bool], what: str) -> list[str]:
    """Run ``npuobs argv``, SIGTERM it once ``started(children)``; returns its stderr lines."""
    proc = subprocess.Popen([sys.executable, "-m", "npuobs.cli.main", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    children: list[psutil.Process] = []
    try:
        parent = psutil.Process(proc.pid)
        _until(lambda: started(parent.children(recursive=True)), 90, what)
        children = parent.children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        stderr = proc.stderr.read()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"left running after SIGTERM: {[_cmdline(p) for p in alive]}"
        return stderr.splitlines()
    finally:  # a failing run must not leave its servers behind for the rest of the session
        for p in [psutil.Process(proc.pid), *children] if proc.poll() is None else children:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait()


@pytest.mark.usefixtures("prometheus_bin", "alertmanager_bin")
def test_sigterm_stops_a_game_days_servers(tmp_path: Path) -> None:
    def servers_up(children: list[psutil.Process]) -> bool:
        names = _names(children)
        return "prometheus" in names and bool({"prometheus-alertmanager", "alertmanager"} & names)

    lines = _terminate_after(["gameday", "--scenario", "F1", "--workdir", str(tmp_path)], servers_up,
                             "the game day's Prometheus and Alertmanager")
    assert lines[-1] == "npuobs: terminated, stopped what it had started"


def test_sigterm_stops_a_soaks_workers() -> None:
    def workers_running(children: list[psutil.Process]) -> bool:
        return sum("spawn_main" in _cmdline(c) for c in children) >= 2

    lines = _terminate_after(["gameday", "--soak", "24h", "--workers", "2"], workers_running,
                             "two recording workers")
    assert lines[-1] == "npuobs: terminated, stopped what it had started"
