"""Calls that may hang (a wedged driver call, an SMI that never exits), waited on with a deadline.

Python cannot kill a thread, so a call that overruns is abandoned in its daemon worker thread,
and while that worker is still stuck the next call fails at once ("still running") instead of
starting a second worker behind the same wedged driver: threads would pile up one per interval.
The exporter's sampler guards each backend with one ``BoundedCall``; the ``auto`` backend guards
each of its vendor backends with one, so a hung vendor costs its own devices, not everyone's.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from npuobs.devices.base import BackendError

T = TypeVar("T")


class CallTimedOut(BackendError):
    """The call did not return within its deadline; its worker is abandoned."""


class StillRunning(BackendError):
    """The previous call has not returned yet, so no new one was started."""


class BoundedCall(Generic[T]):
    """At most one call in flight, each in its own daemon thread, allowed ``timeout`` seconds.

    Its two errors carry the messages the exporter logs and reports per collector, so every user
    says the same: "sample timed out after 4s", "previous sample still running (hung for more than 4s)".
    """

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        self._thread: threading.Thread | None = None
        self._result: tuple[bool, object] | None = None  # (succeeded, value or exception)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, fn: Callable[[], T]) -> None:
        """Begin ``fn()`` in a worker; raises ``StillRunning`` while the previous call is stuck."""
        if self.running:
            raise StillRunning(f"previous sample still running (hung for more than {self.timeout:g}s)")
        self._result = None

        def work() -> None:
            try:
                self._result = (True, fn())
            except Exception as exc:  # noqa: BLE001 - handed to the waiter, who decides
                self._result = (False, exc)

        # the worker runs in the caller's context: a ToolTracker set there also sees the tools it starts
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                                        name=f"npuobs-{self.name}", daemon=True)
        self._thread.start()

    def wait(self, remaining: float | None = None) -> T:
        """The call's value, or its exception re-raised, or ``CallTimedOut`` once ``remaining`` seconds
        (default: the whole ``timeout``; less when several calls share one deadline) have passed."""
        assert self._thread is not None, "wait() before start()"
        self._thread.join(max(self.timeout if remaining is None else remaining, 0.0))
        if self._thread.is_alive():
            raise CallTimedOut(f"sample timed out after {self.timeout:g}s")
        assert self._result is not None
        ok, value = self._result
        if not ok:
            raise value  # type: ignore[misc]
        return value  # type: ignore[return-value]

    def call(self, fn: Callable[[], T]) -> T:
        self.start(fn)
        return self.wait()
