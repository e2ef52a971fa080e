"""Run vendor CLIs (``nvidia-smi``, ``furiosa-smi``, ``rbln-stat`` ...) safely from a backend, and
fetch a vendor exporter's ``/metrics`` page with the same bounds.

The exporter samples every few seconds for weeks, so a misbehaving tool must never wedge or
exhaust it. Hence:

* an argument list, never a shell: no quoting bugs, no injection through configured options;
* the tool is started in its own session (process group), and on a timeout the *whole group* is
  SIGKILLed: a wrapper script that forked a helper would otherwise leave that helper holding our
  pipe open, and the next sample would hang on it too;
* output is read incrementally and bounded, so a tool stuck printing in a loop costs at most
  ``max_output_bytes`` of memory;
* every failure (missing tool, timeout, too much output, non-zero exit) becomes a ``BackendError``
  whose message names the tool, so the exporter can report it per collector;
* every running tool is recorded in the :class:`ToolTracker` of the context that started it (the
  exporter's sampler installs one), so stopping the exporter kills the process groups of tools
  still hung instead of leaving them running until their timeout, or forever once we are gone.
"""

from __future__ import annotations

import http.client
import os
import selectors
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from contextvars import ContextVar

from npuobs.devices.base import BackendError

# How much of stderr a failure message carries: enough for the tool's own error line, not its
# whole log.
_STDERR_TAIL_CHARS = 500
# stderr is kept as a rolling tail of this many bytes while the tool runs.
_STDERR_KEEP_BYTES = 8192
_READ_CHUNK = 65536


def resolve_tool(name: str, search_path: str | None = None) -> str:
    """Absolute path of tool ``name``, looked up once so later runs do not depend on ``$PATH``.

    ``name`` may already be a path (a configured ``tool_path``); it must then be an executable
    file. ``search_path`` replaces ``$PATH`` for the lookup (``os.pathsep``-separated).
    """
    if os.sep in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return os.path.abspath(name)
        raise BackendError(f"tool {name!r} not found or not executable")
    found = shutil.which(name, path=search_path)
    if found is None:
        raise BackendError(f"tool {name!r} not found on PATH")
    return os.path.abspath(found)


class ToolTracker:
    """The tools running on behalf of one owner (an exporter's sampler), killable all at once.

    A tool leaves the tracker *before* it is reaped, and :meth:`kill_all` signals under the same
    lock, so a group id that is signalled still belongs to an unreaped tool (never to a reused pid).
    """

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        """Record a started tool; after :meth:`kill_all` a tool started late is killed at once."""
        with self._lock:
            if self._closed:
                _signal_group(proc)
            else:
                self._procs.add(proc)

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> int:
        """SIGKILL the process group of every tool still running; the threads running them reap them."""
        with self._lock:
            self._closed = True
            for proc in self._procs:
                _signal_group(proc)
            killed = len(self._procs)
            self._procs.clear()
        return killed


TRACKER: ContextVar[ToolTracker | None] = ContextVar("npuobs_tool_tracker", default=None)
"""Where :func:`run_tool` records the tools it starts; set it in the thread (context) that samples."""


def _signal_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group is already gone


def _kill_group(proc: subprocess.Popen[bytes], tracker: ToolTracker | None) -> None:
    """SIGKILL the tool's process group (the tool and anything it forked) and reap the tool.

    Called before the tool has been reaped, so its pid (the group id) cannot have been reused.
    """
    _reap(proc, tracker, kill=True)


def _reap(proc: subprocess.Popen[bytes], tracker: ToolTracker | None, *, kill: bool = False,
          timeout: float | None = None) -> int:
    if tracker is not None:
        tracker.discard(proc)
    if kill:
        _signal_group(proc)
    return proc.wait(timeout)


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float = 5.0,
    max_output_bytes: int = 4 << 20,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run ``argv`` and return its stdout decoded as UTF-8 (undecodable bytes replaced).

    Raises ``BackendError`` when the tool cannot be started, runs longer than ``timeout`` seconds
    (its whole process group is then killed), writes more than ``max_output_bytes`` to stdout, or
    exits non-zero (the message carries the exit code and the tail of stderr).
    """
    if not argv:
        raise BackendError("run_tool: empty argument list")
    argv = [str(a) for a in argv]
    tool = os.path.basename(argv[0])
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise BackendError(f"'{tool}' could not be started: {exc}") from exc
    tracker = TRACKER.get()
    if tracker is not None:
        tracker.add(proc)

    deadline = time.monotonic() + timeout
    out = bytearray()
    err = bytearray()
    assert proc.stdout is not None and proc.stderr is not None  # both are PIPE above
    sel = selectors.DefaultSelector()
    try:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _kill_group(proc, tracker)
                raise BackendError(f"'{tool}' timed out after {timeout:g}s")
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf: bytearray = key.data
                buf += chunk
                if buf is out and len(out) > max_output_bytes:
                    _kill_group(proc, tracker)
                    raise BackendError(f"'{tool}' wrote more than {max_output_bytes} bytes of output")
                if buf is err and len(err) > _STDERR_KEEP_BYTES:
                    del err[:-_STDERR_KEEP_BYTES]
        try:
            returncode = _reap(proc, tracker, timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            _kill_group(proc, tracker)
            raise BackendError(f"'{tool}' timed out after {timeout:g}s") from None
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        if proc.returncode is None:  # an unexpected exception above: never leave the tool behind
            _kill_group(proc, tracker)

    if returncode != 0:
        tail = err.decode("utf-8", errors="replace").strip()[-_STDERR_TAIL_CHARS:]
        status = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise BackendError(f"'{tool}' {status}" + (f": {tail}" if tail else ""))
    return out.decode("utf-8", errors="replace")


def fetch_url(url: str, *, timeout: float = 5.0, max_bytes: int = 4 << 20) -> str:
    """GET an ``http(s)`` URL (a vendor exporter's ``/metrics``) and return the body as text.

    Bounded like ``run_tool``: ``timeout`` is the total time allowed (checked between reads, each
    read itself limited to ``timeout``), more than ``max_bytes`` is an error, and every failure is
    a ``BackendError`` naming the URL. Other schemes (``file:``, ``ftp:``) are refused so a
    configuration value cannot make the exporter read arbitrary local files.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise BackendError(f"refusing to fetch {url!r}: only http and https URLs are allowed")
    deadline = time.monotonic() + timeout
    body = bytearray()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            while chunk := resp.read(_READ_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise BackendError(f"{url}: response larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise BackendError(f"{url}: timed out after {timeout:g}s")
            charset = resp.headers.get_content_charset() or "utf-8"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise BackendError(f"{url}: {exc}") from exc
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know: the exposition format is UTF-8 anyway
        return body.decode("utf-8", errors="replace")
