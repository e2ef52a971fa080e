"""Synthetic nodes that cost little: expositions rendered by the real exporter code, replayed by one process.

A thousand real exporters, each sampling a simulated node, would spend this machine's two cores on
simulating INT8 inference rather than on the time-series engine the scale run measures. So
:func:`record` runs the simulator once for a handful of *recorded* nodes (a few healthy ones and
one per injected fault kind), samples each with the real ``sim`` backend every interval, builds
the families with the exporter's collectors, applies the cardinality profile and renders the
Prometheus text format, exactly as ``npuobs exporter`` does, with a placeholder for the node name.

:class:`ReplayServer` then serves many synthetic nodes from those recordings on one port
(``/nodes/<node>/metrics``): node *i* replays recorded node ``i mod healthy`` (or its fault's
recording) starting ``i mod offsets`` snapshots in, so neighbouring nodes show different values,
and advances one snapshot per ``advance_every`` seconds of wall time; counters stay monotonic
because a node never goes back in its recording (it holds the last snapshot at the end). A scrape
costs one ``bytes.join`` of the pre-split body: the replay process stays far below the scrapers
and the engine it feeds.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from npuobs import __version__
from npuobs.boundedhttp import BoundedHTTPServer, Limits, Request, Response
from npuobs.devices.sim import SimBackend
from npuobs.devices.source import SourceStatus
from npuobs.exporter import profiles
from npuobs.exporter.families import Inputs
from npuobs.exporter.families import build as build_families
from npuobs.exporter.render import TEXT, render
from npuobs.schema import Profile
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.faults import FaultBook
from npuobs.simulator.fleet import Fleet, FleetConfig, NodeConfig
from npuobs.simulator.hardware import CATALOGUE

PLACEHOLDER = "__npuobs_node__"
FAULT_KINDS = ("F1", "F2", "F8")
"""Faults a synthetic node can replay: F1 (every device offline: NpuDeviceDown, failed requests),
F2 (device 0 thermally throttled), F8 (device 0 returns incorrect outputs)."""


def node_name(index: int) -> str:
    """``node-0917`` for index 917 (1-based, zero-padded so names sort)."""
    return f"node-{index:04d}"


@dataclass(frozen=True)
class Recording:
    """Rendered expositions of each recorded node, one per interval, with :data:`PLACEHOLDER` for the node."""

    profile: str
    devices_per_node: int
    interval: float  # simulated seconds between snapshots
    bodies: Mapping[str, tuple[tuple[bytes, ...], ...]]  # recorded node -> snapshots -> body split at the placeholder
    healthy: tuple[str, ...]
    series_per_node: Mapping[str, int] = field(default_factory=dict)  # recorded node -> series in its last body

    @property
    def snapshots(self) -> int:
        return min(len(b) for b in self.bodies.values())


def _device_models(devices: int) -> tuple[str, ...]:
    models = tuple(CATALOGUE)
    return tuple(models[i % len(models)] for i in range(devices))


def _families(node: str, backend: SimBackend, profile: Profile) -> bytes:
    """The exposition ``npuobs exporter --profile`` serves for one sample (the same builders and profile pass)."""
    snap = backend.sample()
    inputs = Inputs(node, snap, {"sim": SourceStatus(True, 0.004, 0, snap.taken_at)}, __version__)
    return render(profiles.apply(build_families(inputs), profile)).bodies[TEXT]


def record(devices_per_node: int, snapshots: int, profile: Profile | str, *, healthy: int = 4,
           faults: tuple[str, ...] = FAULT_KINDS, interval: float = 15.0, seed: int = 0,
           progress: Callable[[str], None] = lambda _: None) -> Recording:
    """Simulate ``healthy`` nodes plus one per fault kind for ``snapshots`` intervals and render each."""
    profile = Profile(profile)
    models = _device_models(devices_per_node)
    names = [f"rec-{i}" for i in range(healthy)] + [f"rec-{kind.lower()}" for kind in faults]
    config = dataclasses.replace(FleetConfig.default(seed), nodes=tuple(NodeConfig(n, models) for n in names))
    bodies: dict[str, list[tuple[bytes, ...]]] = {n: [] for n in names}
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="npuobs-scale-rec-") as tmp:
        state = Path(tmp)
        fleet = Fleet(config, state, VirtualClock(speed=None))
        book = FaultBook(state)
        for kind in faults:
            device_id = "" if kind == "F1" else "0"
            book.inject(kind, node=f"rec-{kind.lower()}", device=device_id, now=fleet.clock.now)
        backends = {n: SimBackend(state_dir=state, node=n) for n in names}
        fleet.run(interval)  # one interval of traffic before the first snapshot: counters are not all 0
        for step in range(snapshots):
            for name in names:
                body = _families(PLACEHOLDER, backends[name], profile)
                bodies[name].append(tuple(body.split(PLACEHOLDER.encode())))
                counts[name] = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            fleet.run(interval)
            if step % 10 == 0 or step == snapshots - 1:
                progress(f"recorded {step + 1}/{snapshots} snapshots of {len(names)} simulated nodes "
                         f"({devices_per_node} devices, profile {profile.value})")
    return Recording(profile.value, devices_per_node, interval,
                     {n: tuple(b) for n, b in bodies.items()}, tuple(names[:healthy]), counts)


@dataclass(frozen=True)
class SyntheticNode:
    name: str
    cluster: str
    recorded: str  # which recorded node it replays
    offset: int  # snapshots into the recording it starts at


def plan_nodes(nodes: int, clusters: int, recording: Recording, faults: Mapping[int, str]) -> list[SyntheticNode]:
    """``nodes`` synthetic nodes in ``clusters`` contiguous blocks (``c1``: the first nodes), node index ->
    fault kind for the faulted ones."""
    out = []
    offsets = max(1, min(4, recording.snapshots // 4))
    for i in range(1, nodes + 1):
        cluster = f"c{(i - 1) * clusters // nodes + 1}"
        kind = faults.get(i)
        recorded = f"rec-{kind.lower()}" if kind else recording.healthy[i % len(recording.healthy)]
        out.append(SyntheticNode(node_name(i), cluster, recorded, i % offsets))
    return out


class ReplayServer:
    """Serves ``/nodes/<name>/metrics`` for every planned node from one :class:`Recording`."""

    def __init__(self, recording: Recording, nodes: list[SyntheticNode], *, advance_every: float,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.recording = recording
        self.nodes = {n.name: n for n in nodes}
        self.advance_every = advance_every
        self.scrapes = 0
        self._t0 = time.monotonic()
        limits = Limits(max_connections=max(512, 2 * len(nodes) + 64), idle_timeout=300.0, workers=2)
        self._server = BoundedHTTPServer(host, port, self._handle, limits=limits, name="npuobs-replay",
                                         server_header="npuobs-replay")

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> ReplayServer:
        self._t0 = time.monotonic()
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics_path(self, node: str) -> str:
        return f"/nodes/{node}/metrics"

    def body(self, node: str, now: float | None = None) -> bytes:
        n = self.nodes[node]
        snaps = self.recording.bodies[n.recorded]
        step = int(((time.monotonic() if now is None else now) - self._t0) / self.advance_every)
        parts = snaps[min(n.offset + step, len(snaps) - 1)]
        return node.encode().join(parts)

    def _handle(self, request: Request) -> Response:
        parts = request.path.split("/")
        if len(parts) == 4 and parts[1] == "nodes" and parts[3] == "metrics" and parts[2] in self.nodes:
            self.scrapes += 1
            return Response(200, self.body(parts[2]), TEXT)
        return Response(404, b"no such synthetic node; try /nodes/node-0001/metrics\n")

    def scrape_configs(self, cluster: str, job: str, interval: str) -> list[dict[str, object]]:
        """One static ``scrape_configs`` entry with every node of ``cluster`` (instance = node name)."""
        targets = [{"targets": [self.address], "labels": {"instance": n.name,
                                                          "__metrics_path__": self.metrics_path(n.name)}}
                   for n in self.nodes.values() if n.cluster == cluster]
        return [{"job_name": job, "scrape_interval": interval, "scrape_timeout": interval,
                 "static_configs": targets}]
