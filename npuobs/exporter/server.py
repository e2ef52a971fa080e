"""The HTTP side: ``/metrics`` from the render cache, ``/``, ``/healthz``, ``/ready``; TLS and basic auth.

A thread per connection (``ThreadingHTTPServer``) with HTTP/1.1 keep-alive, as Prometheus keeps
its scrape connection open. Handlers only copy pre-rendered bytes, so a slow client ties up its
own thread and nothing else. The TLS handshake runs in the connection's thread, not in the accept
loop, so a client that stalls mid-handshake cannot block other scrapers. ``stop()`` closes open
keep-alive connections too: otherwise a restarted exporter on the same port would leave
Prometheus talking to the old instance's handler thread.

``/healthz`` (liveness: the sampler thread runs) and ``/ready`` (readiness: a first sample was
rendered) stay open without credentials for kubelet probes; they reveal nothing but a status.
"""

from __future__ import annotations

import html
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from npuobs.exporter.render import RenderCache, negotiate
from npuobs.exporter.webconfig import WebConfig

log = logging.getLogger("npuobs.exporter")

_OPEN_PATHS = ("/healthz", "/ready")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog; the stdlib's 5 drops connections when many scrapers reconnect

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 ssl_context: ssl.SSLContext | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response or fails the TLS handshake is not our error.
        log.debug("connection error", extra={"fields": {"client": str(client_address)}}, exc_info=True)


class MetricsServer:
    """Serves a :class:`RenderCache` over HTTP(S); see the module docstring."""

    def __init__(self, host: str, port: int, cache: RenderCache, *, web: WebConfig | None = None,
                 healthy: Callable[[], bool] = lambda: True, landing: Callable[[], str] = lambda: "") -> None:
        self.cache = cache
        self.web = web or WebConfig()
        self.healthy = healthy
        self.landing = landing
        ctx = self.web.tls.context() if self.web.tls else None
        self._server = _Server((host, port), self._handler(), ctx)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.web.tls else 'http'}://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="npuobs-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "npuobs-exporter"
            timeout = 60  # idle keep-alive connections close after a minute

            def setup(self) -> None:
                super().setup()
                if isinstance(self.connection, ssl.SSLSocket):
                    self.connection.do_handshake()

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                path = self.path.split("?", 1)[0]
                if path not in _OPEN_PATHS and server.web.basic_auth is not None \
                        and not server.web.basic_auth.check(self.headers.get("Authorization")):
                    self._reply(401, b"Unauthorized\n", "text/plain; charset=utf-8",
                                {"WWW-Authenticate": 'Basic realm="npuobs"'})
                    return
                if path == "/metrics":
                    self._metrics()
                elif path == "/healthz":
                    ok = server.healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"sampler stopped\n")
                elif path == "/ready":
                    ok = server.cache.current is not None
                    self._reply(200 if ok else 503, b"ready\n" if ok else b"no sample yet\n")
                elif path == "/":
                    self._reply(200, server.landing().encode(), "text/html; charset=utf-8")
                else:
                    self._reply(404, f"no route {html.escape(path)}; try /metrics\n".encode())

            def _metrics(self) -> None:
                rendered = server.cache.current
                if rendered is None:
                    self._reply(503, b"no sample yet\n")
                    return
                content_type = negotiate(self.headers.get("Accept"))
                gzip_ok = "gzip" in (self.headers.get("Accept-Encoding") or "")
                extra = {"Content-Encoding": "gzip"} if gzip_ok else {}
                self._reply(200, rendered.body(content_type, gzip_ok), content_type, extra)

            def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                       headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                """Per-request lines would drown the collector errors; nothing to log per scrape."""

        return Handler
