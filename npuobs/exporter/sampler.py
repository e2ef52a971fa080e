"""The background sampler: reads a backend on a fixed interval, never longer than a timeout.

Scrapes never call a backend. A sampler thread calls ``backend.sample()`` every interval and
hands each outcome to a callback that renders it; scrapes serve what was rendered last. Each
sample runs in its own worker thread that the sampler waits on for at most ``timeout`` seconds
(``npuobs.devices.bounded``), so a hung vendor tool (a wedged driver call, an SMI that never
exits) costs one failed sample, not a hung scrape: node_exporter's collectors have no such
timeout and a stuck one stalls every scrape. A worker that is still stuck at the next tick is
not joined by a second one (threads would pile up behind a wedged driver); that tick fails at
once with "previous sample still running".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from npuobs.devices.base import DeviceBackend, Snapshot
from npuobs.devices.bounded import BoundedCall, CallTimedOut, StillRunning
from npuobs.devices.toolrun import TRACKER, ToolTracker

log = logging.getLogger("npuobs.exporter")


@dataclass(frozen=True)
class SampleOutcome:
    """One attempt to sample a backend: a snapshot, or the error that prevented it.

    ``partial_errors`` carries what the backend reported through its ``last_errors`` (a device
    file it could not parse, a child backend of ``auto`` that failed) while still returning a
    snapshot; ``children`` lists the child backends of ``auto``, each its own collector.
    """

    collector: str
    started_at: float
    duration: float
    snapshot: Snapshot | None
    error: str | None = None
    partial_errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    children: tuple[str, ...] = ()


class Sampler:
    """Samples ``backend`` every ``interval`` seconds in a daemon thread; see the module docstring."""

    def __init__(self, backend: DeviceBackend, interval: float, timeout: float,
                 on_sample: Callable[[SampleOutcome], None], *, name: str | None = None) -> None:
        self.backend = backend
        self.interval = interval
        self.timeout = timeout
        self.on_sample = on_sample
        self.collector = name or backend.name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.tools = ToolTracker()  # vendor tools this sampler started, killed on stop
        self._call: BoundedCall[tuple[object, dict[str, str], tuple[str, ...]]] = BoundedCall(
            f"sample-{self.collector}", timeout)

    def sample_once(self) -> SampleOutcome:
        """Run one sample with the timeout applied; never raises for a backend failure."""
        started, t0 = time.time(), time.monotonic()

        def work() -> tuple[object, dict[str, str], tuple[str, ...]]:
            snap = self.backend.sample()
            return (snap, dict(getattr(self.backend, "last_errors", None) or {}),
                    tuple(getattr(self.backend, "backends", ()) or ()))

        try:
            snapshot, partial, children = self._call.call(work)
        except StillRunning as exc:
            return SampleOutcome(self.collector, started, 0.0, None, str(exc))
        except CallTimedOut as exc:
            return SampleOutcome(self.collector, started, time.monotonic() - t0, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - any backend failure is one failed sample
            error = str(exc) or type(exc).__name__
            return SampleOutcome(self.collector, started, time.monotonic() - t0, None, error)
        duration = time.monotonic() - t0
        if not isinstance(snapshot, Snapshot):
            return SampleOutcome(self.collector, started, duration, None,
                                 f"backend returned {type(snapshot).__name__}, not a Snapshot")
        return SampleOutcome(self.collector, started, duration, snapshot,
                             partial_errors=MappingProxyType(partial), children=children)

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
