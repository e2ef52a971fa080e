"""Per-inference overhead of npuobs.instrumentation, side by side with an uninstrumented loop.

Each variant runs the same request body (queue wait, preprocess, device execution, postprocess,
as empty phases or with a fixed amount of work) ``--requests`` times; the overhead is the variant's
time per request minus the uninstrumented loop's, median of ``--repeats`` runs. Variants:

- metrics only (tracing off): prometheus_client metrics, no tracer provider;
- tracing on, request dropped: phases timed, tail rule says no (fast, successful, not head-sampled);
- tracing on, spans written: every request kept (head ratio 1), its span tree (root + 4 phases)
  written through the SDK with a BatchSpanProcessor into an exporter that discards;
- the same with one host-fallback op (root + 5 phases).

    python bench/bench_instrumentation.py [--requests 20000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from npuobs.instrumentation import Instrumentation


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    n, r = args.requests, args.repeats

    def instr(tracing: bool, head: float) -> Instrumentation:
        provider = None
        if tracing:
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=1 << 16))
        return Instrumentation(registry=CollectorRegistry(), tracer_provider=provider, node="n", device="0",
                               vendor="sim", model="m", head_sample_ratio=head, max_traces_per_second=float("inf"))

    base = per_request_us(uninstrumented, n, r)
    rows = [
        ("metrics only, tracing off", per_request_us(instrumented(instr(False, 0.0), False), n, r)),
        ("tracing on, request not kept", per_request_us(instrumented(instr(True, 0.0), False), n, r)),
        ("tracing on, span tree written (5 spans)", per_request_us(instrumented(instr(True, 1.0), False), n, r)),
        ("tracing on, with 1 host-fallback op (6 spans)", per_request_us(instrumented(instr(True, 1.0), True), n, r)),
    ]
    print(f"Python {platform.python_version()}, {platform.machine()}, {datetime.date.today()}; "
          f"`python bench/bench_instrumentation.py --requests {n} --repeats {r}`; median of {r} runs\n")
    print("| variant | CPU µs per request (median / best) | overhead vs uninstrumented, µs (median / best) |")
    print("|---|---:|---:|")
    print(f"| uninstrumented loop | {base[0]:.2f} / {base[1]:.2f} | - |")
    for name, (med, best) in rows:
        print(f"| {name} | {med:.2f} / {best:.2f} | {med - base[0]:.2f} / {best - base[1]:.2f} |")


if __name__ == "__main__":
    main()
