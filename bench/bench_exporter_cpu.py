"""Benchmark: the exporter's own CPU cost per node, side by side with node_exporter, in one run.

Why: a DaemonSet's cost multiplies by the fleet. Issue 18 measured the exporter at 1.33 % of a core
(8 devices, sampling every 5 s, scraped every 15 s with OpenMetrics + gzip as Prometheus does)
against node_exporter's 0.11 %, because it rendered every format after every sample. The target is
<= 0.5 % of a core under the same schedule. This runs, at the same time on the same machine:

- ``npuobs exporter --backend sim --interval 5`` at 8 devices, once per cardinality profile asked
  for (default: standard and debug), reading a simulated node that ``npuobs sim run`` keeps
  publishing (the simulator's own CPU is not counted);
- ``prometheus-node-exporter`` with its default collectors;

scrapes each target every 15 s with Prometheus 2.42's ``Accept`` header and ``Accept-Encoding:
gzip``, and reports each process's CPU seconds (user + system, psutil) over the measured window as a
percentage of one core, its RSS, and the scrape body size. Run from the repository root::

    python bench/bench_exporter_cpu.py                 # 5 minutes
    python bench/bench_exporter_cpu.py --seconds 600

It prints a Markdown table for docs/benchmarks.md. On a shared machine run it under ``nice`` and
read the figures as upper bounds (CPU time, not wall time, is measured, but cache contention shows).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import platform
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from npuobs.binaries import find_binary  # noqa: E402
from npuobs.stack import ManagedProcess, free_port, wait_http_ok  # noqa: E402

COMMAND = "python bench/bench_exporter_cpu.py"
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
          "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends
NODE = "node-0"


def scrape(url: str) -> tuple[int, int]:
    """(gzip bytes, samples) of one scrape as Prometheus does it."""
    req = urllib.request.Request(url, headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        raw = resp.read()
        body = gzip.decompress(raw) if resp.headers.get("Content-Encoding") == "gzip" else raw
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return len(raw), samples


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="measured window (default 300)")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--profiles", default="standard,debug", help="exporter profiles to run side by side")
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    args = parser.parse_args()
    node_exporter = find_binary("prometheus-node-exporter", "node_exporter")
    work = Path(tempfile.mkdtemp(prefix="npuobs-bench-cpu-"))
    state = work / "sim"
    procs: list[ManagedProcess] = []
    try:
        sim = ManagedProcess([sys.executable, "-m", "npuobs.cli.main", "sim", "run", "--devices", str(args.devices),
                              "--state-dir", str(state), "--quiet"], work / "sim.log", name="sim").start()
        procs.append(sim)
        deadline = time.monotonic() + 60
        while not (state / "fleet.json").is_file():
            if time.monotonic() > deadline or sim.poll() is not None:
                raise SystemExit(f"simulator did not publish: {sim.log_tail()}")
            time.sleep(0.2)
        targets: dict[str, tuple[ManagedProcess, str]] = {}
        for profile in args.profiles.split(","):
            port = free_port()
            p = ManagedProcess([sys.executable, "-m", "npuobs.cli.main", "exporter", "--backend", "sim",
                                "--state-dir", str(state), "--node", NODE, "--listen", f"127.0.0.1:{port}",
                                "--interval", "5", "--profile", profile], work / f"exporter-{profile}.log",
                               name=f"exporter-{profile}").start()
            procs.append(p)
            wait_http_ok(f"http://127.0.0.1:{port}/ready", 60, process=p)
            targets[f"npuobs exporter ({profile})"] = (p, f"http://127.0.0.1:{port}/metrics")
        if node_exporter:
            port = free_port()
            p = ManagedProcess([node_exporter, f"--web.listen-address=127.0.0.1:{port}"], work / "node-exporter.log",
                               name="node_exporter").start()
            procs.append(p)
            wait_http_ok(f"http://127.0.0.1:{port}/metrics", 30, process=p)
            targets["node_exporter"] = (p, f"http://127.0.0.1:{port}/metrics")
        time.sleep(10)  # imports done, first samples taken
        ps = {name: psutil.Process(p.pid) for name, (p, _) in targets.items()}
        start = {name: cpu_seconds(proc) for name, proc in ps.items()}
        sizes: dict[str, tuple[int, int]] = {}
        t0 = time.monotonic()
        scrapes = 0
        while time.monotonic() - t0 < args.seconds:
            for name, (_, url) in targets.items():
                sizes[name] = scrape(url)
            scrapes += 1
            time.sleep(max(0.0, t0 + scrapes * args.scrape_interval - time.monotonic()))
        wall = time.monotonic() - t0
        print(f"Exporter CPU, {args.devices} devices, sampling every 5 s, scraped every {args.scrape_interval:g} s "
              f"(OpenMetrics + gzip), {wall:.0f} s window, {scrapes} scrapes each; "
              f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"`{COMMAND} --seconds {args.seconds:g}`")
        print()
        print("| process | CPU (% of one core) | RSS (MiB) | scrape body (gzip bytes) | samples |")
        print("|---|---|---|---|---|")
        for name, proc in ps.items():
            pct = 100 * (cpu_seconds(proc) - start[name]) / wall
            print(f"| {name} | {pct:.2f} % | {proc.memory_info().rss / 2**20:.0f} | {sizes[name][0]} | "
                  f"{sizes[name][1]} |")
    finally:
        for p in reversed(procs):
            p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
