"""npuobs.instrumentation as an inference server uses it: metrics in a prometheus_client registry
(names, labels and buckets from the schema, exemplars in OpenMetrics), span trees kept by the local
tail rule, model loads and cold starts, queue length, op placement, canaries; and the in-memory
store the simulator serializes, read back by the ``sim`` backend's parser."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict

import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from npuobs.devices.sim import reading_from_state
from npuobs.instrumentation import Exemplar, Identity, InferenceHandle, Instrumentation, MemoryStore, TracePolicy
from npuobs.instrumentation import tracing as T
from npuobs.instrumentation.sinks import EXEMPLAR_MAX_AGE_SECONDS
from npuobs.schema import LATENCY_BUCKETS, REQUEST_OUTCOMES, metric
from npuobs.statedoc import DeviceState

LABELS = {"node": "n1", "device": "0", "model": "resnet"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def provider(exporter: InMemorySpanExporter, **kw) -> TracerProvider:
    p = TracerProvider(**kw)
    p.add_span_processor(SimpleSpanProcessor(exporter))
    return p


def instr(registry: CollectorRegistry, tracer_provider: TracerProvider | None = None, **kw) -> Instrumentation:
    return Instrumentation(registry=registry, tracer_provider=tracer_provider, vendor="sim", **LABELS, **kw)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**LABELS, **labels})


def sleep_request(i: Instrumentation, seconds: float) -> InferenceHandle:
    with i.inference(tenant="search", batch_size=4, precision="int8") as h:
        with h.queue_wait():
            pass
        with h.device_execute(ops=9):
            time.sleep(seconds)
    return h


# --- metrics ---------------------------------------------------------------------------------------

def test_metrics_follow_the_schema(registry: CollectorRegistry) -> None:
    i = instr(registry)
    sleep_request(i, 0.0)
    with i.model_load():
        pass
    i.canary(checks=10, mismatches=1, accuracy_delta=0.05)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    for name in ("npu_inference_latency_seconds", "npu_inference_requests_total", "npu_inference_queue_length",
                 "npu_model_load_seconds", "npu_ops_total", "npu_op_seconds_total", "npu_accuracy_delta_ratio",
                 "npu_golden_checks_total", "npu_golden_mismatches_total", "npu_model_cold_starts_total"):
        spec = metric(name)
        fam = families[name.removesuffix("_total")]
        assert fam.type == spec.type.value and fam.documentation == spec.help
        for sample in fam.samples:
            assert set(spec.labels) <= set(sample.labels), (name, sample.labels)
    bounds = sorted({float(s.labels["le"]) for s in families["npu_inference_latency_seconds"].samples
                     if s.name.endswith("_bucket")})
    assert bounds == [*LATENCY_BUCKETS, float("inf")]
    outcomes = {s.labels["outcome"] for s in families["npu_inference_requests"].samples
                if s.name == "npu_inference_requests_total"}
    assert outcomes == set(REQUEST_OUTCOMES)  # zero series exist from the first request on


def test_tracing_off_records_latency_outcome_and_ops(registry: CollectorRegistry) -> None:
    i = instr(registry)
    h = sleep_request(i, 0.03)
    assert i.tracing is False and h.trace_id is None and 0.03 <= h.seconds < 1
    assert value(registry, "npu_inference_latency_seconds_count", tenant="search") == 1
    assert value(registry, "npu_inference_latency_seconds_bucket", tenant="search", le="0.025") == 0
    assert value(registry, "npu_inference_latency_seconds_bucket", tenant="search", le="5.0") == 1
    assert value(registry, "npu_inference_requests_total", tenant="search", outcome="success") == 1
    assert registry.get_sample_value("npu_ops_total", {"node": "n1", "device": "0", "vendor": "sim",
                                                       "placement": "device"}) == 9
    assert "# {" not in generate_latest(registry).decode()  # no trace, no exemplar


def test_outcomes_from_exceptions_and_overrides(registry: CollectorRegistry) -> None:
    i = instr(registry)
    with pytest.raises(RuntimeError), i.inference(tenant="ads"):
        raise RuntimeError("device lost")
    with i.inference(tenant="ads") as h:
        h.set_outcome("oom")
    with pytest.raises(ValueError, match="outcome 'late'"), i.inference(tenant="ads") as h:
        h.set_outcome("late")
    assert value(registry, "npu_inference_requests_total", tenant="ads", outcome="error") == 1
    assert value(registry, "npu_inference_requests_total", tenant="ads", outcome="oom") == 1
    assert value(registry, "npu_inference_requests_total", tenant="ads", outcome="success") == 0


def test_host_fallback_ops_are_counted_and_timed_by_op(registry: CollectorRegistry) -> None:
    i = instr(registry)
    with i.inference(tenant="search") as h:
        with h.device_execute(ops=4):
            pass
        with h.host_fallback_op("gelu"):
            time.sleep(0.002)
        with h.device_execute(ops=4):
            pass
    dev = {"node": "n1", "device": "0", "vendor": "sim"}
    assert registry.get_sample_value("npu_ops_total", {**dev, "placement": "host"}) == 1
    assert registry.get_sample_value("npu_ops_total", {**dev, "placement": "device"}) == 8
    assert registry.get_sample_value("npu_op_seconds_total", {**dev, "op": "gelu", "placement": "host"}) >= 0.002


def test_queue_length_follows_waiting_requests(registry: CollectorRegistry) -> None:
    i = instr(registry)
    with i.inference(tenant="search") as h, h.queue_wait():
        assert value(registry, "npu_inference_queue_length", tenant="search") == 1
    assert value(registry, "npu_inference_queue_length", tenant="search") == 0


def test_model_load_sets_its_gauge_and_overlapping_requests_are_cold_starts(registry: CollectorRegistry) -> None:
    i = instr(registry)
    loading, loaded = threading.Event(), threading.Event()

    @i.model_load()
    def load() -> None:
        loading.set()
        loaded.wait(5)

    loader = threading.Thread(target=load)
    loader.start()
    loading.wait(5)
    with i.inference(tenant="search"):  # starts while the model loads
        loaded.set()
    loader.join()
    with i.inference(tenant="search"):  # warm
        pass
    with i.inference(tenant="ads"), i.model_load():  # lazy load inside the request
        pass
    assert value(registry, "npu_model_cold_starts_total", tenant="search") == 1
    assert value(registry, "npu_model_cold_starts_total", tenant="ads") == 1
    assert 0 < value(registry, "npu_model_load_seconds", tenant="search") < 5


def test_canary_results_and_their_validation(registry: CollectorRegistry) -> None:
    i = instr(registry)
    i.canary(checks=100, mismatches=3, accuracy_delta=0.01)
    i.canary(checks=100, mismatches=0)
    assert value(registry, "npu_golden_checks_total", tenant="canary") == 200
    assert value(registry, "npu_golden_mismatches_total", tenant="canary") == 3
    assert value(registry, "npu_accuracy_delta_ratio", tenant="canary") == 0.01
    with pytest.raises(ValueError, match="mismatches"):
        i.canary(checks=1, mismatches=2)
    with pytest.raises(ValueError, match="ratio"):
        i.canary(checks=1, mismatches=0, accuracy_delta=3.0)


def test_bad_placement_is_refused(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="placement 'cpu'"):
        instr(registry).recorder.record_ops("gelu", "cpu", 1, 0.1)


def test_several_runtimes_share_one_registry(registry: CollectorRegistry) -> None:
    a = Instrumentation(registry=registry, node="n1", device="0", model="resnet")
    b = Instrumentation(registry=registry, node="n1", device="1", model="resnet")
    for i in (a, b):
        with i.inference(tenant="search"):
            pass
    for device in ("0", "1"):
        assert registry.get_sample_value("npu_inference_latency_seconds_count",
                                         {**LABELS, "device": device, "tenant": "search"}) == 1
    with pytest.raises(ValueError, match="not both"):
        Instrumentation(registry=registry, sink=MemoryStore())


# --- traces and exemplars -------------------------------------------------------------------------

def test_a_slow_request_is_kept_with_its_phases_and_becomes_an_exemplar(
        registry: CollectorRegistry, spans: InMemorySpanExporter) -> None:
    i = instr(registry, provider(spans), slo_latency_seconds=0.05, head_sample_ratio=0.0)
    fast = sleep_request(i, 0.0)
    with i.inference(tenant="search", batch_size=4, precision="int8") as slow:
        with slow.queue_wait():
            time.sleep(0.03)
        with slow.preprocess():
            pass
        with slow.device_execute(ops=9, attributes={T.A_CLOCK: 5e8, T.A_THROTTLED: True}):
            time.sleep(0.03)
        with slow.host_fallback_op("gelu"):
            pass
        with slow.postprocess():
            pass
    assert fast.trace_id is None and slow.trace_id is not None
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.name == "inference")
    assert format(root.context.trace_id, "032x") == slow.trace_id
    assert dict(root.attributes) == {
        T.A_NODE: "n1", T.A_DEVICE: "0", T.A_VENDOR: "sim", T.A_MODEL: "resnet", T.A_TENANT: "search",
        T.A_BATCH: 4, T.A_PRECISION: "int8", T.A_OUTCOME: "success", T.A_FALLBACK_OPS: ("gelu",)}
    children = [s for s in finished if s is not root]
    assert [s.name for s in children] == ["queue_wait", "preprocess", "device_execute", "host_fallback_op",
                                          "postprocess"]
    for s in children:
        assert s.parent.span_id == root.context.span_id and s.context.trace_id == root.context.trace_id
        assert root.start_time <= s.start_time <= s.end_time <= root.end_time
    queue, _, execute, fallback, _ = children
    assert (queue.end_time - queue.start_time) / 1e9 >= 0.03
    assert execute.attributes[T.A_THROTTLED] is True and execute.attributes[T.A_OPS] == 9
    assert fallback.attributes[T.A_OP] == "gelu"
    exposition = generate_latest(registry).decode()
    bucket = next(line for line in exposition.splitlines() if f'trace_id="{slow.trace_id}"' in line)
    assert bucket.startswith("npu_inference_latency_seconds_bucket{") and 'le="0.1"' in bucket


def test_errors_are_always_kept_and_marked(registry: CollectorRegistry, spans: InMemorySpanExporter) -> None:
    i = instr(registry, provider(spans), head_sample_ratio=0.0)
    with pytest.raises(MemoryError), i.inference(tenant="search") as h, h.device_execute(ops=1):
        raise MemoryError
    root, execute = (next(s for s in spans.get_finished_spans() if s.name == n) for n in ("inference",
                                                                                        "device_execute"))
    assert root.status.status_code is trace.StatusCode.ERROR and root.attributes[T.A_OUTCOME] == "error"
    assert execute.status.description == "MemoryError"


def test_fast_requests_are_dropped_unless_head_sampled(registry: CollectorRegistry,
                                                       spans: InMemorySpanExporter) -> None:
    dropped = instr(registry, provider(spans), head_sample_ratio=0.0)
    for _ in range(20):
        sleep_request(dropped, 0.0)
    assert spans.get_finished_spans() == ()
    sampled = Instrumentation(registry=CollectorRegistry(), tracer_provider=provider(spans), head_sample_ratio=1.0)
    sleep_request(sampled, 0.0)
    assert len(spans.get_finished_spans()) == 3  # inference, queue_wait, device_execute


def test_a_request_inside_a_sampled_trace_joins_it(registry: CollectorRegistry,
                                                   spans: InMemorySpanExporter) -> None:
    p = provider(spans)
    i = instr(registry, p, head_sample_ratio=0.0)
    with p.get_tracer("server").start_as_current_span("POST /infer") as http:
        h = sleep_request(i, 0.0)
    root = next(s for s in spans.get_finished_spans() if s.name == "inference")
    assert root.parent.span_id == http.get_span_context().span_id
    assert h.trace_id == format(http.get_span_context().trace_id, "032x")


def test_no_exemplar_for_a_trace_the_provider_dropped(registry: CollectorRegistry,
                                                      spans: InMemorySpanExporter) -> None:
    i = instr(registry, provider(spans, sampler=ALWAYS_OFF), head_sample_ratio=1.0)
    h = sleep_request(i, 0.0)
    assert h.trace_id is None and "# {" not in generate_latest(registry).decode()


def test_model_load_span(registry: CollectorRegistry, spans: InMemorySpanExporter) -> None:
    i = instr(registry, provider(spans), head_sample_ratio=0.0)
    with pytest.raises(OSError), i.model_load():
        raise OSError("weights missing")
    (load,) = spans.get_finished_spans()
    assert load.name == "model.load" and load.status.description == "OSError"
    assert value(registry, "npu_model_load_seconds", tenant="search") is None  # a failed load sets nothing


def test_trace_budget_caps_kept_trees_per_second() -> None:
    policy = TracePolicy(slo_seconds=0.1, head_ratio=0.0, max_per_second=3)
    kept = [policy.wants(1.0, False) and policy.admit(now=100.0 + k / 100) for k in range(10)]
    assert sum(kept) == 3
    assert policy.admit(now=101.5)  # a new second, a new budget


def test_select_spends_a_small_budget_on_errors_then_the_slowest() -> None:
    policy = TracePolicy(slo_seconds=0.1, head_ratio=0.0, max_per_second=3, seed=1)
    seconds = np.array([0.2, 0.01, 0.5, 0.3, 0.02, 0.9])
    failed = np.array([False, True, False, False, False, False])
    assert policy.select(seconds, failed, now=0.0).tolist() == [1, 5, 2]
    assert policy.select(seconds, failed, now=0.5).size == 0  # same second: budget spent
    head = TracePolicy(slo_seconds=0.1, head_ratio=1.0, max_per_second=100, seed=1)
    assert sorted(head.select(seconds, failed, now=0.0).tolist()) == list(range(6))


# --- the in-memory store (what the simulator publishes) --------------------------------------------

def test_memory_store_state_parses_as_the_sim_backend_reads_it() -> None:
    store = MemoryStore(("search", "canary"))
    i = Instrumentation(sink=store, node="n1", device="0", vendor="sim", model="mlp")
    i.recorder.record_latencies("search", np.array([0.004, 0.2, 0.03]), exemplars={1: "ab" * 16},
                                timestamp=1000.0)
    i.recorder.record_latencies("search", np.array([0.002]), "oom")
    i.recorder.record_ops("matmul_int8", "device", 3, 0.01)
    i.recorder.record_model_load(1.5)
    i.canary(checks=50, mismatches=2, accuracy_delta=0.04)
    doc = {"device": "0", "vendor": "sim", "model": "X", "state": "online",
           "counters": {"energy_joules_total": 0.0, "resets_total": {}, "errors_total": {},
                        "oom_events_total": 0, "ops": [asdict(o) for o in store.ops_state()]},
           "runtime": asdict(store.runtime_state())}
    state = DeviceState.from_json(json.loads(json.dumps(doc)), "test")  # through JSON, as the file holds it
    assert state.runtime == store.runtime_state() and state.counters.ops == store.ops_state()
    reading, workloads = reading_from_state(state)
    search = next(w for w in workloads if w.tenant == "search")
    assert search.latency.count == 4 and search.latency.sum == pytest.approx(0.236)
    assert dict(search.latency.buckets)[0.005] == 2 and dict(search.latency.buckets)[0.25] == 4
    assert search.requests_total == {"success": 3, "error": 0, "oom": 1, "rejected": 0}
    assert search.latency_exemplar == ("ab" * 16, 0.2) and search.model_load_seconds == 1.5
    canary = next(w for w in workloads if w.tenant == "canary")
    assert (canary.golden_checks_total, canary.golden_mismatches_total, canary.accuracy_delta_ratio) == (50, 2, 0.04)
    assert reading.ops[("matmul_int8", "device")].count == 3
    again = MemoryStore(("search", "canary"))
    again.restore(store.runtime_state(), store.ops_state())
    assert again.runtime_state().tenants == store.runtime_state().tenants and again.ops == store.ops


def test_memory_store_serves_one_device_and_one_canary() -> None:
    store = MemoryStore(("search", "canary")).series(Identity("n", "0", "v", "m"))
    with pytest.raises(ValueError, match="one MemoryStore per device"):
        store.series(Identity("n", "1", "v", "m"))
    with pytest.raises(ValueError, match="canary results are kept for tenant 'canary'"):
        store.add_canary("search", 1, 0, None)


def test_exemplar_is_the_slowest_recent_kept_trace() -> None:
    store = MemoryStore(("t",))
    store.observe_many("t", np.empty(0), "success", [Exemplar("a" * 32, 0.5, 100.0)])
    store.observe_many("t", np.empty(0), "success", [Exemplar("b" * 32, 0.1, 110.0)])
    assert store.tenants["t"].exemplar.trace_id == "a" * 32  # slower, still recent
    store.observe_many("t", np.empty(0), "success", [Exemplar("c" * 32, 0.1, 101 + EXEMPLAR_MAX_AGE_SECONDS)])
    assert store.tenants["t"].exemplar.trace_id == "c" * 32  # the old one aged out
