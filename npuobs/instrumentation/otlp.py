"""OTLP trace export (gRPC or HTTP) behind the SDK's BatchSpanProcessor, from an argument or the env.

Spans leave the request path at once: the batch processor queues them and a background thread
exports them, so a slow or absent collector never adds latency to an inference. Nothing here is
needed when tracing is off, so the SDK and the exporters are imported only when one is built.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

ENDPOINT_ENV = "NPUOBS_OTLP_TRACES_ENDPOINT"
PROTOCOLS = ("grpc", "http/protobuf")


def protocol_of(endpoint: str) -> str:
    """OTLP/HTTP endpoints are URLs ending in ``/v1/traces`` (the signal path); anything else is gRPC."""
    return "http/protobuf" if urlsplit(endpoint).path.rstrip("/").endswith("/v1/traces") else "grpc"


def otlp_tracer_provider(endpoint: str, *, protocol: str | None = None, service_name: str = "npuobs",
                         resource_attributes: Mapping[str, str] | None = None) -> TracerProvider:
    """A tracer provider exporting to ``endpoint`` over OTLP.

    gRPC: ``host:port`` or ``http://host:port`` (plaintext) / ``https://host:port`` (TLS).
    HTTP: the full URL, e.g. ``http://collector:4318/v1/traces``. ``protocol`` overrides the guess.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = protocol or protocol_of(endpoint)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        exporter = GrpcExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        exporter = HttpExporter(endpoint=endpoint)
    else:
        raise ValueError(f"OTLP protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name, **(resource_attributes or {})}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@functools.lru_cache(maxsize=8)
def _shared(endpoint: str, service_name: str) -> TracerProvider:
    return otlp_tracer_provider(endpoint, service_name=service_name)


def tracer_provider_from_env(service_name: str = "npuobs-sim",
                             environ: Mapping[str, str] = os.environ) -> TracerProvider | None:
    """The process's provider for ``$NPUOBS_OTLP_TRACES_ENDPOINT``, or None when it is unset.

    One provider per endpoint and process: every simulated device shares its export queue and
    thread, as the services of one process share one SDK pipeline.
    """
    endpoint = environ.get(ENDPOINT_ENV, "").strip()
    return _shared(endpoint, service_name) if endpoint else None
