"""A local stand-in for the PagerDuty Events API v2 (``POST /v2/enqueue``).

PagerDuty itself cannot run here, so end-to-end tests, the demo and game days point
Alertmanager's ``pagerduty_configs[].url`` at this sink. It validates the wire format the way the
real endpoint does (so a malformed Alertmanager config fails loudly instead of silently passing),
answers like the real API, stores every accepted event and appends each one to a log as one
JSON line. Also serves ``GET /v2/events`` (accepted events as JSON, for other processes) and
``GET /-/healthy`` (readiness).

Run standalone: ``python -m npuobs.stack.pagerduty_sink --listen 127.0.0.1:PORT --log FILE``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from npuobs.boundedhttp import BoundedHTTPServer, Limits, Request, Response
from npuobs.stack.proc import StackError

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY_LENGTH = 32  # integration keys are 32 characters; the real API rejects any other length
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024
MAX_BODY_BYTES = 512 * 1024  # the real API limits an event to 512 KB
MAX_NESTING = 32  # Alertmanager's events nest 3 deep; nothing real comes near this
MAX_KEPT_EVENTS = 10_000
MAX_KEPT_REJECTED = 100
MAX_KEPT_BYTES = 64 << 20  # of accepted events' JSON; rejected bodies get a quarter of it

Event = dict[str, Any]


def validate_event(event: Any) -> list[str]:
    """Errors the real Events API v2 would report for ``event`` (empty when it is valid)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        errors.append("'routing_key' is missing or blank")
    elif len(routing_key) != ROUTING_KEY_LENGTH:
        errors.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} characters)")
    action = event.get("event_action")
    if action not in EVENT_ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(EVENT_ACTIONS)})")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= DEDUP_KEY_MAX):
        errors.append(f"'dedup_key' must be a non-empty string of at most {DEDUP_KEY_MAX} characters")
    if action in ("acknowledge", "resolve") and dedup_key is None:
        errors.append(f"'dedup_key' is required for event_action {action!r}")
    if action == "trigger":
        errors.extend(_validate_payload(event.get("payload")))
    for field in ("links", "images"):
        if field in event and not isinstance(event[field], list):
            errors.append(f"'{field}' must be an array")
    for i, link in enumerate(event.get("links") or []):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            errors.append(f"'links[{i}].href' is required")
    return errors


def _validate_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > SUMMARY_MAX:
        errors.append(f"'payload.summary' is longer than {SUMMARY_MAX} characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    return errors


def nesting_depth(raw: bytes) -> int:
    """How deeply ``raw`` (JSON text) nests arrays and objects, brackets inside strings not counted.

    Checked before ``json.loads`` so a body of 100,000 opening brackets is a clean 400 rather
    than a RecursionError deep in the decoder.
    """
    depth = deepest = 0
    for token in _STRUCTURE.findall(_STRINGS.sub(b'""', raw)):
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_STRUCTURE = re.compile(rb"[\[\]{}]")


class _History:
    """The most recent items, at most ``max_items`` of them and about ``max_bytes`` of their JSON in all.

    The sink runs for a whole demo or game day and anyone on the network can post to it: what it
    keeps in memory must not grow with what it is sent. ``dropped`` counts what fell out.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self.max_items, self.max_bytes = max_items, max_bytes
        self.dropped = 0

    def append(self, item: Any, size: int) -> None:
        self._items.append((item, size))
        self._bytes += size
        while len(self._items) > self.max_items or (self._bytes > self.max_bytes and len(self._items) > 1):
            _, old = self._items.popleft()
            self._bytes -= old
            self.dropped += 1

    def __iter__(self) -> Iterator[Any]:
        return (item for item, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0


class PagerDutySink:
    """The sink server: start it, point Alertmanager at :attr:`enqueue_url`, read :meth:`events`.

    Served by :class:`npuobs.boundedhttp.BoundedHTTPServer`: bodies need a valid
    ``Content-Length`` (411 when missing, 400 when invalid or negative) of at most 512 KB (413),
    JSON nesting is capped (400), and only the latest events and rejected bodies are kept.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None, *,
                 max_events: int = MAX_KEPT_EVENTS, max_rejected: int = MAX_KEPT_REJECTED) -> None:
        self._events = _History(max_events, MAX_KEPT_BYTES)
        self._rejected = _History(max_rejected, MAX_KEPT_BYTES // 4)
        self._accepted = 0
        self._cond = threading.Condition()
        self._log_path = Path(log_path) if log_path else None
        self._server = BoundedHTTPServer(host, port, self._handle, methods=("GET", "HEAD", "POST"),
                                         limits=Limits(max_body_bytes=MAX_BODY_BYTES), name="pagerduty-sink",
                                         server_header="npuobs-pagerduty-sink")
        self._started = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def enqueue_url(self) -> str:
        """What goes into ``pagerduty_configs[].url``."""
        return f"{self.url}/v2/enqueue"

    def start(self) -> PagerDutySink:
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        self._server.stop()
        self._started = False

    def __enter__(self) -> PagerDutySink:
        return self if self._started else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def events(self, routing_key: str | None = None) -> list[Event]:
        """Accepted events in arrival order (copies; the latest ``max_events``), optionally for one routing key."""
        with self._cond:
            return [dict(e) for e in self._events
                    if routing_key is None or e.get("routing_key") == routing_key]

    def rejected(self) -> list[tuple[Any, list[str]]]:
        """Bodies answered with 400 (the latest ``max_rejected``), each with the errors reported for it."""
        with self._cond:
            return list(self._rejected)

    @property
    def dropped(self) -> tuple[int, int]:
        """How many accepted events and rejected bodies fell out of the bounded history."""
        with self._cond:
            return self._events.dropped, self._rejected.dropped

    def clear(self) -> None:
        with self._cond:
            self._events.clear()
            self._rejected.clear()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 30.0) -> Event:
        """Block until an accepted event satisfies ``predicate``; return it or raise StackError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events:
                    if predicate(event):
                        return dict(event)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StackError(f"no matching PagerDuty event after {timeout:.1f}s; got {list(self._events)}"
                                     f"; rejected {list(self._rejected)}")
                self._cond.wait(remaining)

    def _accept(self, event: Event, size: int) -> str:
        with self._cond:
            self._accepted += 1
            event = dict(event, dedup_key=event.get("dedup_key") or f"npuobs-sink-{self._accepted}")
            self._events.append(event, size)
            if self._log_path is not None:
                line = json.dumps({"received_at": time.time(), **event}, sort_keys=True)
                with open(self._log_path, "a", encoding="utf-8") as log:
                    log.write(line + "\n")
            self._cond.notify_all()
        return event["dedup_key"]

    def _reject(self, body: Any, errors: list[str], size: int) -> Response:
        with self._cond:
            self._rejected.append((body, errors), size)
            self._cond.notify_all()
        return _json(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})

    def _handle(self, request: Request) -> Response | Callable[[], Response]:
        path = request.path
        if request.method == "POST":
            if path != "/v2/enqueue":
                return _json(404, {"status": "not found", "message": f"no route {path}"})
            return lambda: self._enqueue(request.body)  # validation and the log append: in the worker pool
        if path == "/-/healthy":
            return _json(200, {"status": "ok"})
        if path == "/v2/events":
            return _json(200, self.events())
        return _json(404, {"status": "not found", "message": f"no route {path}"})

    def _enqueue(self, raw: bytes) -> Response:
        if nesting_depth(raw) > MAX_NESTING:
            return self._reject(raw[:1024].decode("utf-8", "replace"),
                                [f"JSON nested deeper than {MAX_NESTING} levels"], min(len(raw), 1024))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return self._reject(raw[:1024].decode("utf-8", "replace"), ["Malformed JSON"], min(len(raw), 1024))
        errors = validate_event(body)
        if errors:
            return self._reject(body, errors, len(raw))
        dedup_key = self._accept(body, len(raw))
        return _json(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body).encode(), "application/json")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m npuobs.stack.pagerduty_sink",
                                     description="Local PagerDuty Events API v2 receiver (POST /v2/enqueue).")
    parser.add_argument("--listen", default="127.0.0.1:0",
                        help="host:port to listen on (default 127.0.0.1:0, any free port)")
    parser.add_argument("--log", type=Path, help="append each accepted event here as one JSON line")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen must be host:port, got {args.listen!r}")
    sink = PagerDutySink(host, int(port), args.log).start()
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print(f"pagerduty sink listening on {sink.enqueue_url}", flush=True)
    stop.wait()
    sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
