"""The per-node exporter: device readings as Prometheus ``/metrics`` (and optionally OTLP).

Python API (the demo runs one exporter per simulated node in one process, each on its own port)::

    from npuobs.exporter import Exporter, ExporterConfig

    exporter = Exporter(ExporterConfig(backend="sim", node="node-a", state_dir=state_dir,
                                       listen="127.0.0.1:0", interval=1.0)).start()
    exporter.url        # "http://127.0.0.1:41234" (https:// with TLS); scrape f"{url}/metrics"
    exporter.ready      # True once a first sample was rendered (start() waits for it)
    exporter.stop()     # also a context manager: `with Exporter(cfg).start() as e: ...`

``listen="127.0.0.1:0"`` picks a free port. ``start()`` returns after the first sample attempt
(bounded by the sample timeout, so a broken backend never blocks start-up). Build the config from
a YAML file with ``npuobs.exporter.config.load(path)`` and flags with ``config.override(...)``.
``Exporter(config, backend=obj)`` samples a ready-made ``DeviceBackend`` instead of building one
from the registry.

Layout: ``config`` (YAML + flags), ``sampler`` (background sampling with a timeout),
``families/`` (registered pure builders, snapshot → metric families: device, workload, pods, selfmetrics),
``render`` (render once per snapshot per exposition format), ``server`` (HTTP, TLS, basic auth),
``webconfig`` (exporter-toolkit web-config), ``podresources/`` (kubelet pod attribution),
``otlp`` (OTLP push), ``logs`` (JSON-lines logging), ``app`` (the :class:`Exporter`).
Behaviour and flags: docs/exporter.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from npuobs.exporter.config import ConfigError, ExporterConfig, OtlpConfig, PodResourcesConfig

if TYPE_CHECKING:
    from npuobs.exporter.app import Exporter

__all__ = ["ConfigError", "Exporter", "ExporterConfig", "OtlpConfig", "PodResourcesConfig"]


def __getattr__(name: str) -> Any:
    # Exporter pulls in prometheus_client and the HTTP server; load it on first use so that
    # importing the config (the CLI parser, the demo's config handling) stays light.
    if name == "Exporter":
        from npuobs.exporter.app import Exporter

        return Exporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
