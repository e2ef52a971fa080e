"""Benchmark: exporter scrape latency against the prometheus_client floor and node_exporter.

Why: the exporter renders each snapshot once per exposition format and serves cached bytes, so
a scrape should cost the same at 8 or 64 devices and far less than rendering per scrape. For
8, 16 and 64 simulated devices this measures, with one client and one method for every target:

- ``npuobs``: ``npuobs exporter --backend sim`` as its own process (sampling every 5 s);
- ``floor``: a process serving the *same* metric families, built once from the same snapshot,
  with prometheus_client's own HTTP server, i.e. ``generate_latest`` on every scrape;
- ``node_exporter``: ``prometheus-node-exporter``'s own ``/metrics`` on this machine.

Scrapes are sequential over one keep-alive connection, ``Accept: text/plain`` and no gzip (so
every target sends the same format uncompressed); latency is request sent -> body read. Then
``--soak-scrapers`` concurrent scrapers hammer the 64-device exporter for a 10 s warm-up plus
``--soak-seconds`` (default 20; the issue's figure is 60), counting every failed scrape and
sampling its RSS each second; RSS drift is measured after the warm-up.
Run from the repository root::

    python bench/bench_exporter.py                   # ~2 minutes
    python bench/bench_exporter.py --soak-seconds 60

It prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from npuobs.stack import ManagedProcess, free_port, wait_http_ok  # noqa: E402

COMMAND = "python bench/bench_exporter.py"
NODE = "bench"
ACCEPT = "text/plain;version=0.0.4"
SOAK_WARMUP = 10.0  # seconds of the soak before RSS drift is measured (connections opening)


@dataclass
class Latency:
    name: str
    p50_ms: float
    p99_ms: float
    body_bytes: int
    samples: int


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def scrape_latency(name: str, port: int, scrapes: int, warmup: int = 20) -> Latency:
    """Sequential scrapes over one keep-alive connection; milliseconds from request to full body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times, size = [], 0
    for i in range(warmup + scrapes):
        t0 = time.perf_counter()
        conn.request("GET", "/metrics", headers={"Accept": ACCEPT})
        resp = conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{name}: HTTP {resp.status}")
        if i >= warmup:
            times.append(elapsed * 1000)
        size = len(body)
    conn.close()
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return Latency(name, percentile(times, 0.50), percentile(times, 0.99), size, samples)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def make_state(devices: int, root: Path) -> Path:
    from npuobs.simulator.fleet import Fleet, FleetConfig

    state = root / f"state-{devices}"
    Fleet(FleetConfig.single_node(devices, node=NODE), state).run(5)
    return state


def start_exporter(state: Path, workdir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess([sys.executable, "-m", "npuobs.cli.main", "exporter", "--backend", "sim",
                           "--state-dir", str(state), "--node", NODE, "--listen", f"127.0.0.1:{port}",
                           "--interval", "5"], workdir / f"exporter-{port}.log", name="npuobs-exporter").start()
    wait_http_ok(f"http://127.0.0.1:{port}/ready", 30, process=proc)
    return proc, port


def start_floor(state: Path, workdir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    proc = ManagedProcess([sys.executable, __file__, "--serve-floor", str(state), "--port", str(port)],
                          workdir / f"floor-{port}.log", name="floor").start()
    wait_http_ok(f"http://127.0.0.1:{port}/metrics", 30, process=proc)
    return proc, port


def serve_floor(state: Path, port: int) -> None:
    """The floor: prometheus_client's server rendering prebuilt families on every scrape."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    from npuobs.devices import registry
    from npuobs.exporter.families import device, workload

    snap = registry.create("sim", state_dir=state, node=NODE).sample()
    families = device.build(NODE, snap, {}) + workload.build(NODE, snap)

    class Prebuilt:
        def collect(self) -> list:
            return families

    reg = CollectorRegistry(auto_describe=False)
    reg.register(Prebuilt())  # type: ignore[arg-type]
    start_http_server(port, addr="127.0.0.1", registry=reg)
    threading.Event().wait()


def soak(port: int, pid: int, scrapers: int, seconds: float, warmup: float = SOAK_WARMUP) -> dict[str, Any]:
    """``scrapers`` threads scraping back to back for ``warmup + seconds``; every failure counts.

    RSS is sampled each second. Drift and range are measured after ``warmup``: while the 100
    connections open, the exporter's RSS ramps by a few MiB (one handler thread and socket per
    connection) and then stays flat; a leak would keep growing after that.
    """
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    reasons: dict[str, int] = {}
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ok = failed = 0
        while not stop.is_set():
            try:
                conn.request("GET", "/metrics", headers={"Accept": ACCEPT})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    ok += 1
                else:
                    failed += 1
                    with lock:
                        reasons[f"HTTP {resp.status}"] = reasons.get(f"HTTP {resp.status}", 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                failed += 1
                with lock:
                    reasons[repr(exc)] = reasons.get(repr(exc), 0) + 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.close()
        with lock:
            counts["ok"] += ok
            counts["failed"] += failed

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(scrapers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    rss: list[tuple[float, float]] = []
    while time.monotonic() - t0 < warmup + seconds:
        time.sleep(1.0)
        rss.append((time.monotonic() - t0, rss_mb(pid)))
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.monotonic() - t0
    steady = [mb for at, mb in rss if at >= warmup] or [rss[-1][1]]
    start = steady[0]
    return {"scrapes": counts["ok"], "failed": counts["failed"], "per_second": counts["ok"] / elapsed,
            "rss_first_mb": rss[0][1], "rss_start_mb": start, "rss_end_mb": steady[-1],
            "rss_max_mb": max(steady), "drift_pct": 100 * (steady[-1] - start) / start,
            "range_pct": 100 * (max(steady) - min(steady)) / start, "reasons": reasons}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", default="8,16,64", help="comma-separated device counts (default 8,16,64)")
    p.add_argument("--scrapes", type=int, default=300, help="timed sequential scrapes per target")
    p.add_argument("--soak-seconds", type=float, default=20.0, help="concurrent-scrape soak length")
    p.add_argument("--soak-scrapers", type=int, default=100, help="concurrent scrapers in the soak")
    p.add_argument("--serve-floor", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_floor:
        serve_floor(args.serve_floor, args.port)
        return 0
    counts = [int(x) for x in args.devices.split(",")]
    node_exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    with tempfile.TemporaryDirectory(prefix="npuobs-bench-") as tmp:
        work = Path(tmp)
        ne_proc, ne_port = None, free_port()
        if node_exporter:
            ne_proc = ManagedProcess([node_exporter, f"--web.listen-address=127.0.0.1:{ne_port}"],
                                     work / "node_exporter.log", name="node_exporter").start()
            wait_http_ok(f"http://127.0.0.1:{ne_port}/metrics", 30, process=ne_proc)
        rows, soak_result, soak_devices = [], None, max(counts)
        try:
            ne = scrape_latency("node_exporter", ne_port, args.scrapes) if ne_proc else None
            for n in counts:
                state = make_state(n, work)
                exp_proc, exp_port = start_exporter(state, work)
                floor_proc, floor_port = start_floor(state, work)
                try:
                    ours = scrape_latency("npuobs", exp_port, args.scrapes)
                    floor = scrape_latency("floor", floor_port, args.scrapes)
                    rows.append((n, ours, floor, rss_mb(exp_proc.pid)))
                    if n == soak_devices and args.soak_seconds > 0:
                        floor_proc.stop()
                        soak_result = soak(exp_port, exp_proc.pid, args.soak_scrapers, args.soak_seconds)
                finally:
                    floor_proc.stop()
                    exp_proc.stop()
        finally:
            if ne_proc:
                ne_proc.stop()
    report(rows, ne, soak_result, soak_devices, args)
    return 0


def report(rows: list, ne: Latency | None, soak_result: dict[str, Any] | None, soak_devices: int,
           args: argparse.Namespace) -> None:
    cpu = f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end (other work on the machine)"
    print(f"Measured {datetime.date.today().isoformat()} with `{COMMAND}"
          f"{'' if args.soak_seconds == 20 else f' --soak-seconds {args.soak_seconds:g}'}`; "
          f"Python {platform.python_version()}, {platform.machine()}, {cpu}; {args.scrapes} sequential scrapes per "
          f"target after 20 warm-up scrapes, text format, no gzip.\n")
    if ne:
        print(f"node_exporter: {ne.samples} samples / {ne.body_bytes / 1024:.0f} KiB, "
              f"p50 {ne.p50_ms:.2f} ms, p99 {ne.p99_ms:.2f} ms\n")
    print("| devices | samples | body KiB | npuobs p50 ms | npuobs p99 ms | floor p50 ms | floor p99 ms "
          "| npuobs p99 / floor p50 | npuobs p99 / floor p99 | npuobs p99 / node_exporter p99 | npuobs RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, ours, floor, rss in rows:
        vs_ne = f"{ours.p99_ms / ne.p99_ms:.2f}x" if ne else "n/a"
        print(f"| {n} | {ours.samples} | {ours.body_bytes / 1024:.0f} | {ours.p50_ms:.2f} | {ours.p99_ms:.2f} "
              f"| {floor.p50_ms:.2f} | {floor.p99_ms:.2f} | {ours.p99_ms / floor.p50_ms:.2f}x "
              f"| {ours.p99_ms / floor.p99_ms:.2f}x | {vs_ne} | {rss:.1f} |")
    if soak_result:
        s = soak_result
        print(f"\nSoak: {args.soak_scrapers} concurrent scrapers for {SOAK_WARMUP:g} s warm-up + "
              f"{args.soak_seconds:g} s against the {soak_devices}-device exporter: {s['scrapes']:.0f} scrapes "
              f"({s['per_second']:.0f}/s), {s['failed']:.0f} failed (warm-up included); RSS after 1 s "
              f"{s['rss_first_mb']:.1f} MiB, after warm-up {s['rss_start_mb']:.1f} -> end {s['rss_end_mb']:.1f} MiB "
              f"(drift {s['drift_pct']:+.1f} %, range {s['range_pct']:.1f} %, max {s['rss_max_mb']:.1f} MiB).")
        for reason, n in sorted(s["reasons"].items(), key=lambda kv: -kv[1]):
            print(f"- failed: {n} x {reason}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
