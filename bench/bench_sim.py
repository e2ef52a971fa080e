"""How many simulated devices one core sustains in real time, with 1 Hz publishing and sampling.

For N devices on one node, runs the fleet as fast as possible for a stretch of virtual time
(1 s ticks, state published every virtual second, the ``sim`` backend sampling once per virtual
second as an exporter at 1 Hz would), and reports wall CPU seconds per virtual second. One core
sustains N devices in real time while that figure is below 1.0.

    python bench/bench_sim.py [--seconds 120] [--devices 4 8 16 32]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

from npuobs.devices.registry import create
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import Fleet, FleetConfig


def measure(devices: int, seconds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(FleetConfig.single_node(devices, seed=1), Path(tmp), VirtualClock())
        fleet.run(30)  # warm-up: model loads, caches
        backend = create("sim", state_dir=tmp, node="node-0")
        sample_cpu = 0.0

        def sample(_: Fleet) -> None:
            nonlocal sample_cpu
            t = time.process_time()
            backend.sample()
            sample_cpu += time.process_time() - t

        start = time.process_time()
        fleet.run(seconds, on_tick=sample)
        total = time.process_time() - start
    return total / seconds, sample_cpu / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--devices", type=int, nargs="+", default=[4, 8, 16, 32])
    args = ap.parse_args()
    print(f"## Simulated devices per core ({datetime.date.today()}, `python bench/bench_sim.py "
          f"--seconds {args.seconds}`)\n")
    print("| devices | CPU s per virtual s (all) | of which sampling | devices per core in real time |")
    print("|---|---|---|---|")
    for n in args.devices:
        per_s, sampling = measure(n, args.seconds)
        print(f"| {n} | {per_s:.3f} | {sampling:.4f} | {n / per_s:.0f} |")


if __name__ == "__main__":
    main()
