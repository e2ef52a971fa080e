"""The exporter: one backend, its sampler, the render cache, the HTTP server and optional OTLP push.

:class:`Exporter` wires the pieces and holds the only mutable state: the collector statuses
(for self-metrics) and the devices seen so far (to report vanished ones). All of it is touched
only from the sampler thread; scrapes read the immutable rendered bytes.

Failure behaviour (see docs/exporter.md):

- a sample that raises or times out → no device or workload series from that sample (no stale
  values: an outage must not hide behind its last good reading), ``npuobs_collector_success 0``,
  the error counted and logged; self-metrics and ``npuobs_exporter_build_info`` are still served
  and the scrape returns 200;
- a sample that returns with per-device or per-child errors (``last_errors``) → the devices that
  were read are served, the failing ones are ``up 0`` (sim) or missing (an ``auto`` child, whose
  own collector shows 0);
- a device seen earlier but missing now → ``npu_device_up 0`` and nothing else, until restart.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from npuobs import __version__
from npuobs.devices import registry
from npuobs.devices.base import DeviceBackend, Snapshot
from npuobs.exporter import profiles
from npuobs.exporter.collectors import device, pods, selfmetrics, workload
from npuobs.exporter.collectors.selfmetrics import CollectorStatus
from npuobs.exporter.config import ConfigError, ExporterConfig
from npuobs.exporter.podresources.client import PodResourcesError, PodResourcesWatcher
from npuobs.exporter.render import RenderCache
from npuobs.exporter.sampler import SampleOutcome, Sampler
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
        self._statuses: dict[str, CollectorStatus] = {}
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
            self.backend = backend or registry.create(config.backend, **config.backend_kwargs())
        except BaseException:
            self.server.stop()
            raise
        self._sampler = Sampler(self.backend, config.interval, config.effective_sample_timeout, self._on_sample)
        self._pods = PodResourcesWatcher(config.podresources) if config.podresources.enabled else None
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
            self._pods.close()
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
    def statuses(self) -> Mapping[str, CollectorStatus]:
        """A copy (the sampler thread replaces entries while HTTP threads read)."""
        return dict(self._statuses)

    # -- sampling ---------------------------------------------------------------------------------
    def _status(self, name: str, ok: bool, duration: float, at: float) -> None:
        old = self._statuses.get(name)
        self._statuses[name] = CollectorStatus(
            success=ok, duration_seconds=duration,
            errors_total=(old.errors_total if old else 0) + (0 if ok else 1),
            last_success=at if ok else (old.last_success if old else None))

    def _on_sample(self, outcome: SampleOutcome) -> None:
        node, snap = self.config.node, outcome.snapshot
        fields = {"collector": outcome.collector, "node": node, "duration_seconds": round(outcome.duration, 4)}
        if snap is None:
            log.error("collector sample failed", extra={"fields": {**fields, "error": outcome.error}})
            self._status(outcome.collector, False, outcome.duration, outcome.started_at)
        else:
            children = set(outcome.children)
            for name, message in sorted(outcome.partial_errors.items()):
                what = "collector" if name in children else "device"
                log.error(f"{what} read failed", extra={"fields": {**fields, what: name, "error": message}})
            device_errors = {k: v for k, v in outcome.partial_errors.items() if k not in children}
            self._status(outcome.collector, not device_errors, outcome.duration, outcome.started_at)
            for child in sorted(children):
                self._status(child, child not in outcome.partial_errors, outcome.duration, outcome.started_at)
        self._latest = snap
        families = self._families(snap)
        self.cache.update(families)
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

    def _families(self, snap: Snapshot | None) -> list[Metric]:
        node = self.config.node
        families: list[Metric] = []
        if snap is not None:
            families += device.collect(node, snap, self._vanished(snap))
            families += workload.collect(node, snap)
            families += self._pod_families(snap)
        families += selfmetrics.collect(node, self._statuses, __version__)
        return profiles.apply(families, self.config.profile)

    def _pod_families(self, snap: Snapshot) -> list[Metric]:
        if self._pods is None:
            return []
        t0, started = time.monotonic(), time.time()
        try:
            attribution = self._pods.poll()
        except PodResourcesError as exc:
            log.error("collector sample failed", extra={"fields": {
                "collector": PodResourcesWatcher.COLLECTOR, "node": self.config.node, "error": str(exc)}})
            self._status(PodResourcesWatcher.COLLECTOR, False, time.monotonic() - t0, started)
            return []
        if attribution is None:  # socket absent: attribution is off, no collector to report
            self._statuses.pop(PodResourcesWatcher.COLLECTOR, None)
            return []
        self._status(PodResourcesWatcher.COLLECTOR, True, time.monotonic() - t0, started)
        return pods.collect(self.config.node, snap, attribution, self.config.podresources.resource_names)

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
