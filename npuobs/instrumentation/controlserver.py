"""The control API: ``ServingControl`` over a small, authenticated, bounded HTTP server, and its client.

    GET  /-/healthy                       readiness (no authentication)
    GET  /v1/state                        devices (drained, in flight), models (version, previous, path), history
    POST /v1/devices/drain                {"node": "node-a", "device": "1"}
    POST /v1/devices/undrain              {"node": ..., "device": ...}
    POST /v1/devices/reset                {"node": ..., "device": ...}
    POST /v1/models/rollback              {"model": "digits-mlp"}
    POST /v1/models/rollout               {"model": ..., "version": "v2", "attributes": {...}}
    POST /v1/models/serving-path          {"model": ..., "path": "accelerator" | "cpu"}

Every ``/v1`` call needs ``Authorization: Bearer <token>`` or HTTP basic auth, both read from files
(never from the command line, where ``ps`` shows them) and compared in constant time. There is no
way to run it without credentials: the API restarts drivers. Answers are JSON: the action's record
(``{"action": ..., "changed": ...}``) or ``{"error": "..."}`` with 400 (bad request), 401, 404
(unknown device/model/path), 409 (refused, e.g. nothing to roll back to), 413, 501, 503.

Bounds: at most ``max_connections`` requests at once (more get 503 at once, no thread), a socket
timeout per connection, and a 64 KiB body limit.
"""

from __future__ import annotations

import base64
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from npuobs.instrumentation.control import ControlError, ServingControl

MAX_BODY_BYTES = 64 * 1024
MAX_CONNECTIONS = 16
SOCKET_TIMEOUT_SECONDS = 10.0


class ControlAuthError(ValueError):
    """A credentials file is missing, unreadable or malformed (the message names it)."""


@dataclass(frozen=True)
class ControlAuth:
    """Accepted credentials: a bearer token and/or one ``user:password`` for basic auth."""

    token: str | None = None
    basic: tuple[str, str] | None = None

    @classmethod
    def from_files(cls, token_file: Path | None = None, basic_auth_file: Path | None = None) -> ControlAuth:
        if token_file is None and basic_auth_file is None:
            raise ControlAuthError("the control API needs credentials: a token file or a basic-auth file")
        token = _read_secret(token_file) if token_file else None
        basic = None
        if basic_auth_file:
            text = _read_secret(basic_auth_file)
            user, sep, password = text.partition(":")
            if not sep or not user or not password:
                raise ControlAuthError(f"{basic_auth_file}: expected one line 'user:password'")
            basic = (user, password)
        return cls(token, basic)

    def header(self) -> str:
        """The ``Authorization`` header a client sends with these credentials (token preferred)."""
        if self.token:
            return f"Bearer {self.token}"
        assert self.basic is not None
        return "Basic " + base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()

    def accepts(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        ok = False
        if scheme.lower() == "bearer" and self.token:
            ok = hmac.compare_digest(value.strip().encode(), self.token.encode())
        elif scheme.lower() == "basic" and self.basic:
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except ValueError:
                return False
            ok = hmac.compare_digest(given, f"{self.basic[0]}:{self.basic[1]}".encode())
        return ok


def _read_secret(path: Path) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ControlAuthError(f"cannot read credentials file {path}: {exc.strerror}") from exc
    if not text or "\n" in text:
        raise ControlAuthError(f"{path}: expected exactly one non-empty line")
    return text


def write_token_file(path: Path, token: str) -> Path:
    """Write a token file readable by its owner only (created fresh, never through a link)."""
    import os

    path = Path(path)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


_ROUTES = {
    "/v1/devices/drain": ("drain", ("node", "device")),
    "/v1/devices/undrain": ("undrain", ("node", "device")),
    "/v1/devices/reset": ("reset", ("node", "device")),
    "/v1/models/rollback": ("rollback", ("model",)),
    "/v1/models/rollout": ("rollout", ("model", "version")),
    "/v1/models/serving-path": ("set_serving_path", ("model", "path")),
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # actions are recorded in the control's history; no per-request noise on stderr

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(SOCKET_TIMEOUT_SECONDS)

    def _answer(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.server.auth.accepts(self.headers.get("Authorization")):
            return True
        self.send_response(401)
        body = b'{"error": "authentication required"}'
        self.send_header("WWW-Authenticate", 'Bearer realm="npuobs-control"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/-/healthy":
            self._answer(200, {"status": "ok"})
        elif self.path == "/v1/state":
            if self._authorized():
                self._answer(200, self.server.control.snapshot())
        else:
            self._answer(404, {"error": f"no such endpoint: GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        route = _ROUTES.get(self.path)
        if route is None:
            self._answer(404, {"error": f"no such endpoint: POST {self.path}"})
            return
        if not self._authorized():
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._answer(400, {"error": "Content-Length is not a number"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._answer(400, {"error": "body is not JSON"})
            return
        method, required = route
        if not isinstance(body, dict):
            self._answer(400, {"error": f"body must be a JSON object with {', '.join(required)}"})
            return
        missing = [k for k in required if not isinstance(body.get(k), str) or not body[k]]
        if missing:
            self._answer(400, {"error": f"{self.path}: missing or non-string field(s): {', '.join(missing)}"})
            return
        kwargs: dict[str, Any] = {"by": str(body.get("by", ""))[:200]}
        if method == "rollout":
            attrs = body.get("attributes")
            if attrs is not None and not isinstance(attrs, dict):
                self._answer(400, {"error": "'attributes' must be an object"})
                return
            kwargs["attributes"] = attrs
        try:
            self._answer(200, getattr(self.server.control, method)(*(body[k] for k in required), **kwargs))
        except ControlError as exc:
            self._answer(exc.status, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - a hook failed: the action did not happen, say why
            self._answer(500, {"error": f"{method} failed: {type(exc).__name__}: {exc}"})


class CappedThreadingHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``max_connections`` connections at once and answers
    503 at once (no thread) beyond that; handlers set their own socket timeout."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server(CappedThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], control: ServingControl, auth: ControlAuth,
                 max_connections: int) -> None:
        super().__init__(address, _Handler, max_connections)
        self.control, self.auth = control, auth


_L = TypeVar("_L", bound="Listener")


class Listener:
    """A :class:`CappedThreadingHTTPServer` on its own daemon thread: ``start()``, ``url``, ``stop()``.

    The control API and ``npuobs remediate``'s webhook share this lifecycle; each subclass builds its
    server from a ``listen`` address (:func:`listen_address`)."""

    thread_name = "npuobs-listener"

    def __init__(self, server: CappedThreadingHTTPServer) -> None:
        self._server = server
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self: _L) -> _L:
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def listen_address(listen: str) -> tuple[str, int]:
    """``host:port`` (an empty host is loopback; port 0 picks a free one) as a bind address."""
    host, _, port = listen.rpartition(":")
    return host or "127.0.0.1", int(port)


class ControlServer(Listener):
    """Serve ``control`` on ``listen`` (``host:port``; port 0 picks a free one) until ``stop()``."""

    thread_name = "npuobs-control"

    def __init__(self, control: ServingControl, auth: ControlAuth, listen: str = "127.0.0.1:0", *,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        super().__init__(_Server(listen_address(listen), control, auth, max_connections))


class ControlAPIError(Exception):
    """The control API refused or could not be reached; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ControlClient:
    """What a controller (``npuobs remediate``) uses to act: one method per endpoint."""

    def __init__(self, url: str, auth: ControlAuth, timeout: float = 10.0) -> None:
        self.url, self.auth, self.timeout = url.rstrip("/"), auth, timeout

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": self.auth.header()}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - operator-given URL
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except (ValueError, AttributeError):
                detail = exc.reason
            raise ControlAPIError(f"control API {method} {path}: HTTP {exc.code}: {detail}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise ControlAPIError(f"cannot reach the control API at {self.url}: {exc}") from exc

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/v1/state")

    def act(self, action: str, by: str = "", **target: str) -> dict[str, Any]:
        """``action`` is an endpoint's last part: drain, undrain, reset, rollback, rollout, serving-path."""
        group = "devices" if action in ("drain", "undrain", "reset") else "models"
        return self._call("POST", f"/v1/{group}/{action}", {**target, "by": by})
