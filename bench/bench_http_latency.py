"""Benchmark: request latency of the bounded HTTP server and basic-auth timing (issue 15, probes 8 and 12).

Why: these are the figures the robustness tests deliberately do not assert (timings flake on a
loaded CI; the tests check the behaviour behind them instead: TCP_NODELAY and TCP_QUICKACK on the
server's sockets, one bcrypt verification per miss). Before the fix, back-to-back keep-alive
requests and the first request on a new TLS connection each waited ~44 ms for a delayed ACK, and
an unknown user was answered in microseconds while a known one took a bcrypt round.

It starts the exporter's ``MetricsServer`` in-process on loopback (plain and TLS, a self-signed
certificate made with openssl) and times with Python's ``http.client``:

* ``--requests`` back-to-back keep-alive requests, plain and TLS;
* the first request on each of ``--connections`` new TLS connections, after the handshake;
* ``BasicAuth.check`` of a wrong password for a real user (bcrypt cost ``--cost``) against any
  password for an unknown user, interleaved, ``--rounds`` each (no verdict cache hit).

Run from the repository root (about 10 s)::

    python bench/bench_http_latency.py

It prints a Markdown table for docs/reliability.md ("Measured: probes 8 and 12").
"""

from __future__ import annotations

import argparse
import base64
import http.client
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
from prometheus_client.core import GaugeMetricFamily

from npuobs.exporter.render import RenderCache
from npuobs.exporter.server import MetricsServer
from npuobs.exporter.webconfig import load as load_web


def _server(web: Path | None = None) -> MetricsServer:
    cache = RenderCache()
    cache.update([GaugeMetricFamily("npuobs_bench_value", "A bench series.", value=1.0)])
    return MetricsServer("127.0.0.1", 0, cache, web=load_web(web) if web else None).start()


def _keepalive(connect: Callable[[], http.client.HTTPConnection], n: int) -> list[float]:
    conn = connect()
    times = []
    try:
        for _ in range(n + 1):  # the first one pays the connect (and handshake): not counted
            t0 = time.perf_counter()
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            resp.read()
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return times[1:]


def _first_requests(connect: Callable[[], http.client.HTTPConnection], n: int) -> list[float]:
    times = []
    for _ in range(n):
        conn = connect()
        conn.connect()
        t0 = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        times.append(time.perf_counter() - t0)
        conn.close()
    return times


def _basic(user: str, password: bytes) -> str:
    return "Basic " + base64.b64encode(user.encode() + b":" + password).decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="keep-alive requests per scheme")
    parser.add_argument("--connections", type=int, default=20, help="new TLS connections")
    parser.add_argument("--cost", type=int, default=10, help="bcrypt cost of the configured user")
    parser.add_argument("--rounds", type=int, default=9, help="auth checks per kind")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cert, key = d / "tls.crt", d / "tls.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),  # noqa: S607
                        "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
        tls_web = d / "tls.yaml"
        tls_web.write_text(f"tls_server_config: {{cert_file: {cert}, key_file: {key}}}\n")
        ctx = ssl.create_default_context(cafile=str(cert))
        rows: list[tuple[str, list[float]]] = []
        plain = _server()
        try:
            rows.append(("HTTP keep-alive request", _keepalive(
                lambda: http.client.HTTPConnection("127.0.0.1", plain.port, timeout=10), args.requests)))
        finally:
            plain.stop()
        tls = _server(tls_web)
        try:
            def https() -> http.client.HTTPSConnection:
                return http.client.HTTPSConnection("127.0.0.1", tls.port, timeout=10, context=ctx)

            rows.append(("HTTPS keep-alive request", _keepalive(https, args.requests)))
            rows.append(("first request on a new HTTPS connection (after the handshake)",
                         _first_requests(https, args.connections)))
        finally:
            tls.stop()

        auth_web = d / "auth.yaml"
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(args.cost)).decode()
        auth_web.write_text(f"basic_auth_users:\n  alice: '{hashed}'\n")
        auth = load_web(auth_web).basic_auth
        assert auth is not None
        known, unknown = [], []
        for i in range(args.rounds):  # interleaved, so load on the machine hits both alike
            for user, out in (("alice", known), (f"mallory{i}", unknown)):
                t0 = time.perf_counter()
                auth.check(_basic(user, f"guess{i}".encode()))
                out.append(time.perf_counter() - t0)

    print("| | median ms | max ms |")
    print("|---|---|---|")
    for name, times in rows:
        print(f"| {name} | {statistics.median(times) * 1e3:.2f} | {max(times) * 1e3:.1f} |")
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"| wrong password, known user (bcrypt cost {args.cost}) | {k * 1e3:.1f} | {max(known) * 1e3:.1f} |")
    print(f"| any password, unknown user | {u * 1e3:.1f} | {max(unknown) * 1e3:.1f} |")
    print(f"\nunknown / known user median ratio: {u / k:.2f} (1.00 = indistinguishable)")


if __name__ == "__main__":
    main()
