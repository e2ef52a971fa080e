"""The background sampler: reads a backend on a fixed interval, never longer than a timeout.

Scrapes never call a backend. A sampler thread runs the backend as a source
(``npuobs.devices.source``: one bounded ``sample()`` per run, the same runner every data source
goes through) every interval and hands each outcome to a callback that renders it; scrapes serve
what was rendered last. A run waits at most ``timeout`` seconds, so a hung vendor tool (a
wedged driver call, an SMI that never exits) costs one failed sample, not a hung scrape:
node_exporter's collectors have no such timeout and a stuck one stalls every scrape. A worker
that is still stuck at the next tick is not joined by a second one (threads would pile up behind
a wedged driver); that tick fails at once with "previous sample still running".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from npuobs.devices.base import DeviceBackend, Snapshot
from npuobs.devices.source import BackendSource, Outcome
from npuobs.devices.toolrun import TRACKER, ToolTracker

log = logging.getLogger("npuobs.exporter")


class Sampler:
    """Samples ``backend`` every ``interval`` seconds in a daemon thread; see the module docstring."""

    def __init__(self, backend: DeviceBackend, interval: float, timeout: float,
                 on_sample: Callable[[Outcome[Snapshot]], None], *, name: str | None = None) -> None:
        self.backend = backend
        self.interval = interval
        self.on_sample = on_sample
        self.collector = name or backend.name
        self._source = BackendSource(self.collector, backend.sample, timeout)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tools = ToolTracker()  # vendor tools this sampler started, killed on stop

    @property
    def timeout(self) -> float:
        return self._source.timeout

    def sample_once(self) -> Outcome[Snapshot]:
        """Run one sample through the source runner; never raises for a backend failure."""
        return self._source.execute()

    def _run(self) -> None:
        TRACKER.set(self.tools)
        next_at = time.monotonic()
        while not self._stop.is_set():
            outcome = self.sample_once()
            try:
                self.on_sample(outcome)
            except Exception:  # noqa: BLE001 - a rendering bug must not end sampling for good
                log.exception("handling a sample failed", extra={"fields": {"collector": self.collector}})
            next_at += self.interval
            # fell behind (a slow sample): restart the schedule instead of sampling back to back
            next_at = max(next_at, time.monotonic())
            self._stop.wait(next_at - time.monotonic())

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name=f"npuobs-sampler-{self.collector}", daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop and kill the vendor tools still running (their whole process groups); waits
        for the current sample at most its timeout (a worker hung elsewhere is abandoned)."""
        self._stop.set()
        killed = self.tools.kill_all()
        if killed:
            log.info("killed vendor tools still running at stop", extra={"fields": {
                "collector": self.collector, "tools": killed}})
        if self._thread is not None:
            self._thread.join(self.timeout + 1.0 if timeout is None else timeout)
            self._thread = None
