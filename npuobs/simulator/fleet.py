"""A simulated fleet: nodes of simulated NPUs advanced together on one virtual clock.

``FleetConfig`` says which device models sit on which node and what load they serve; the
embedded default (2 nodes x 4 NPUs, four vendors) is what ``npuobs demo`` runs. ``Fleet`` owns
the devices, reads the fault control file every tick, and publishes the driver-like state tree.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from threadpoolctl import threadpool_limits

from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.device import SimDevice
from npuobs.simulator.faults import FaultBook
from npuobs.simulator.hardware import CATALOGUE
from npuobs.simulator.loadgen import PROFILES, LoadProfile
from npuobs.simulator.state import (
    StateError,
    device_dir,
    device_file,
    fleet_file,
    read_json,
    write_json_atomic,
)

DEFAULT_MODEL = "digits-mlp"


@dataclass(frozen=True)
class NodeConfig:
    name: str
    devices: tuple[str, ...]  # device model per index, keys of hardware.CATALOGUE


@dataclass(frozen=True)
class FleetConfig:
    nodes: tuple[NodeConfig, ...]
    model: str = DEFAULT_MODEL
    load: LoadProfile = field(default_factory=LoadProfile)
    seed: int = 0
    tick_seconds: float = 1.0

    @classmethod
    def default(cls, seed: int = 0) -> FleetConfig:
        return cls((NodeConfig("node-a", ("RNGD", "RNGD", "ATOM", "ATOM")),
                    NodeConfig("node-b", ("Inferentia2", "Inferentia2", "Gaudi2", "RNGD"))), seed=seed)

    @classmethod
    def single_node(cls, devices: int, seed: int = 0, node: str = "node-0") -> FleetConfig:
        models = tuple(CATALOGUE)
        return cls((NodeConfig(node, tuple(models[i % len(models)] for i in range(devices))),), seed=seed)

    @classmethod
    def from_yaml(cls, path: Path) -> FleetConfig:
        """Load and validate a fleet file; errors name the file and the offending key."""
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ValueError(f"cannot read fleet file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"fleet file {path} is not valid YAML: {exc}") from exc
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc: Any, where: str = "fleet") -> FleetConfig:
        if not isinstance(doc, dict):
            raise ValueError(f"{where}: expected a mapping at the top level")
        unknown = set(doc) - {"nodes", "model", "load", "seed", "tick_seconds"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        nodes = []
        for i, n in enumerate(doc.get("nodes") or []):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not isinstance(n.get("devices"), list):
                raise ValueError(f"{where}: nodes[{i}] needs 'name' (string) and 'devices' (list of models)")
            for m in n["devices"]:
                if m not in CATALOGUE:
                    raise ValueError(f"{where}: nodes[{i}].devices: unknown device model {m!r}; "
                                     f"choose from {', '.join(CATALOGUE)}")
            nodes.append(NodeConfig(n["name"], tuple(n["devices"])))
        if not nodes:
            raise ValueError(f"{where}: 'nodes' must list at least one node")
        load = doc.get("load") or {}
        if not isinstance(load, dict) or set(load) - {"profile", "rate_per_device", "tenants"}:
            raise ValueError(f"{where}: 'load' takes profile ({'|'.join(PROFILES)}), rate_per_device, tenants")
        kwargs: dict[str, Any] = {"kind": load.get("profile", "steady")}
        if "rate_per_device" in load:
            kwargs["rate_per_device"] = float(load["rate_per_device"])
        if "tenants" in load:
            kwargs["tenant_weights"] = tuple((str(k), float(v)) for k, v in dict(load["tenants"]).items())
        try:
            return cls(tuple(nodes), str(doc.get("model", DEFAULT_MODEL)), LoadProfile(**kwargs),
                       int(doc.get("seed", 0)), float(doc.get("tick_seconds", 1.0)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None


def single_threaded_blas() -> None:
    """Limit BLAS to one thread in this process: the simulator's matmuls are small (one tick's
    requests x 64 features), so extra OpenBLAS threads only spin, and on a 2-core machine two
    simulator processes each spinning a second thread ran the soak 3x slower (docs/benchmarks.md)."""
    threadpool_limits(1, user_api="blas")


class Fleet:
    def __init__(self, config: FleetConfig, state_dir: Path, clock: VirtualClock | None = None) -> None:
        single_threaded_blas()
        self.config = config
        self.state_dir = Path(state_dir)
        self.clock = clock or VirtualClock()
        self.faults = FaultBook(self.state_dir)
        self._resume_timeline()
        self.rng = np.random.default_rng(config.seed)
        self.devices: list[SimDevice] = []
        for node in config.nodes:
            for i, model in enumerate(node.devices):
                dev = SimDevice(node.name, i, CATALOGUE[model], model_name=config.model,
                                tenants=config.load.tenants, seed=config.seed)
                self._restore(dev)
                self.devices.append(dev)
        self._prune_stale_files()

    def _resume_timeline(self) -> None:
        """A fleet restarted on an old state dir continues its virtual time, so faults injected
        with a virtual ``until`` and timestamps in the state never jump backwards."""
        try:
            previous = float(read_json(fleet_file(self.state_dir))["now"])
        except (FileNotFoundError, StateError, KeyError, TypeError, ValueError):
            return
        if previous > self.clock.now:
            self.clock.resume_at(previous)

    def _restore(self, dev: SimDevice) -> None:
        path = device_file(self.state_dir, dev.node, dev.id)
        try:
            previous = read_json(path)
        except FileNotFoundError:
            return
        except StateError:
            return  # a torn or foreign file: start this device's counters afresh
        if isinstance(previous, dict) and previous.get("uuid") == dev.uuid:
            dev.restore(previous)

    def _prune_stale_files(self) -> None:
        """Remove device files of devices this fleet no longer has (they vanished)."""
        keep = {device_file(self.state_dir, d.node, d.id) for d in self.devices}
        nodes_root = self.state_dir / "nodes"
        for path in nodes_root.glob("*/devices/*.json") if nodes_root.is_dir() else ():
            if path not in keep:
                path.unlink(missing_ok=True)

    def device(self, node: str, device: str) -> SimDevice:
        for d in self.devices:
            if d.node == node and d.id == device:
                return d
        raise KeyError(f"no device {device!r} on node {node!r}")

    def tick(self) -> None:
        t0, dt = self.clock.now, self.config.tick_seconds
        active = [f for f in self.faults.read() if f.active(t0)]
        for dev in self.devices:
            mine = [f for f in active if f.targets(dev.node, dev.id)]
            noisy = dev.noisy_tenant if any(f.kind == "F7" for f in mine) else None
            arrivals = self.config.load.arrivals(dev.rng, t0, dt, noisy)
            dev.step(t0, dt, arrivals, mine)
        self.clock.advance(dt)

    def publish(self) -> None:
        now = self.clock.now
        for dev in self.devices:
            write_json_atomic(device_file(self.state_dir, dev.node, dev.id), dev.to_state(now))
        write_json_atomic(fleet_file(self.state_dir), {
            "now": now, "speed": self.clock.speed, "pid": os.getpid(), "seed": self.config.seed,
            "nodes": {n.name: [str(i) for i in range(len(n.devices))] for n in self.config.nodes},
        })

    def run(self, duration: float, on_tick: Callable[[Fleet], None] | None = None,
            publish_every: float = 1.0, stop: threading.Event | None = None) -> None:
        """Run ``duration`` virtual seconds (or until ``stop`` is set), publishing state every
        ``publish_every`` virtual seconds."""
        end = self.clock.now + duration
        next_publish = self.clock.now
        while self.clock.now < end and not (stop and stop.is_set()):
            self.tick()
            if self.clock.now >= next_publish:
                self.publish()
                next_publish = self.clock.now + publish_every
                if on_tick:
                    on_tick(self)
            self.clock.pace()
        self.publish()

    def node_dirs(self) -> dict[str, Path]:
        return {n.name: device_dir(self.state_dir, n.name).parent for n in self.config.nodes}
