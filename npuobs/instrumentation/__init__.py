"""Runtime instrumentation for NPU inference servers (and the simulator, which uses the same code).

``Instrumentation`` gives a server context managers for model loads and inferences that record the
schema's runtime metrics (``npu_inference_*``, ``npu_model_*``, ``npu_ops_total``, canary results)
and, with a tracer provider, OpenTelemetry span trees kept by a local tail rule, whose trace ids
become exemplars on the latency histogram. See docs/instrumentation.md.
"""

from npuobs.instrumentation.control import ControlError, ServingControl
from npuobs.instrumentation.otlp import otlp_tracer_provider, tracer_provider_from_env
from npuobs.instrumentation.recorder import Recorder
from npuobs.instrumentation.server import InferenceHandle, Instrumentation, ModelLoad
from npuobs.instrumentation.sinks import Exemplar, Identity, MemoryStore, PrometheusSink, Sink, TenantSeries
from npuobs.instrumentation.tracing import Phase, SpanTree, TracePolicy

__all__ = [
    "ControlError", "Exemplar", "Identity", "InferenceHandle", "Instrumentation", "MemoryStore", "ModelLoad",
    "Phase", "PrometheusSink", "Recorder", "ServingControl", "Sink", "SpanTree", "TenantSeries", "TracePolicy",
    "otlp_tracer_provider", "tracer_provider_from_env",
]
