"""One runner for every data source, node_exporter ``collector.go`` style.

A source is anything the exporter reads that can fail or hang: a device backend, each child
backend of ``auto``, the kubelet's PodResources API. Every one of them runs through
:meth:`Source.execute` (or ``start``/``wait`` when several share one deadline, as ``auto``'s
children do): one bounded call (``npuobs.devices.bounded``: a hung call is abandoned, never
joined twice) whose outcome is a :class:`~npuobs.devices.base.SourceResult`, success, duration
and error. :class:`SourceHealth` folds results, children included, into the per-source status the
exporter reports as ``npuobs_collector_*``: success, duration, errors and last success.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from npuobs.devices.base import ChildrenFailed, Snapshot, SourceResult
from npuobs.devices.bounded import BoundedCall, CallTimedOut, StillRunning

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One run of a source: its result and, unless it failed outright, the value it read."""

    result: SourceResult
    value: T | None


class Source(Generic[T]):
    """A named data source read by ``read()``, at most ``timeout`` seconds per run."""

    def __init__(self, name: str, read: Callable[[], T], timeout: float) -> None:
        self.name = name
        self._read = read
        self._call: BoundedCall[T] = BoundedCall(name, timeout)
        self._started = (0.0, 0.0)  # (unix time, monotonic) of the run in flight
        self._refused: str | None = None

    @property
    def timeout(self) -> float:
        return self._call.timeout

    @property
    def running(self) -> bool:
        """Whether a previous run is still stuck in its worker."""
        return self._call.running

    def start(self) -> None:
        """Begin a run; when the previous one is still stuck, the run fails at ``wait`` at once."""
        self._started = (time.time(), time.monotonic())
        try:
            self._call.start(self._read)
            self._refused = None
        except StillRunning as exc:
            self._refused = str(exc)

    def wait(self, remaining: float | None = None) -> Outcome[T]:
        """The run's outcome, waiting at most ``remaining`` seconds (default: the whole timeout)."""
        at, t0 = self._started
        if self._refused is not None:
            return Outcome(SourceResult(self.name, at, 0.0, self._refused), None)
        try:
            value = self._call.wait(remaining)
        except CallTimedOut as exc:
            return Outcome(SourceResult(self.name, at, time.monotonic() - t0, str(exc)), None)
        except ChildrenFailed as exc:
            return Outcome(SourceResult(self.name, at, time.monotonic() - t0, str(exc), exc.children), None)
        except Exception as exc:  # noqa: BLE001 - whatever a source raises is its own failure, not the caller's
            return Outcome(SourceResult(self.name, at, time.monotonic() - t0, str(exc) or type(exc).__name__),
                           None)
        return self._judge(value, SourceResult(self.name, at, time.monotonic() - t0))

    def _judge(self, value: T, result: SourceResult) -> Outcome[T]:
        """A value that came back; subclasses turn partial failures inside it into the result's error."""
        return Outcome(result, value)

    def execute(self) -> Outcome[T]:
        """One bounded run: never raises for the source's failure, never blocks past the timeout."""
        self.start()
        return self.wait()


class BackendSource(Source[Snapshot]):
    """A device backend as a source: ``sample`` (its ``sample()`` method) per run.

    A snapshot with device errors counts as a failure of this source (its readable devices are
    still served); its children's results ride along in the result.
    """

    def _judge(self, value: Snapshot, result: SourceResult) -> Outcome[Snapshot]:
        if not isinstance(value, Snapshot):
            return Outcome(SourceResult(result.source, result.started_at, result.duration,
                                        f"backend returned {type(value).__name__}, not a Snapshot"), None)
        error = "; ".join(f"{part}: {m}" for part, m in sorted(value.errors.items())) or None
        return Outcome(SourceResult(result.source, result.started_at, result.duration, error, value.children),
                       value)


@dataclass(frozen=True)
class SourceStatus:
    """Where one source stands after its latest run (the ``npuobs_collector_*`` series)."""

    success: bool
    duration_seconds: float
    errors_total: int
    last_success: float | None  # unix time; None until a first success


class SourceHealth:
    """Status per source name, folded from results (a result's children are sources of their own).

    Touched by the one thread that runs the sources; readers get a copy from :meth:`statuses`.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, SourceStatus] = {}

    def record(self, result: SourceResult) -> None:
        old = self._statuses.get(result.source)
        self._statuses[result.source] = SourceStatus(
            success=result.ok, duration_seconds=result.duration,
            errors_total=(old.errors_total if old else 0) + (0 if result.ok else 1),
            last_success=result.started_at if result.ok else (old.last_success if old else None))
        for child in result.children:
            self.record(child)

    def forget(self, name: str) -> None:
        """Stop reporting ``name`` (a source that turned itself off, e.g. no PodResources socket)."""
        self._statuses.pop(name, None)

    def statuses(self) -> Mapping[str, SourceStatus]:
        return dict(self._statuses)
