"""ONNX Runtime adapter: an ``InferenceSession`` whose runs produce npuobs runtime metrics and spans,
with the host-vs-accelerator op split taken from ORT's own node placement.

ORT partitions a graph across execution providers when the session is created: each node goes to
the first provider in the session's list that claims it, and whatever no accelerator claims runs on
``CPUExecutionProvider`` — that is the CPU fallback (F5) of an ORT-based NPU stack. The assignment
is fixed for the session's life, and ORT reports it in its profile: one ``<node>_kernel_time``
event per node run, with ``op_name`` and ``provider``. So the adapter profiles one warm-up run
while loading (profiling costs per run, so it is ended right after), keeps the per-node placement
and kernel times, and accounts every later run from them: per run, each op kind counts once per
node at its placement, and the run's measured time is apportioned to op kinds by their share of
the profiled kernel time (ORT reports no per-node times without profiling).

Requires the optional ``onnx`` extra (``onnxruntime``); nothing imports this module otherwise.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuobs.instrumentation.server import Instrumentation

HOST_PROVIDERS = frozenset({"CPUExecutionProvider"})
A_PROVIDERS = "onnxruntime.providers"
_KERNEL = "_kernel_time"


@dataclass(frozen=True)
class NodePlacement:
    """Where ORT ran one node of the (optimized) graph, and its kernel time in the profiled run."""

    node: str
    op: str
    provider: str
    seconds: float


def placements_from_profile(events: Sequence[Mapping[str, Any]]) -> list[NodePlacement]:
    """The nodes of an ORT profile (Chrome trace events), in execution order.

    A node that ran more than once in the profile (several profiled runs) keeps its first event:
    the placement is the same every time.
    """
    seen: dict[str, NodePlacement] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") != "Node" or not name.endswith(_KERNEL):
            continue
        node = name[: -len(_KERNEL)]
        args = e.get("args", {})
        if node not in seen and "provider" in args:
            seen[node] = NodePlacement(node, str(args["op_name"]), str(args["provider"]), float(e.get("dur", 0)) / 1e6)
    return list(seen.values())


class InstrumentedSession:
    """An ``onnxruntime.InferenceSession`` that records each ``run`` through ``instr``.

    ``warmup_feed`` is one valid input: the profiled warm-up run that reveals the placement is
    part of the model load (``npu_model_load_seconds`` covers session creation and that run).
    Providers not in ``host_providers`` count as the accelerator. Profiling is switched on in
    ``sess_options`` (yours, to choose optimization levels and threads, or a default one).
    """

    def __init__(self, instr: Instrumentation, model: str | bytes | os.PathLike[str],
                 warmup_feed: Mapping[str, np.ndarray], *, providers: Sequence[str] | None = None,
                 sess_options: Any = None, host_providers: frozenset[str] = HOST_PROVIDERS,
                 precision: str = "") -> None:
        import onnxruntime as ort

        self.instr = instr
        self.precision = precision
        options = sess_options or ort.SessionOptions()
        with tempfile.TemporaryDirectory(prefix="npuobs-ort-") as tmp:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tmp, "profile")
            with instr.model_load():
                self.session = ort.InferenceSession(model if isinstance(model, bytes) else os.fspath(model),
                                                    sess_options=options, providers=providers)
                self.session.run(None, dict(warmup_feed))
                with open(self.session.end_profiling()) as f:
                    self.nodes = placements_from_profile(json.load(f))
        if not self.nodes:
            raise RuntimeError("the ONNX Runtime profile lists no node kernels; cannot tell op placement")
        self._placement = {p: "host" if p in host_providers else "device" for p in {n.provider for n in self.nodes}}
        total = sum(n.seconds for n in self.nodes) or 1.0
        kinds: dict[tuple[str, str], list[float]] = {}
        for n in self.nodes:
            acc = kinds.setdefault((n.op, self._placement[n.provider]), [0, 0.0])
            acc[0] += 1
            acc[1] += n.seconds / total
        self._per_run = [(op, placement, int(count), share) for (op, placement), (count, share) in kinds.items()]
        self._span_attrs = {A_PROVIDERS: tuple(sorted(self._placement))}

    @property
    def provider_counts(self) -> dict[str, int]:
        """Nodes per execution provider: ORT's own accounting of where the graph runs."""
        return dict(Counter(n.provider for n in self.nodes))

    @property
    def host_ratio(self) -> float:
        """Share of the graph's nodes that run on the host: the CPU-fallback ratio of this model."""
        return sum(1 for n in self.nodes if self._placement[n.provider] == "host") / len(self.nodes)

    def run(self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray], *, tenant: str,
            batch_size: int = 1) -> list[Any]:
        """``InferenceSession.run``, recorded as one inference of ``tenant``."""
        with self.instr.inference(tenant=tenant, batch_size=batch_size, precision=self.precision) as h:
            start = time.perf_counter()
            with h.device_execute(ops=None, attributes=self._span_attrs):
                outputs = self.session.run(output_names, dict(feed))
            seconds = time.perf_counter() - start
            for op, placement, count, share in self._per_run:
                h.record_ops(op, placement, count, seconds * share)
        return outputs
