"""Inference-runtime series per (device, model, tenant): latency histogram, outcomes, queue, accuracy.

Bucket bounds are written with prometheus_client's float formatting (``le="0.1"``, ``le="+Inf"``)
because the generated SLO rules select ``le="0.1"`` literally. The runtime's slowest recent
request becomes an OpenMetrics exemplar on the bucket holding its latency, so a dashboard can
jump from a slow bucket to its trace; the classic text format has no exemplars and drops it.
"""

from __future__ import annotations

from prometheus_client.core import Metric
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from npuobs.devices.base import Snapshot, WorkloadReading
from npuobs.exporter.collectors import family, non_empty


def collect(node: str, snapshot: Snapshot | None) -> list[Metric]:
    latency, requests = family("npu_inference_latency_seconds"), family("npu_inference_requests_total")
    queue, load = family("npu_inference_queue_length"), family("npu_model_load_seconds")
    cold, accuracy = family("npu_model_cold_starts_total"), family("npu_accuracy_delta_ratio")
    checks, mismatches = family("npu_golden_checks_total"), family("npu_golden_mismatches_total")
    for w in snapshot.workloads if snapshot else ():
        key = [node, w.device, w.model, w.tenant]
        latency.add_metric(key, _buckets(w), w.latency.sum)
        for outcome, n in sorted(w.requests_total.items()):
            requests.add_metric([*key, outcome], float(n))
        queue.add_metric(key, float(w.queue_length))
        if w.model_load_seconds is not None:
            load.add_metric(key, w.model_load_seconds)
        cold.add_metric(key, float(w.cold_starts_total))
        if w.accuracy_delta_ratio is not None:
            accuracy.add_metric(key, w.accuracy_delta_ratio)
        checks.add_metric(key, float(w.golden_checks_total))
        mismatches.add_metric(key, float(w.golden_mismatches_total))
    return non_empty([latency, requests, queue, load, cold, accuracy, checks, mismatches])


def _buckets(w: WorkloadReading) -> list[tuple]:
    """(le, cumulative count[, exemplar]) per bucket; the exemplar sits on the first bucket >= it."""
    exemplar = w.latency_exemplar
    out: list[tuple] = []
    for bound, count in w.latency.buckets:
        if exemplar is not None and exemplar[1] <= bound:
            trace_id, seconds = exemplar
            out.append((floatToGoString(bound), float(count), Exemplar({"trace_id": trace_id}, seconds)))
            exemplar = None
        else:
            out.append((floatToGoString(bound), float(count)))
    return out
