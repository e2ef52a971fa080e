"""Benchmark: the exporter under an idle-connection flood past its file limit (issue 15, probe 1).

Why: before the bounded server, ~1,000 idle connections under the usual 1,024-file limit took
the exporter down (scrapes and ``/healthz`` timed out, the sampler failed with "Too many open
files", a thread per connection). This runs ``npuobs exporter`` as its own process with
``RLIMIT_NOFILE`` soft = hard = ``--nofile`` (default 1,024, i.e. ``ulimit -n 1024``) and a
furiosa-smi backend (a real script printing the published tables, so every sample forks processes
and opens pipes) sampling every 0.5 s, then:

1. ``--seconds`` of baseline: a scrape of ``/metrics`` and a ``/healthz`` probe on fresh
   connections every 50 ms;
2. ``--connections`` (default 2,000) idle connections opened and *held*: every one the exporter
   closes (evicted at its connection cap, or timed out) is reopened at once, as a determined
   attacker would (``--no-reopen``: opened once, as in the issue's probe; ``--partial``: each
   sends half a request head first, so the kernel's deferred accept does not hold it back);
3. the same scrapes and probes for ``--seconds`` while the flood is held.

It reports p50/p99/max latency, failed requests, the sampler's successful samples during each
phase, and the exporter's threads, RSS and open descriptors at the end. Run from the repository
root (takes about 2 x ``--seconds`` plus start-up)::

    python bench/bench_connection_flood.py                 # 2,000 connections, ulimit -n 1024, 30 s phases
    python bench/bench_connection_flood.py --no-reopen
    python bench/bench_connection_flood.py --partial

It prints a Markdown table for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import resource
import selectors
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FURIOSA = REPO / "tests" / "shared" / "fixtures" / "vendor" / "furiosa"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes, float]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), time.perf_counter() - t0
    except OSError:
        return 0, b"", time.perf_counter() - t0
    finally:
        conn.close()


def _last_success(body: bytes) -> float:
    for line in body.decode().splitlines():
        if line.startswith('npuobs_collector_last_success_timestamp_seconds{collector="furiosa"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Flood:
    """Holds ``n`` idle connections, reopening each one the server closes (in a process of its own,
    so the attacker's loop does not compete with the measuring client for one interpreter lock)."""

    def __init__(self, port: int, n: int, reopen: bool = True, partial: bool = False) -> None:
        self.port, self.n, self.reopen, self.partial = port, n, reopen, partial
        self._reopened = multiprocessing.Value("q", 0)
        self._stop = multiprocessing.Event()
        self._process = multiprocessing.Process(target=self._run, daemon=True)

    @property
    def reopened(self) -> int:
        return int(self._reopened.value)

    def _open(self) -> None:
        s = socket.socket()
        if self.partial:  # slowloris: half a request head, never finished
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", self.port))
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
            except OSError:
                pass
        else:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ)

    def start(self) -> Flood:
        self._process.start()
        return self

    def _run(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, self.n + 512)), hard))
        self.sel = selectors.DefaultSelector()
        for _ in range(self.n):
            self._open()
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:  # closed by the server: reopen at once
                    self.sel.unregister(sock)
                    sock.close()
                    if self.reopen:
                        self._open()
                        self._reopened.value += 1

    def stop(self) -> None:
        self._stop.set()
        self._process.join(10)


def _phase(port: int, seconds: float) -> dict[str, object]:
    lat: dict[str, list[float]] = {"/metrics": [], "/healthz": []}
    failed = {"/metrics": 0, "/healthz": 0}
    first = last = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for path in lat:
            status, body, took = _get(port, path)
            lat[path].append(took)
            if status != 200:
                failed[path] += 1
            elif path == "/metrics":
                last = _last_success(body)
                first = first or last
        time.sleep(0.05)

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    return {path: {"n": len(xs), "failed": failed[path], "p50": pct(xs, 0.5), "p99": pct(xs, 0.99),
                   "max": max(xs) * 1000} for path, xs in lat.items()} | {"sampled_s": last - first}


def _proc(pid: int) -> dict[str, str]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return {"threads": status["Threads"].strip(), "rss": status["VmRSS"].strip(), "fds": str(fds)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--nofile", type=int, default=1024, help="the exporter's RLIMIT_NOFILE, soft = hard")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--partial", action="store_true",
                    help="each connection sends half a request head first (slowloris) instead of nothing")
    ap.add_argument("--no-reopen", action="store_true",
                    help="open the connections once and let closed ones go (the issue's probe) instead of reopening")
    args = ap.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        tool = Path(tmp) / "furiosa-smi"
        info = FURIOSA / "furiosa-smi-info-format-full-4x-rngd-fw1.7.0.txt"
        status = FURIOSA / "furiosa-smi-status-4x-rngd.txt"
        tool.write_text(f'#!/bin/sh\nif [ "$1" = "info" ]; then cat "{info}"\nelse cat "{status}"; fi\n')
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
        cfg = Path(tmp) / "exporter.yaml"
        cfg.write_text(f"backend: furiosa\nbackend_options: {{tool_path: {tool}}}\ninterval: 0.5\nnode: n1\n"
                       f"listen: 127.0.0.1:{port}\n")
        log = open(Path(tmp) / "exporter.log", "wb")  # noqa: SIM115 - closed below
        limit = args.nofile
        proc = subprocess.Popen([sys.executable, "-m", "npuobs.cli.main", "exporter", "--config", str(cfg)],  # noqa: S603
                                stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))
        try:
            deadline = time.monotonic() + 30
            while _get(port, "/ready")[0] != 200:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("exporter did not become ready")
                time.sleep(0.1)
            base = _phase(port, args.seconds)
            base_proc = _proc(proc.pid)
            flood = Flood(port, args.connections, reopen=not args.no_reopen, partial=args.partial).start()
            time.sleep(2.0)  # the flood is open
            loaded = _phase(port, args.seconds)
            loaded_proc = _proc(proc.pid)
            reopened = flood.reopened
            flood.stop()
        finally:
            proc.terminate()
            proc.wait(60)
            log.close()
        emfile = (Path(tmp) / "exporter.log").read_text().count("Too many open files")
    kind = "half-request (slowloris)" if args.partial else "idle"
    print(f"exporter RLIMIT_NOFILE {args.nofile}, {args.connections} {kind} connections held "
          f"({reopened} reopened after the exporter closed them), {args.seconds:g} s per phase\n")
    print("| phase | path | requests | failed | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for name, res in (("baseline", base), ("flood", loaded)):
        for path in ("/metrics", "/healthz"):
            r = res[path]
            print(f"| {name} | {path} | {r['n']} | {r['failed']} | {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} |")
    print()
    print("| phase | sampler advanced (s) | threads | RSS | open fds |")
    print("|---|---|---|---|---|")
    for name, res, pr in (("baseline", base, base_proc), ("flood", loaded, loaded_proc)):
        print(f"| {name} | {res['sampled_s']:.1f} | {pr['threads']} | {pr['rss']} | {pr['fds']} |")
    print(f"\n'Too many open files' in the exporter log: {emfile}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
