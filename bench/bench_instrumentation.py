"""Per-inference overhead of npuobs.instrumentation, side by side with an uninstrumented loop;
and what tracing costs the simulator, which records through the same library.

Server side: each variant runs the same request body (queue wait, preprocess, device execution,
postprocess, as empty phases) ``--requests`` times; the overhead is the variant's CPU time per
request minus the uninstrumented loop's, median (and best) of ``--repeats`` runs. Variants:

- minimal, tracing off: ``inference`` + one ``device_execute`` phase;
- all four phases, tracing off: metrics only (Prometheus sink, no tracer provider);
- tracing on, request not kept: phases timed, the tail rule says no (fast, successful, not head-sampled);
- tracing on, 1 % head sampling: the mean over kept and dropped requests at the default ratio;
- span tree written: every request kept (head ratio 1), its tree (root + 1 or 4 phases) written
  through the OpenTelemetry SDK with a BatchSpanProcessor into an exporter that discards;
- the same with one host-fallback op (root + 5 phases).

Simulator side: CPU seconds per virtual second of an N-device node (1 s ticks, state published and
read back through the ``sim`` backend every virtual second, as ``bench_sim.py`` measures) with
tracing off, with the default tracing (1 % head sampling, at most 4 trees per device-second), and
with every request wanted (the 4 trees per device-second budget spent every tick).

    python bench/bench_instrumentation.py [--requests 20000] [--repeats 7] [--seconds 60] [--devices 8]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from npuobs.devices.registry import create
from npuobs.instrumentation import Instrumentation
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import Fleet, FleetConfig
from npuobs.simulator.runtime import TracingConfig, configure_tracing


class _Discard(SpanExporter):
    """Counts and drops spans: the export cost is the collector's, not the request path's."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def _body() -> None:
    """The request's own work: kept tiny so the difference is the instrumentation, not noise."""


def uninstrumented(n: int) -> None:
    for _ in range(n):
        _body()
        _body()
        _body()
        _body()


def minimal(instr: Instrumentation) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with instr.inference(tenant="search", batch_size=8, precision="int8") as h, h.device_execute(ops=9):
                _body()
    return run


def instrumented(instr: Instrumentation, fallback: bool) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            with instr.inference(tenant="search", batch_size=8, precision="int8") as h:
                with h.queue_wait():
                    _body()
                with h.preprocess():
                    _body()
                with h.device_execute(ops=9):
                    _body()
                if fallback:
                    with h.host_fallback_op("gelu"):
                        pass
                with h.postprocess():
                    _body()
    return run


def per_request_us(fn: Callable[[int], None], n: int, repeats: int) -> tuple[float, float]:
    """(median, best) µs of process CPU time per request: CPU time, not wall time, so other load on
    a shared machine inflates it less; process-wide, so the span processor's export thread counts."""
    fn(min(n, 2000))  # warm-up: caches, first-use allocations
    runs = []
    for _ in range(repeats):
        t = time.process_time_ns()
        fn(n)
        runs.append((time.process_time_ns() - t) / n / 1e3)
    return statistics.median(runs), min(runs)


def discarding_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1 << 16))
    return provider


def sim_cpu_per_virtual_second(devices: int, seconds: int, tracing: TracingConfig) -> float:
    """CPU seconds per virtual second of a node of ``devices``, as bench_sim.py measures it."""
    configure_tracing(tracing)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fleet = Fleet(FleetConfig.single_node(devices, seed=1), Path(tmp), VirtualClock())
            fleet.run(30)  # warm-up: model loads, caches
            backend = create("sim", state_dir=tmp, node="node-0")
            start = time.process_time()
            fleet.run(seconds, on_tick=lambda _: backend.sample())
            return (time.process_time() - start) / seconds
    finally:
        configure_tracing(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--devices", type=int, default=8)
    args = ap.parse_args()
    n, r = args.requests, args.repeats

    def instr(tracing: bool, head: float) -> Instrumentation:
        return Instrumentation(registry=CollectorRegistry(), tracer_provider=discarding_provider() if tracing else None,
                               node="n", device="0", vendor="sim", model="m", head_sample_ratio=head,
                               max_traces_per_second=float("inf"))

    base = per_request_us(uninstrumented, n, r)
    variants: list[tuple[str, Callable[[int], None]]] = [
        ("minimal (inference + device_execute), tracing off", minimal(instr(False, 0.0))),
        ("four phases (queue_wait, preprocess, device_execute, postprocess), tracing off",
         instrumented(instr(False, 0.0), False)),
        ("four phases, tracing on, request not kept", instrumented(instr(True, 0.0), False)),
        ("four phases, tracing on, 1 % head-sampled (mean)", instrumented(instr(True, 0.01), False)),
        ("minimal, span tree written (2 spans)", minimal(instr(True, 1.0))),
        ("four phases, span tree written (5 spans)", instrumented(instr(True, 1.0), False)),
        ("four phases + 1 host-fallback op, tree written (6 spans)", instrumented(instr(True, 1.0), True)),
    ]
    rows = [(name, per_request_us(fn, n, r)) for name, fn in variants]
    print(f"Python {platform.python_version()}, {platform.machine()}, {datetime.date.today()}; `python "
          f"bench/bench_instrumentation.py --requests {n} --repeats {r} --seconds {args.seconds} --devices "
          f"{args.devices}`\n")
    print("| variant | CPU µs per request (median / best) | overhead vs uninstrumented, µs (median / best) |")
    print("|---|---:|---:|")
    print(f"| uninstrumented loop | {base[0]:.2f} / {base[1]:.2f} | - |")
    for name, (med, best) in rows:
        print(f"| {name} | {med:.2f} / {best:.2f} | {med - base[0]:.2f} / {best - base[1]:.2f} |")

    d = args.devices
    print(f"\nSimulator, {d} devices, {args.seconds} virtual s\n")
    print("| tracing | CPU s per virtual s | devices per core in real time |")
    print("|---|---:|---:|")
    for name, config in (("off", TracingConfig()),
                         ("default: 1 % head, ≤ 4 trees per device-s", TracingConfig(discarding_provider())),
                         ("every request wanted, ≤ 4 trees per device-s",
                          TracingConfig(discarding_provider(), head_sample_ratio=1.0))):
        per_s = sim_cpu_per_virtual_second(d, args.seconds, config)
        print(f"| {name} | {per_s:.3f} | {d / per_s:.0f} |")


if __name__ == "__main__":
    main()
