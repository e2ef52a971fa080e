"""A simulated fleet with one in-process exporter per node: the reusable core of the demo and tests.

``FleetRunner`` ticks a :class:`~npuobs.simulator.fleet.Fleet` in a background thread at real-time
speed (so Prometheus rates and alert ``for:`` durations mean wall seconds) and serves each node's
devices from its own :class:`~npuobs.exporter.Exporter` on a free loopback port::

    with FleetRunner(state_dir).start() as runner:
        runner.exporter_urls          # {"node-a": "http://127.0.0.1:40001", ...}
        runner.targets                # {"node-a": "127.0.0.1:40001", ...} for scrape configs
        runner.inject("F2", node="node-a", device="0", duration=30)
        runner.clear("F2")
        runner.restart_exporter("node-a")   # same port: Prometheus sees one target restart

Each node also gets a simulated kubelet (:mod:`npuobs.stack.kubelet`, the real PodResources gRPC
API on a unix socket), so exporters attribute devices to pods exactly as on a cluster.

Faults go through the fleet's control file (``FaultBook``), exactly as ``npuobs sim inject`` from
another process would, stamped with the fleet's virtual time.

The fleet's serving plane (drain, reset, model versions, CPU path) is served by the control API
(:mod:`npuobs.instrumentation.controlserver`) on ``control_url``, with a fresh bearer token in
``control_token_file`` (mode 0600): what ``npuobs remediate`` acts on.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from npuobs.exporter import Exporter, ExporterConfig
from npuobs.exporter.config import PodResourcesConfig
from npuobs.instrumentation.controlserver import ControlAuth, ControlServer, write_token_file
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.faults import Fault
from npuobs.simulator.fleet import Fleet, FleetConfig
from npuobs.stack.kubelet import SimulatedKubelet


class FleetRunner:
    """Fleet thread + exporters; ``start()``, use, ``stop()`` (or use it as a context manager).

    ``exporter_options`` are extra :class:`ExporterConfig` fields for every exporter (e.g.
    ``{"otlp": OtlpConfig(...)}``); ``interval`` is the exporters' sampling interval.
    """

    def __init__(self, state_dir: Path, config: FleetConfig | None = None, *, speed: float | None = 1.0,
                 interval: float = 1.0, host: str = "127.0.0.1",
                 exporter_options: Mapping[str, Any] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.config = config or FleetConfig.default()
        self.speed = speed
        self.interval = interval
        self.host = host
        self.exporter_options = dict(exporter_options or {})
        self.fleet: Fleet | None = None
        self.exporters: dict[str, Exporter] = {}
        self.kubelets: dict[str, SimulatedKubelet] = {}
        self._socket_dir: Path | None = None  # short path: unix socket paths are limited to 107 bytes
        self._ports: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended the fleet thread, if it died
        self.control_server: ControlServer | None = None
        self.control_token_file: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> FleetRunner:
        """Publish the fleet's first state, start ticking, then start every exporter."""
        self.fleet = Fleet(self.config, self.state_dir, VirtualClock(speed=self.speed))
        self.fleet.tick()
        self.fleet.publish()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="npuobs-fleet", daemon=True)
        self._thread.start()
        try:
            self._start_control()
            self._socket_dir = Path(tempfile.mkdtemp(prefix="npuobs-kubelet-"))
            for node in self.config.nodes:
                self.kubelets[node.name] = SimulatedKubelet(
                    self._socket_dir / f"{node.name}.sock", node, self.config.load.tenants, self.config.model).start()
            for node in self.nodes:
                self._start_exporter(node, 0)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_control(self) -> None:
        assert self.fleet is not None
        token_dir = self.state_dir / "control"
        token_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        self.control_token_file = write_token_file(token_dir / "control-token", token)
        self.control_server = ControlServer(self.fleet.control, ControlAuth(token=token), f"{self.host}:0").start()

    @property
    def control_url(self) -> str:
        if self.control_server is None:
            raise RuntimeError("FleetRunner not started")
        return self.control_server.url

    def _run(self) -> None:
        assert self.fleet is not None
        try:
            self.fleet.run(float("inf"), publish_every=self.config.tick_seconds, stop=self._stop)
        except BaseException as exc:  # noqa: BLE001 - kept for the caller: a dead fleet must be visible
            self.error = exc
            raise

    def _start_exporter(self, node: str, port: int) -> Exporter:
        config = ExporterConfig(backend="sim", node=node, state_dir=self.state_dir, listen=f"{self.host}:{port}",
                                interval=self.interval,
                                podresources=PodResourcesConfig(socket=self.kubelets[node].socket, timeout=1.0))
        config = dataclasses.replace(config, **self.exporter_options)
        exporter = Exporter(config).start()
        self.exporters[node] = exporter
        self._ports[node] = exporter.server.port
        return exporter

    def restart_exporter(self, node: str) -> Exporter:
        """Stop ``node``'s exporter and start a fresh one on the same port (an exporter restart)."""
        self.exporters.pop(node).stop()
        return self._start_exporter(node, self._ports[node])

    def stop(self) -> None:
        if self.control_server is not None:
            self.control_server.stop()
            self.control_server = None
        for exporter in self.exporters.values():
            exporter.stop()
        self.exporters.clear()
        for kubelet in self.kubelets.values():
            kubelet.stop()
        self.kubelets.clear()
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FleetRunner:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- views ------------------------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.config.nodes)

    @property
    def exporter_urls(self) -> dict[str, str]:
        return {node: e.url for node, e in self.exporters.items()}

    @property
    def targets(self) -> dict[str, str]:
        """``host:port`` per node, for Prometheus ``static_configs``."""
        return {node: f"{self.host}:{port}" for node, port in self._ports.items()}

    # -- faults -----------------------------------------------------------------------------------
    def _fleet(self) -> Fleet:
        if self.fleet is None:
            raise RuntimeError("FleetRunner not started")
        return self.fleet

    def inject(self, kind: str, node: str = "", device: str = "", duration: float | None = None,
               reason: str = "") -> Fault:
        """Inject a fault now (virtual time) for ``duration`` seconds (None = until cleared)."""
        fleet = self._fleet()
        return fleet.faults.inject(kind, node=node, device=device, now=fleet.clock.now, duration=duration,
                                   reason=reason)

    def clear(self, kind: str | None = None, node: str = "", device: str = "") -> list[Fault]:
        """Remove matching faults (every fault with no filter); returns what was removed."""
        return self._fleet().faults.clear(kind=kind, node=node, device=device)
