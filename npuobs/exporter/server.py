"""The HTTP side: ``/metrics`` from the render cache, ``/``, ``/healthz``, ``/ready``; TLS and basic auth.

Served by :class:`npuobs.boundedhttp.BoundedHTTPServer` (one event loop, a small worker pool, a
connection cap with idle/header timeouts, descriptors kept in reserve for the sampler), with
HTTP/1.1 keep-alive, as Prometheus keeps its scrape connection open. Handlers only copy
pre-rendered bytes, so they run on the event loop; only a basic-auth check that misses the
verdict cache (bcrypt, ~50-100 ms) goes to the worker pool, so a password-guessing flood cannot
delay scrapes with known credentials or the probes. ``stop()`` closes open keep-alive connections
too: otherwise a restarted exporter on the same port would leave Prometheus talking to the old
instance.

``/healthz`` (liveness: the sampler thread runs) and ``/ready`` (readiness: a first sample was
rendered) stay open without credentials for kubelet probes; they reveal nothing but a status.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from npuobs.boundedhttp import BoundedHTTPServer, Limits, Request, Response
from npuobs.exporter.render import RenderCache, negotiate
from npuobs.exporter.webconfig import WebConfig

_OPEN_PATHS = ("/healthz", "/ready")
_UNAUTHORIZED = Response(401, b"Unauthorized\n", headers={"WWW-Authenticate": 'Basic realm="npuobs"'})


class MetricsServer:
    """Serves a :class:`RenderCache` over HTTP(S); see the module docstring."""

    def __init__(self, host: str, port: int, cache: RenderCache, *, web: WebConfig | None = None,
                 healthy: Callable[[], bool] = lambda: True, landing: Callable[[], str] = lambda: "",
                 limits: Limits | None = None) -> None:
        self.cache = cache
        self.web = web or WebConfig()
        self.healthy = healthy
        self.landing = landing
        ctx = self.web.tls.context() if self.web.tls else None
        self.http = BoundedHTTPServer(host, port, self._handle, ssl_context=ctx, limits=limits or Limits(),
                                      name="npuobs-http", server_header="npuobs-exporter")

    @property
    def port(self) -> int:
        return int(self.http.server_address[1])

    @property
    def url(self) -> str:
        host = self.http.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.web.tls else 'http'}://{host}:{self.port}"

    def start(self) -> MetricsServer:
        self.http.start()
        return self

    def stop(self) -> None:
        self.http.stop()

    def _handle(self, request: Request) -> Response | Callable[[], Response]:
        path = request.path
        auth = self.web.basic_auth
        if path not in _OPEN_PATHS and auth is not None:
            header = request.headers.get("authorization")
            verdict = auth.cached(header)
            if verdict is None:  # bcrypt: off the event loop
                return lambda: self._route(path, request) if auth.check(header) else _UNAUTHORIZED
            if not verdict:
                return _UNAUTHORIZED
        if path == "/metrics":
            return self._metrics(request)
        return self._route(path, request)

    def _metrics(self, request: Request) -> Response | Callable[[], Response]:
        """Cached bytes on the event loop; the first scrape of a snapshot in a format renders it in the
        worker pool (render.py), so a render never stalls other connections."""
        rendered = self.cache.current
        if rendered is None:
            return Response(503, b"no sample yet\n")
        content_type = negotiate(request.headers.get("accept"))
        gzip_ok = "gzip" in request.headers.get("accept-encoding", "")
        headers = {"Content-Encoding": "gzip"} if gzip_ok else {}

        def answer() -> Response:
            return Response(200, rendered.body(content_type, gzip_ok), content_type, headers)

        return answer() if rendered.is_ready(content_type, gzip_ok) else answer

    def _route(self, path: str, request: Request) -> Response:
        if path == "/metrics":  # already off the event loop (after a bcrypt check): render here
            answer = self._metrics(request)
            return answer if isinstance(answer, Response) else answer()
        if path == "/healthz":
            ok = self.healthy()
            return Response(200 if ok else 503, b"ok\n" if ok else b"sampler stopped\n")
        if path == "/ready":
            ok = self.cache.current is not None
            return Response(200 if ok else 503, b"ready\n" if ok else b"no sample yet\n")
        if path == "/":
            return Response(200, self.landing().encode(), "text/html; charset=utf-8")
        return Response(404, f"no route {html.escape(path)}; try /metrics\n".encode())
