"""The Alertmanager webhook receiver of ``npuobs remediate``: validate, decide, answer.

    POST /webhook       Alertmanager's webhook payload (version 4); 200 with the decisions as JSON,
                        400 with one line naming what is wrong (and nothing done) for a bad payload
    GET  /metrics       npuobs_remediation_actions_total (Prometheus text format)
    GET  /-/healthy     readiness

Alertmanager retries a 5xx, never a 4xx: a malformed payload is answered 400 once and dropped; an
internal failure is 500 so the retry can succeed. Same bounds as the control API: at most
``max_connections`` at once, a socket timeout, and a body limit (Alertmanager's own payloads are
truncated to ``max_alerts`` if configured; 1 MiB holds hundreds of alerts).
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from npuobs.instrumentation.controlserver import CappedThreadingHTTPServer, Listener, listen_address
from npuobs.remediation.controller import Controller

MAX_BODY_BYTES = 1 << 20
SOCKET_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 16


class PayloadError(ValueError):
    """The webhook body is not an Alertmanager webhook payload; the message says where."""


def validate(body: bytes) -> dict[str, Any]:
    """The payload as a dict, checked for what the controller relies on; PayloadError otherwise."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PayloadError("body must be a JSON object (Alertmanager webhook payload)")
    if doc.get("version") != "4":
        raise PayloadError(f"unsupported payload version {doc.get('version')!r} (expected \"4\")")
    if not isinstance(doc.get("groupKey", ""), str):
        raise PayloadError("'groupKey' must be a string")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("'alerts' must be a list")
    for i, a in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise PayloadError(f"{where} must be an object")
        if a.get("status") not in ("firing", "resolved"):
            raise PayloadError(f"{where}.status must be 'firing' or 'resolved', got {a.get('status')!r}")
        labels = a.get("labels")
        if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in labels.items()):
            raise PayloadError(f"{where}.labels must map label names to string values")
        if not labels.get("alertname"):
            raise PayloadError(f"{where}.labels has no alertname")
        if not isinstance(a.get("fingerprint"), str) or not a["fingerprint"]:
            raise PayloadError(f"{where}.fingerprint is missing")
        if not isinstance(a.get("startsAt"), str):
            raise PayloadError(f"{where}.startsAt is missing")
    return doc


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # decisions are the audit log

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(SOCKET_TIMEOUT_SECONDS)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc).encode())

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/-/healthy":
            self._json(200, {"status": "ok"})
        elif self.path == "/metrics":
            self._send(200, generate_latest(self.server.controller.registry), CONTENT_TYPE_LATEST)
        else:
            self._json(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/webhook":
            self._json(404, {"error": f"no such endpoint: POST {self.path} (Alertmanager posts to /webhook)"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._json(400, {"error": "Content-Length is not a number"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._json(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            return
        try:
            payload = validate(self.rfile.read(length))
        except PayloadError as exc:
            self.server.controller.say(f"remediate: rejected a webhook payload: {exc}")
            self._json(400, {"error": str(exc)})
            return
        try:
            decisions = self.server.controller.handle(payload)
        except Exception as exc:  # noqa: BLE001 - 500 makes Alertmanager retry; the message says why
            self.server.controller.say(f"remediate: error handling a webhook: {type(exc).__name__}: {exc}")
            self._json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return
        self._json(200, {"decisions": [{"alert": d.alertname, "fingerprint": d.fingerprint, "action": d.action,
                                        "target": d.target, "result": d.result, "reason": d.reason}
                                       for d in decisions]})


class _Server(CappedThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], controller: Controller, max_connections: int) -> None:
        super().__init__(address, _Handler, max_connections)
        self.controller = controller


class WebhookServer(Listener):
    """``npuobs remediate``'s listener: ``start()``, ``url`` (the webhook is ``url + "/webhook"``), ``stop()``."""

    thread_name = "npuobs-remediate"

    def __init__(self, controller: Controller, listen: str = "127.0.0.1:0", *,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.controller = controller
        super().__init__(_Server(listen_address(listen), controller, max_connections))
