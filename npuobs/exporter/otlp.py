"""Optional OTLP push of the same readings, on the OpenTelemetry hardware semantic conventions.

Sites that run an OpenTelemetry Collector instead of (or beside) Prometheus get the exporter's
readings pushed every ``otlp.interval`` seconds over OTLP gRPC or HTTP/protobuf. Observable
instruments read the latest snapshot the sampler took, so pushing never calls a backend and
never sends an older reading twice as new: a failed sample leaves the snapshot empty and the
points are simply absent from that export.

Mapping (also in docs/exporter.md): generic hardware readings use the ``hw.*`` metrics where the
semantic conventions have one (``hw.status``, ``hw.temperature``, ``hw.temperature.limit``,
``hw.power``, ``hw.energy``, ``hw.errors``) with ``hw.id`` (the device id, as the Prometheus
``device`` label) and ``hw.type="npu"`` (the conventions list no accelerator type but GPU, and
these are not GPUs). The identity attributes ``hw.vendor``, ``hw.model``, ``hw.driver_version``
and ``hw.firmware_version`` ride on ``hw.status`` only, like ``npu_device_info`` in Prometheus,
so a driver upgrade renames one stream per device instead of all of them. Everything else is
``npu.*``. The latency histogram goes out as ``npu.inference.duration`` (cumulative, explicit
bounds = the schema's buckets): observable instruments cannot report a histogram aggregated
elsewhere (by the runtime), so ``LatencyHistograms`` builds it from the same snapshot and adds it
to each export the SDK makes, in the same request.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from npuobs import __version__
from npuobs.devices.base import DeviceReading, Snapshot, WorkloadReading
from npuobs.exporter.config import OtlpConfig

HW_TYPE = "npu"

Latest = Callable[[], Snapshot | None]


def _hw(r: DeviceReading) -> dict[str, str]:
    return {"hw.id": r.info.device, "hw.type": HW_TYPE}


def _status(r: DeviceReading) -> Iterator[Observation]:
    state = "failed" if not r.up else ("degraded" if r.healthy is False else "ok")
    identity = {**_hw(r), "hw.vendor": r.info.vendor, "hw.model": r.info.model,
                "hw.driver_version": r.info.driver_version, "hw.firmware_version": r.info.firmware_version}
    for s in ("ok", "degraded", "failed"):
        yield Observation(1 if s == state else 0, {**identity, "hw.state": s})


def _value(attr: str, extra: dict[str, str] | None = None) -> Callable[[DeviceReading], Iterator[Observation]]:
    def read(r: DeviceReading) -> Iterator[Observation]:
        value = getattr(r, attr)
        if value is not None:
            yield Observation(float(value), {**_hw(r), **(extra or {})})
    return read


def _flag(attr: str) -> Callable[[DeviceReading], Iterator[Observation]]:
    def read(r: DeviceReading) -> Iterator[Observation]:
        value = getattr(r, attr)
        if value is not None:
            yield Observation(1 if value else 0, _hw(r))
    return read


def _mapping(attr: str, key: str) -> Callable[[DeviceReading], Iterator[Observation]]:
    def read(r: DeviceReading) -> Iterator[Observation]:
        for name, value in sorted(getattr(r, attr).items()):
            yield Observation(float(value), {**_hw(r), key: name})
    return read


def _ops(r: DeviceReading) -> Iterator[Observation]:
    per: dict[str, int] = {}
    for (_, placement), stats in r.ops.items():
        per[placement] = per.get(placement, 0) + stats.count
    for placement, count in sorted(per.items()):
        yield Observation(count, {**_hw(r), "npu.op.placement": placement})


def _op_time(r: DeviceReading) -> Iterator[Observation]:
    for (op, placement), stats in sorted(r.ops.items()):
        yield Observation(stats.seconds, {**_hw(r), "npu.op.name": op, "npu.op.placement": placement})


def _w(fn: Callable[[WorkloadReading], float | None]) -> Callable[[WorkloadReading], Iterator[Observation]]:
    def read(w: WorkloadReading) -> Iterator[Observation]:
        value = fn(w)
        if value is not None:
            yield Observation(value, {"hw.id": w.device, "npu.model": w.model, "npu.tenant": w.tenant})
    return read


def _requests(w: WorkloadReading) -> Iterator[Observation]:
    for outcome, n in sorted(w.requests_total.items()):
        yield Observation(n, {"hw.id": w.device, "npu.model": w.model, "npu.tenant": w.tenant,
                              "npu.outcome": outcome})


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: str  # "gauge" | "counter" | "updown"
    unit: str
    description: str
    device: Callable[[DeviceReading], Iterable[Observation]] | None = None
    workload: Callable[[WorkloadReading], Iterable[Observation]] | None = None


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument("hw.status", "updown", "1", "Operational status: 1 for the current hw.state, 0 for the others.",
               device=_status),
    Instrument("hw.temperature", "gauge", "Cel", "Device (die) temperature.", device=_value("temperature_celsius")),
    Instrument("hw.temperature.limit", "gauge", "Cel", "Temperature at which the device throttles.",
               device=_value("temperature_throttle_threshold_celsius", {"hw.limit_type": "throttled"})),
    Instrument("hw.power", "gauge", "W", "Board power draw.", device=_value("power_watts")),
    Instrument("hw.energy", "counter", "J", "Energy consumed since the driver loaded.",
               device=_value("energy_joules_total")),
    Instrument("hw.errors", "counter", "{error}", "Device errors by error.type.",
               device=_mapping("errors_total", "error.type")),
    Instrument("npu.power.limit", "gauge", "W", "Enforced board power limit.", device=_value("power_limit_watts")),
    Instrument("npu.utilization", "gauge", "1", "Fraction of time the compute units were busy.",
               device=_value("utilization_ratio")),
    Instrument("npu.memory.usage", "gauge", "By", "Device memory in use.", device=_value("memory_used_bytes")),
    Instrument("npu.memory.limit", "gauge", "By", "Device memory capacity.", device=_value("memory_total_bytes")),
    Instrument("npu.clock.frequency", "gauge", "Hz", "Current compute clock.", device=_value("clock_hertz")),
    Instrument("npu.clock.frequency.limit", "gauge", "Hz", "Maximum compute clock.",
               device=_value("clock_max_hertz")),
    Instrument("npu.throttled", "gauge", "1", "1 while the device runs below its maximum clock.",
               device=_flag("throttled")),
    Instrument("npu.throttle.reason.active", "gauge", "1", "1 while the npu.throttle.reason is active.",
               device=_mapping("throttle_reasons", "npu.throttle.reason")),
    Instrument("npu.ops", "counter", "{op}", "Graph ops executed, by npu.op.placement (device or host).",
               device=_ops),
    Instrument("npu.op.time", "counter", "s", "Time spent executing each op kind, by placement.", device=_op_time),
    Instrument("npu.resets", "counter", "{reset}", "Device resets by npu.reset.reason.",
               device=_mapping("resets_total", "npu.reset.reason")),
    Instrument("npu.oom_events", "counter", "{event}", "Device memory allocation failures.",
               device=_value("oom_events_total")),
    Instrument("npu.inference.requests", "counter", "{request}", "Inference requests by npu.outcome.",
               workload=_requests),
    Instrument("npu.inference.queue.length", "gauge", "{request}", "Requests waiting in the runtime queue.",
               workload=_w(lambda w: w.queue_length)),
    Instrument("npu.model.load.duration", "gauge", "s", "Duration of the most recent model load.",
               workload=_w(lambda w: w.model_load_seconds)),
    Instrument("npu.model.cold_starts", "counter", "{request}", "Requests that waited for a model load.",
               workload=_w(lambda w: w.cold_starts_total)),
    Instrument("npu.accuracy.delta", "gauge", "1", "FP32-reference accuracy minus on-device accuracy.",
               workload=_w(lambda w: w.accuracy_delta_ratio)),
    Instrument("npu.golden.checks", "counter", "{inference}", "Golden-output canary inferences run.",
               workload=_w(lambda w: w.golden_checks_total)),
    Instrument("npu.golden.mismatches", "counter", "{inference}", "Canary outputs that differed from golden.",
               workload=_w(lambda w: w.golden_mismatches_total)),
)


def metric_exporter(config: OtlpConfig) -> MetricExporter:
    """The SDK's OTLP exporter for ``config.protocol`` (gRPC, or HTTP/protobuf to ``/v1/metrics``)."""
    assert config.endpoint is not None
    headers = dict(config.headers) or None
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        insecure = config.insecure if config.insecure is not None else config.endpoint.startswith("http://")
        return Grpc(endpoint=config.endpoint, insecure=insecure, headers=headers, timeout=config.timeout)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

    parts = urllib.parse.urlsplit(config.endpoint)
    endpoint = config.endpoint if parts.path not in ("", "/") else config.endpoint.rstrip("/") + "/v1/metrics"
    return Http(endpoint=endpoint, headers=headers, timeout=config.timeout)


LATENCY_METRIC = "npu.inference.duration"
METER_NAME = "npuobs.exporter"


def latency_points(snap: Snapshot, start_ns: int, now_ns: int) -> list[HistogramDataPoint]:
    """One cumulative point per (device, model, tenant): our buckets are (upper bound, cumulative
    count) with +Inf last; OTLP wants the finite bounds and a count per bucket."""
    points = []
    for w in snap.workloads:
        if not w.latency.buckets:
            continue
        cumulative = [n for _, n in w.latency.buckets]
        counts = [b - a for a, b in zip([0, *cumulative[:-1]], cumulative, strict=True)]
        points.append(HistogramDataPoint(
            attributes={"hw.id": w.device, "npu.model": w.model, "npu.tenant": w.tenant},
            start_time_unix_nano=start_ns, time_unix_nano=now_ns, count=w.latency.count, sum=w.latency.sum,
            bucket_counts=counts, explicit_bounds=[b for b, _ in w.latency.buckets[:-1]],
            min=None, max=None))  # type: ignore[arg-type]  # unknown for a histogram aggregated elsewhere
    return points


class LatencyHistograms(MetricExporter):
    """Wraps the OTLP exporter: adds ``npu.inference.duration`` from ``latest()`` to every export."""

    def __init__(self, inner: MetricExporter, latest: Latest) -> None:
        # the reader asks its exporter for temporality/aggregation preferences: pass the inner one's on
        super().__init__(preferred_temporality=getattr(inner, "_preferred_temporality", None),
                         preferred_aggregation=getattr(inner, "_preferred_aggregation", None))
        self.inner = inner
        self.latest = latest
        self.start_ns = time.time_ns()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return self.inner.export(self._with_latency(metrics_data), timeout_millis=timeout_millis, **kwargs)

    def _with_latency(self, data: MetricsData) -> MetricsData:
        """``data`` with the histogram added to the meter's own scope (the encoder keys scopes by name, so
        a second scope of that name would replace it), only beside points the SDK collected: a
        collection without any means there was no snapshot when it ran."""
        for r, rm in enumerate(data.resource_metrics):
            for i, sm in enumerate(rm.scope_metrics):
                if sm.scope.name != METER_NAME or not any(m.data.data_points for m in sm.metrics):
                    continue
                snap = self.latest()
                points = latency_points(snap, self.start_ns, time.time_ns()) if snap is not None else []
                if not points:
                    return data
                metric = Metric(LATENCY_METRIC, "Inference request latency, queueing included.", "s",
                                Histogram(points, AggregationTemporality.CUMULATIVE))
                scopes = list(rm.scope_metrics)
                scopes[i] = dataclasses.replace(sm, metrics=[*sm.metrics, metric])
                resources = list(data.resource_metrics)
                resources[r] = dataclasses.replace(rm, scope_metrics=scopes)
                return MetricsData(resources)
        return data

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class OtlpPusher:
    """A MeterProvider whose observable instruments read ``latest()`` at each export."""

    def __init__(self, config: OtlpConfig, node: str, latest: Latest) -> None:
        self.config = config
        self.node = node
        self.latest = latest
        self._provider: MeterProvider | None = None

    def start(self) -> OtlpPusher:
        reader = PeriodicExportingMetricReader(LatencyHistograms(metric_exporter(self.config), self.latest),
                                               export_interval_millis=self.config.interval * 1000,
                                               export_timeout_millis=self.config.timeout * 1000)
        resource = Resource.create({"service.name": "npuobs-exporter", "service.version": __version__,
                                    "host.name": self.node})
        self._provider = MeterProvider(metric_readers=[reader], resource=resource)
        meter = self._provider.get_meter(METER_NAME, __version__)
        create = {"gauge": meter.create_observable_gauge, "counter": meter.create_observable_counter,
                  "updown": meter.create_observable_up_down_counter}
        for inst in INSTRUMENTS:
            create[inst.kind](inst.name, callbacks=[self._callback(inst)], unit=inst.unit,
                              description=inst.description)
        return self

    def _callback(self, inst: Instrument) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> list[Observation]:
            snap = self.latest()
            if snap is None:
                return []
            if inst.device is not None:
                return [o for r in snap.devices for o in inst.device(r)]
            assert inst.workload is not None
            return [o for w in snap.workloads for o in inst.workload(w)]
        return observe

    def stop(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
