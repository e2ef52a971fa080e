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
import signal
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from npuobs.stack.proc import StackError

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ROUTING_KEY_LENGTH = 32  # integration keys are 32 characters; the real API rejects any other length
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024
MAX_BODY_BYTES = 512 * 1024  # the real API limits an event to 512 KB

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


class PagerDutySink:
    """The sink server: start it, point Alertmanager at :attr:`enqueue_url`, read :meth:`events`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None) -> None:
        self._events: list[Event] = []
        self._rejected: list[tuple[Any, list[str]]] = []
        self._cond = threading.Condition()
        self._log_path = Path(log_path) if log_path else None
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def enqueue_url(self) -> str:
        """What goes into ``pagerduty_configs[].url``."""
        return f"{self.url}/v2/enqueue"

    def start(self) -> PagerDutySink:
        # A short poll interval keeps stop() (and so every test using the sink) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="pagerduty-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> PagerDutySink:
        return self.start() if self._thread is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def events(self, routing_key: str | None = None) -> list[Event]:
        """Accepted events in arrival order (copies), optionally only those for one routing key."""
        with self._cond:
            return [dict(e) for e in self._events
                    if routing_key is None or e.get("routing_key") == routing_key]

    def rejected(self) -> list[tuple[Any, list[str]]]:
        """Bodies answered with 400, each with the errors reported for it."""
        with self._cond:
            return list(self._rejected)

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
                    raise StackError(f"no matching PagerDuty event after {timeout:.1f}s; got {self._events}"
                                     f"; rejected {self._rejected}")
                self._cond.wait(remaining)

    def _accept(self, event: Event) -> str:
        event = dict(event, dedup_key=event.get("dedup_key") or f"npuobs-sink-{len(self._events) + 1}")
        with self._cond:
            self._events.append(event)
            if self._log_path is not None:
                line = json.dumps({"received_at": time.time(), **event}, sort_keys=True)
                with open(self._log_path, "a", encoding="utf-8") as log:
                    log.write(line + "\n")
            self._cond.notify_all()
        return event["dedup_key"]

    def _reject(self, body: Any, errors: list[str]) -> None:
        with self._cond:
            self._rejected.append((body, errors))
            self._cond.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "npuobs-pagerduty-sink"

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                if self.path.split("?")[0] != "/v2/enqueue":
                    self._reply(404, {"status": "not found", "message": f"no route {self.path}"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._reply(413, {"status": "invalid event", "message": "Request too large"})
                    return
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    sink._reject(raw.decode("utf-8", "replace"), ["Malformed JSON"])
                    self._reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                      "errors": ["Malformed JSON"]})
                    return
                errors = validate_event(body)
                if errors:
                    sink._reject(body, errors)
                    self._reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                      "errors": errors})
                    return
                dedup_key = sink._accept(body)
                self._reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/-/healthy":
                    self._reply(200, {"status": "ok"})
                elif path == "/v2/events":
                    self._reply(200, sink.events())
                else:
                    self._reply(404, {"status": "not found", "message": f"no route {self.path}"})

            def _reply(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                """Silence the per-request stderr line; accepted events go to the JSON-lines log."""

        return Handler


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
