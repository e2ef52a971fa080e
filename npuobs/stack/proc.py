"""Process plumbing shared by the stack runners: managed child processes, ports, readiness polling."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from npuobs.errors import StackError


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (the kernel picks it; races are unlikely on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_http_ok(url: str, timeout: float = 10.0, *, interval: float = 0.05,
                 process: ManagedProcess | None = None) -> None:
    """Poll ``url`` until it answers 2xx; raise StackError after ``timeout`` seconds.

    When ``process`` is given, a process that exits while we wait fails fast with its log tail
    instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    last_error = "no attempt"
    while True:
        if process is not None and process.poll() is not None:
            raise StackError(f"{process.name} exited with status {process.poll()} before {url} was ready:\n"
                             f"{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:  # noqa: S310 - loopback http only
                if 200 <= resp.status < 300:
                    return
                last_error = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        if time.monotonic() >= deadline:
            raise StackError(f"{url} not ready after {timeout:.1f}s ({last_error})")
        time.sleep(interval)


class ManagedProcess:
    """A child process started from an argv list (no shell) in its own process group, logging to a file.

    Its own process group lets ``stop()`` signal the whole tree the binary may have spawned, and
    keeps terminal signals (Ctrl-C in pytest) from reaching it before we clean up in order.
    """

    def __init__(self, argv: Sequence[str], log_path: Path, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, name: str | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = env
        self.name = name or Path(self.argv[0]).name
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self._proc is not None:
            raise StackError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.cwd, env=self.env, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise StackError(f"{self.name} not started")
        return self._proc.pid

    def poll(self) -> int | None:
        """Exit status, or None while running (or before start)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode("utf-8", "replace")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap; return the exit status.

        The leader is waited for without being reaped first, so its zombie keeps the group id
        reserved while the final SIGKILL sweeps any children it left: the signal cannot reach an
        unrelated process that reused the id. Idempotent: stopping a stopped process is a no-op.
        """
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            if not self._wait_unreaped(grace):
                self._signal_group(signal.SIGKILL)
                self._wait_unreaped(grace)
            self._signal_group(signal.SIGKILL)
        return proc.wait(timeout=grace)

    def _wait_unreaped(self, timeout: float) -> bool:
        """True once the leader has exited (still a zombie, so still our group's id), False on timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> ManagedProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
