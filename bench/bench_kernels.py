"""Benchmark: the exact INT8 matmul path against a plain float32 BLAS matmul at the same shapes.

Why: the simulator runs INT8 inference through ``int8_matmul`` (a float32 BLAS matmul of
int8-valued arrays, exact for K <= 1040). This checks that exactness costs little throughput:
the target is INT8 >= 0.8x FP32. Run from the repository root::

    python bench/bench_kernels.py

It prints a Markdown table (GMAC/s = 1e9 multiply-accumulates per second, best of 7 repeats).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from npuobs.simulator.model import (  # noqa: E402
    INT8_MAX,
    exact_f32_matmul,
    int8_matmul,
    int8_matmul_reference,
    load_dataset,
    train_fp32,
)

COMMAND = "python bench/bench_kernels.py"
REPEATS = 7
MIN_SECONDS = 0.1


def _model_shapes() -> list[tuple[str, int, int, int]]:
    """The MLP's two layers at the held-out test batch, plus one large layer."""
    batch = len(load_dataset().y_test)
    shapes = [(f"model layer {i + 1}", batch, *w.shape) for i, w in enumerate(train_fp32().weights)]
    return [*shapes, ("large layer", 256, 1024, 1024)]


def _seconds(fn: Callable[[], object], calls: int) -> float:
    """Wall time of ``calls`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def _calls_for(fn: Callable[[], object]) -> int:
    """Calls per timed run: enough (MIN_SECONDS) to swamp timer noise."""
    calls = 1
    while _seconds(fn, calls) < MIN_SECONDS:
        calls *= 2
    return calls


def _best_seconds(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best per-call time of each function over REPEATS rounds.

    The functions take turns within every round, so a burst of load from other processes hits
    all of them alike instead of skewing one column of the table.
    """
    calls = {name: _calls_for(fn) for name, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(REPEATS):
        for name, fn in fns.items():
            best[name] = min(best[name], _seconds(fn, calls[name]) / calls[name])
    return best


def _blas_threads() -> int:
    """Threads BLAS will use right now (inside or outside a threadpool_limits block)."""
    return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


def _row(name: str, threads: str, m: int, k: int, n: int, rng: np.random.Generator) -> str:
    """Time FP32 BLAS, int8_matmul (with casts) and the pre-cast-weights path at one shape."""
    a_q = rng.integers(-INT8_MAX, INT8_MAX + 1, size=(m, k), dtype=np.int8)
    w_q = rng.integers(-INT8_MAX, INT8_MAX + 1, size=(k, n), dtype=np.int8)
    a_f, w_f = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
    w_cast = w_q.astype(np.float32)
    exact = np.array_equal(int8_matmul(a_q, w_q), int8_matmul_reference(a_q, w_q))
    seconds = _best_seconds(
        {
            "fp32": lambda: a_f @ w_f,
            "int8": lambda: int8_matmul(a_q, w_q),
            "precast": lambda: exact_f32_matmul(a_q.astype(np.float32), w_cast),
        }
    )
    fp32, int8, precast = (m * k * n / 1e9 / seconds[name] for name in ("fp32", "int8", "precast"))
    return (
        f"| {name} | {m}x{k} @ {k}x{n} | {threads} | {fp32:.2f} | {int8:.2f} | {int8 / fp32:.2f}x "
        f"| {precast:.2f} | {precast / fp32:.2f}x | {'yes' if exact else 'NO'} |"
    )


def main() -> None:
    """Print the comparison table, single-threaded BLAS and then BLAS's default thread count."""
    rng = np.random.default_rng(0)
    print(f"Command: `{COMMAND}`  ")
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs; GMAC/s best of {REPEATS}; casts included in the INT8 columns"
    )
    print()
    print(
        "| shape | M x K @ K x N | BLAS threads | FP32 GMAC/s | INT8 `int8_matmul` GMAC/s | INT8/FP32 "
        "| INT8, weights pre-cast GMAC/s | pre-cast/FP32 | bit-exact |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|:---:|")
    for limit in (1, None):
        with threadpool_limits(limits=limit, user_api="blas"):
            threads = str(_blas_threads())
            for name, m, k, n in _model_shapes():
                print(_row(name, threads, m, k, n, rng))


if __name__ == "__main__":
    main()
