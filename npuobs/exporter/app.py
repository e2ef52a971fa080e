"""The exporter: one backend, its sampler, the render cache, the HTTP server and optional OTLP push.

:class:`Exporter` wires the pieces and holds the only mutable state: the health of every source
(for self-metrics) and the devices seen so far (to report vanished ones). Every source (the
backend, each child of ``auto``, PodResources) runs through ``npuobs.devices.source``, the one
runner that records success, duration, errors and last success. All of it is touched only from
the sampler thread; scrapes read the immutable rendered bytes.

Failure behaviour (see docs/exporter.md):

- a sample that raises or times out → no device or workload series from that sample (no stale
  values: an outage must not hide behind its last good reading), ``npuobs_collector_success 0``,
  the error counted and logged; self-metrics and ``npuobs_exporter_build_info`` are still served
  and the scrape returns 200;
- a sample that returns with per-device errors (``Snapshot.errors``) or failed children
  (``Snapshot.children``) → the devices that were read are served, the failing ones are ``up 0``
  (sim) or missing (an ``auto`` child); every child of ``auto`` is a collector of its own, with
  its own success, also when every child failed and ``auto`` itself fails;
- a device seen earlier but missing now → ``npu_device_up 0`` and nothing else, until restart.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from npuobs import __version__
from npuobs.devices import registry
from npuobs.devices.base import DeviceBackend, Snapshot, SourceResult
from npuobs.devices.source import Outcome, Source, SourceHealth, SourceStatus
from npuobs.exporter import profiles
from npuobs.exporter.config import ConfigError, ExporterConfig
from npuobs.exporter.families import Inputs
from npuobs.exporter.families import build as build_families
from npuobs.exporter.podresources.client import PodAttribution, PodResourcesWatcher
from npuobs.exporter.render import RenderCache
from npuobs.exporter.sampler import Sampler
from npuobs.exporter.server import MetricsServer
from npuobs.exporter.webconfig import WebConfig
from npuobs.exporter.webconfig import load as load_web_config

if TYPE_CHECKING:
    from npuobs.exporter.otlp import OtlpPusher

log = logging.getLogger("npuobs.exporter")


class Exporter:
    """One per-node exporter, usable in-process: ``Exporter(config).start()``, ``.url``, ``.stop()``."""

    def __init__(self, config: ExporterConfig, *, backend: DeviceBackend | None = None) -> None:
        self.config = config.validate()
        if backend is None and not config.backend:
            raise ConfigError("no device backend: pass --backend or set `backend:` in the config file")
        self.cache = RenderCache()
        self.health = SourceHealth()
        self._known: dict[str, str] = {}  # device id -> vendor, every device ever seen
        self._reported_vanished: set[str] = set()
        self._latest: Snapshot | None = None
        self._first_sample = threading.Event()
        web = load_web_config(config.web_config) if config.web_config else WebConfig()
        host, port = config.listen_address()
        # bind before building the backend: a taken port then fails fast and leaves no tool handle open
        self.server = MetricsServer(host, port, self.cache, web=web, healthy=lambda: self._sampler.alive,
                                    landing=self._landing)
        try:
            self.backend = backend or registry.build(config.backend, config.backend_options,
                                                     context=config.backend_context())
        except BaseException:
            self.server.stop()
            raise
        self._sampler = Sampler(self.backend, config.interval, config.effective_sample_timeout, self._on_sample)
        self._pods: Source[PodAttribution | None] | None = None
        if config.podresources.enabled:
            watcher = self._watcher = PodResourcesWatcher(config.podresources)
            # the RPC has its own deadline; the bound also covers connecting to a wedged socket
            self._pods = Source(PodResourcesWatcher.COLLECTOR, watcher.poll, config.podresources.timeout + 1.0)
        self._otlp: OtlpPusher | None = None
        if config.otlp.endpoint:  # the OpenTelemetry SDK is imported only where OTLP is on
            from npuobs.exporter.otlp import OtlpPusher

            self._otlp = OtlpPusher(config.otlp, config.node, lambda: self._latest)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, ready_timeout: float | None = None) -> Exporter:
        """Serve, sample, and return once the first sample is rendered (or failed: start never blocks
        on a broken backend for longer than the sample timeout)."""
        self.server.start()
        self._sampler.start()
        self._first_sample.wait(ready_timeout if ready_timeout is not None
                                else self._sampler.timeout + 2.0)
        if self._otlp is not None:
            self._otlp.start()
        log.info("exporter started", extra={"fields": {
            "url": self.url, "backend": self.config.backend, "node": self.config.node,
            "interval": self.config.interval, "sample_timeout": self._sampler.timeout}})
        return self

    def stop(self) -> None:
        self._sampler.stop()
        if self._otlp is not None:
            self._otlp.stop()
        self.server.stop()
        if self._pods is not None:
            self._watcher.close()
        self.backend.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL (``http://127.0.0.1:9400``); ``/metrics`` lives under it."""
        return self.server.url

    @property
    def ready(self) -> bool:
        return self.cache.current is not None

    @property
    def statuses(self) -> Mapping[str, SourceStatus]:
        """A copy (the sampler thread replaces entries while HTTP threads read)."""
        return self.health.statuses()

    # -- sampling ---------------------------------------------------------------------------------
    def _record(self, result: SourceResult, *, logged: bool = False) -> None:
        """Log a source's failure (unless ``logged`` already) and each failed child's; fold it all
        into the health, where each child is a source of its own."""
        if not result.ok and not logged:
            log.error("collector sample failed", extra={"fields": {
                "collector": result.source, "node": self.config.node,
                "duration_seconds": round(result.duration, 4), "error": result.error}})
        for child in result.children:
            if not child.ok:
                log.error("collector sample failed", extra={"fields": {
                    "collector": child.source, "node": self.config.node,
                    "duration_seconds": round(child.duration, 4), "error": child.error}})
        self.health.record(result)

    def _on_sample(self, outcome: Outcome[Snapshot]) -> None:
        snap = outcome.value
        for dev, message in sorted(snap.errors.items()) if snap is not None else ():
            log.error("device read failed", extra={"fields": {
                "collector": outcome.result.source, "node": self.config.node, "device": dev, "error": message}})
        self._record(outcome.result, logged=snap is not None)
        self._latest = snap
        self.cache.update(self._families(snap))  # built and rendered when first scraped (render.py)
        self._first_sample.set()

    def _vanished(self, snap: Snapshot) -> dict[str, str]:
        """Devices seen before and missing now (device -> vendor); logs each change once."""
        node = self.config.node
        present = {r.info.device for r in snap.devices}
        for r in snap.devices:
            if r.info.device not in self._known or r.info.device in self._reported_vanished:
                log.info("device found", extra={"fields": {"node": node, "device": r.info.device,
                                                            "vendor": r.info.vendor, "model": r.info.model}})
            self._known[r.info.device] = r.info.vendor
        vanished = {d: v for d, v in self._known.items() if d not in present}
        for dev in sorted(set(vanished) - self._reported_vanished):
            log.warning("device vanished", extra={"fields": {"node": node, "device": dev}})
        self._reported_vanished = set(vanished)
        return vanished

    def _families(self, snap: Snapshot | None) -> Callable[[], list[Metric]]:
        """The recipe for this sample's families: its inputs are fixed now (vanished devices and pod
        attribution are tracked per sample), the building, the profile pass and the rendering wait
        for the first scrape of the snapshot (a snapshot nobody scrapes costs none of it)."""
        vanished: dict[str, str] = {}
        attribution = None
        if snap is not None:
            vanished = self._vanished(snap)
            attribution = self._attribution()
        pr = self.config.podresources
        inputs = Inputs(self.config.node, snap, self.health.statuses(), __version__, vanished, attribution,
                        pr.resource_names, pr.driver_names)
        profile = self.config.profile
        return lambda: profiles.apply(build_families(inputs), profile)

    def _attribution(self) -> PodAttribution | None:
        """Run the PodResources source (when on); None when it is off, absent or failed."""
        if self._pods is None:
            return None
        outcome = self._pods.execute()
        if outcome.result.ok and outcome.value is None:  # socket absent: attribution is off, no collector
            self.health.forget(self._pods.name)
            return None
        self._record(outcome.result)
        return outcome.value

    # -- pages ------------------------------------------------------------------------------------
    def _landing(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{'ok' if st.success else 'FAILING'}</td>"
            f"<td>{st.duration_seconds:.3f}s</td><td>{st.errors_total}</td></tr>"
            for name, st in sorted(self.statuses.items()))
        return (f"<!doctype html><html><head><title>npuobs exporter</title></head><body>"
                f"<h1>npuobs exporter {html.escape(__version__)}</h1>"
                f"<p>node <b>{html.escape(self.config.node)}</b>, backend <b>{html.escape(self.config.backend)}</b>, "
                f"sampling every {self.config.interval:g}s</p>"
                f"<p><a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a> · "
                f"<a href=\"/ready\">/ready</a></p>"
                f"<table><tr><th>collector</th><th>status</th><th>duration</th><th>errors</th></tr>{rows}</table>"
                f"</body></html>")
