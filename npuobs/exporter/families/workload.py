"""Inference-runtime series per (device, model, tenant): latency histogram, outcomes, queue, accuracy.

The runtime's slowest recent request becomes an OpenMetrics exemplar on the bucket holding its
latency (``npuobs.families.histogram_buckets``, shared with the instrumentation library).
"""

from __future__ import annotations

from prometheus_client.core import Metric

from npuobs.devices.base import Snapshot, WorkloadReading
from npuobs.exporter.families import Inputs, builder
from npuobs.families import family, histogram_buckets, non_empty


@builder("workload")
def _from_inputs(inputs: Inputs) -> list[Metric]:
    return build(inputs.node, inputs.snapshot)


def build(node: str, snapshot: Snapshot | None) -> list[Metric]:
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
    exemplar = w.latency_exemplar
    return histogram_buckets(w.latency.buckets, (*exemplar, None) if exemplar is not None else None)
