"""How fast the soak records: wall and CPU seconds to simulate and render a stretch of the diurnal day.

The soak (``npuobs gameday --soak 24h``) spends almost all its time here: the default 2 x 4 fleet
running diurnal load through the real kernels, one process per node, rendered as OpenMetrics every
30 virtual seconds. This times ``record()`` alone over ``--hours`` starting at virtual hour ``--at``
(16 is the diurnal peak, 4 the trough), so a change to the simulator can be compared side by side
with the previous commit (``PYTHONPATH=<old checkout>``) in one sitting.

    python bench/bench_soak_record.py [--hours 0.5] [--at 16] [--tick 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from npuobs.gameday.record import RecordOptions, record
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import FleetConfig
from npuobs.simulator.loadgen import LoadProfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=0.5, help="virtual hours to record (default 0.5)")
    ap.add_argument("--at", type=float, default=16.0, help="virtual hour of day to start at (default 16, the peak)")
    ap.add_argument("--tick", type=float, default=1.0, help="simulator tick in virtual seconds (default 1)")
    ap.add_argument("--workers", type=int, default=2, help="processes, one node each (default 2)")
    args = ap.parse_args()
    fleet = replace(FleetConfig.default(), load=LoadProfile(kind="diurnal"), tick_seconds=args.tick)
    options = RecordOptions(start=VirtualClock().start + args.at * 3600, workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        rec = record(fleet, args.hours * 3600, Path(tmp), (), options)
        wall = time.monotonic() - t0
    cpu = ", ".join(f"{n.node} {n.cpu_seconds:.1f}" for n in rec.nodes)
    print(f"{args.hours:g} virtual h from {args.at:g}:00, {args.tick:g}s ticks, {args.workers} workers: "
          f"wall {wall:.1f} s (CPU s per node: {cpu}); 24 h at this rate: {wall * 24 / args.hours / 60:.1f} min")


if __name__ == "__main__":
    main()
