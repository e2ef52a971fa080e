"""A simulated fleet: nodes of simulated NPUs advanced together on one virtual clock.

``FleetConfig`` says which device models sit on which node and what load they serve; the
embedded default (2 nodes x 4 NPUs, four vendors) is what ``npuobs demo`` runs. ``Fleet`` owns
the devices, reads the fault control file every tick, and publishes the driver-like state tree.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from threadpoolctl import threadpool_limits

from npuobs.instrumentation.control import CPU, ServingControl
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.device import F3_SCALE_FACTOR, Serving, SimDevice
from npuobs.simulator.faults import Fault, FaultBook, FaultError
from npuobs.simulator.hardware import CATALOGUE
from npuobs.simulator.loadgen import PROFILES, LoadProfile
from npuobs.simulator.state import (
    PREVIOUS_SUFFIX,
    StateError,
    device_dir,
    device_file,
    ensure_private_dir,
    fleet_file,
    previous_file,
    publisher,
    read_device_state,
    read_json,
    remove_temporaries,
    write_json_atomic,
)

DEFAULT_MODEL = "digits-mlp"
SEED_MAX = 2**32 - 1
NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
TICK_BOUNDS = (0.01, 60.0)  # virtual seconds per tick: below, a day takes millions of ticks; above, no dynamics
FIRST_VERSION = "v1"
CALIBRATIONS = ("good", "bad")  # a rollout's ``calibration`` attribute; "bad": F3-style corrupted INT8 scales
RESET_DOWNTIME_SECONDS = 10.0  # a driver restart through the control API: down this long, then a cold start
log = logging.getLogger("npuobs.simulator")


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
        except UnicodeDecodeError as exc:
            raise ValueError(f"fleet file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
        raw_nodes = doc.get("nodes") or []
        if not isinstance(raw_nodes, list):
            raise ValueError(f"{where}: 'nodes' must be a list of nodes")
        for i, n in enumerate(raw_nodes):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not isinstance(n.get("devices"), list):
                raise ValueError(f"{where}: nodes[{i}] needs 'name' (string) and 'devices' (list of models)")
            if not NODE_NAME_RE.fullmatch(n["name"]):
                # node names become directory names under the state directory: no '/', no '..'
                raise ValueError(f"{where}: nodes[{i}].name: {n['name']!r} is not a node name (letters, digits, "
                                 "'.', '_', '-'; at most 63, starting with a letter or digit)")
            for m in n["devices"]:
                if not isinstance(m, str) or m not in CATALOGUE:
                    raise ValueError(f"{where}: nodes[{i}].devices: unknown device model {m!r}; "
                                     f"choose from {', '.join(CATALOGUE)}")
            nodes.append(NodeConfig(n["name"], tuple(n["devices"])))
        if not nodes:
            raise ValueError(f"{where}: 'nodes' must list at least one node")
        load = doc.get("load") or {}
        if not isinstance(load, dict) or set(load) - {"profile", "rate_per_device", "tenants"}:
            raise ValueError(f"{where}: 'load' takes profile ({'|'.join(PROFILES)}), rate_per_device, tenants")
        kwargs: dict[str, Any] = {"kind": load.get("profile", "steady")}
        try:
            if "rate_per_device" in load:
                kwargs["rate_per_device"] = _number(load["rate_per_device"], "load.rate_per_device")
            if "tenants" in load:
                if not isinstance(load["tenants"], dict):
                    raise ValueError("load.tenants must map tenant names to weights")
                kwargs["tenant_weights"] = tuple((str(k), _number(v, f"load.tenants.{k}"))
                                                 for k, v in load["tenants"].items())
            seed = doc.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"seed must be an integer, got {seed!r}")
            config = cls(tuple(nodes), str(doc.get("model", DEFAULT_MODEL)), LoadProfile(**kwargs),
                         seed, _number(doc.get("tick_seconds", 1.0), "tick_seconds"))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{where}: {exc}") from None
        if not 0 <= config.seed <= SEED_MAX:
            raise ValueError(f"{where}: seed must be between 0 and {SEED_MAX}, got {config.seed}")
        lo, hi = TICK_BOUNDS
        if not lo <= config.tick_seconds <= hi:
            raise ValueError(f"{where}: tick_seconds must be between {lo:g} and {hi:g}, got {config.tick_seconds!r}")
        return config


def _number(value: Any, key: str) -> float:
    """A YAML number (not a string that looks like one, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


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
        self._check_dirs()
        self.faults = FaultBook(self.state_dir)
        self._faults: list[Fault] = []  # the last readable control file
        self._problems: dict[str, str] = {}  # what -> message already logged (one line per new problem)
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
        self.control = self._serving_control()
        self._version_model = None  # weights of the served version when it is not the trained model
        self._reload = False  # a version change: every device reloads its model (a cold start)

    # -- the serving plane's control (drain, reset, versions, CPU path) ------------------------
    def _serving_control(self) -> ServingControl:
        """The control the control API acts on: every device, and the model at its first version."""
        control = ServingControl(on_reset=self._on_reset, on_version=self._on_version,
                                 clock=lambda: self.clock.now)
        control.add_model(self.config.model, versions=[FIRST_VERSION],
                          attributes={FIRST_VERSION: {"calibration": "good"}})
        for dev in self.devices:
            control.add_device(dev.node, dev.id, model=self.config.model)
        return control

    def _on_reset(self, node: str, device: str) -> None:
        """A driver restart: the device goes down for ``RESET_DOWNTIME_SECONDS`` (a ``user`` reset) and
        comes back with its device memory freed, so a leak (F4 on this device) is gone; other faults stay."""
        self.device(node, device)  # KeyError for an unknown device, before anything is changed
        now = self.clock.now
        for fault in self.faults.read():
            if fault.kind == "F4" and fault.node == node and fault.device == device:
                self.faults.clear(fault_id=fault.id)
        self.faults.inject("RESET", node=node, device=device, now=now, duration=RESET_DOWNTIME_SECONDS,
                           reason="user")

    def _on_version(self, model: str, version: str, attributes: dict[str, Any]) -> None:
        calibration = attributes.get("calibration", "good")
        if calibration not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {calibration!r}; choose one of: {', '.join(CALIBRATIONS)}")
        weights = self.devices[0].runtime.k.quantized if self.devices else None
        if calibration == "bad" and weights is not None:
            # a new calibration run that went wrong: the same corruption F3 injects, seeded by the version
            rng = np.random.default_rng(zlib.crc32(f"{model}/{version}".encode()))
            self._version_model = weights.with_corrupted_scales(F3_SCALE_FACTOR, rng)
        else:
            self._version_model = None
        self._reload = True

    def _serving(self) -> dict[tuple[str, str], Serving]:
        """Per device, what the control imposes this tick."""
        drained = self.control.drained()
        host_only = self.control.serving_path(self.config.model) == CPU
        return {(d.node, d.id): Serving((d.node, d.id) in drained, host_only, self._version_model)
                for d in self.devices}

    def _check_dirs(self) -> None:
        """Start-up check of every directory the fleet writes (StateError, one line): the state
        directory, each node's devices/ and control/; created private (0700) when missing."""
        for path in (self.state_dir, self.state_dir / "nodes", self.state_dir / "control",
                     *(device_dir(self.state_dir, n.name).parent for n in self.config.nodes),
                     *(device_dir(self.state_dir, n.name) for n in self.config.nodes)):
            ensure_private_dir(path)

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
        """Continue ``dev``'s counters from its last readable generation, or start a visible new epoch.

        The current file first, then the kept previous generation (a torn or corrupt current file
        costs one publication). When files exist but none is readable, the counters start from zero
        as a new epoch: logged, counted as one driver reset, and ``epoch_started_at`` moves to now,
        so no counter goes backwards unannounced.
        """
        path = device_file(self.state_dir, dev.node, dev.id)
        problems = []
        for candidate in (path, previous_file(path)):
            try:
                state = read_device_state(candidate)
            except FileNotFoundError:
                continue
            except StateError as exc:
                problems.append(str(exc))
                continue
            if state.uuid != dev.uuid:
                problems.append(f"{candidate} belongs to device {state.uuid!r}, not {dev.uuid!r}")
                continue
            dev.restore(state)
            if problems:
                log.warning("%s/%s: recovered counters from %s (%s)", dev.node, dev.id, candidate, problems[0])
            break
        else:
            if problems:
                dev.new_epoch(self.clock.now)
                log.error("%s/%s: no readable copy of the device's counters (%s); counters start a new epoch "
                          "from zero, counted as one driver reset", dev.node, dev.id, "; ".join(problems))
        if dev.epoch_started_at is None:
            dev.epoch_started_at = self.clock.now  # a first start: the epoch begins now

    def _prune_stale_files(self) -> None:
        """Remove device files of devices this fleet no longer has (they vanished)."""
        keep = {device_file(self.state_dir, d.node, d.id) for d in self.devices}
        keep |= {previous_file(p) for p in keep}
        nodes_root = self.state_dir / "nodes"
        for node in self.config.nodes:
            remove_temporaries(device_dir(self.state_dir, node.name))
        for pattern in ("*/devices/*.json", f"*/devices/*.json{PREVIOUS_SUFFIX}"):
            for path in nodes_root.glob(pattern) if nodes_root.is_dir() else ():
                if path not in keep:
                    path.unlink(missing_ok=True)

    def _report(self, what: str, problem: str | None) -> None:
        """Log a problem once when it appears (and once when it clears), never once per tick."""
        if problem is None:
            if self._problems.pop(what, None) is not None:
                log.warning("%s: recovered", what)
        elif self._problems.get(what) != problem:
            self._problems[what] = problem
            log.error("%s", problem)

    def active_faults(self) -> list[Fault]:
        """The control file's faults; a corrupt file is reported once and the last good list kept."""
        try:
            self._faults = self.faults.read()
            self._report("control file", None)
        except FaultError as exc:
            self._report("control file", f"{exc}; keeping the {len(self._faults)} fault(s) read before")
        return self._faults

    def device(self, node: str, device: str) -> SimDevice:
        for d in self.devices:
            if d.node == node and d.id == device:
                return d
        raise KeyError(f"no device {device!r} on node {node!r}")

    def tick(self) -> None:
        t0, dt = self.clock.now, self.config.tick_seconds
        active = [f for f in self.active_faults() if f.active(t0)]
        serving = self._serving()
        if self._reload:
            self._reload = False
            for dev in self.devices:
                dev.runtime.unload()
        # the load balancer spreads the model's load over the devices that accept requests
        accepting = sum(not s.drained for s in serving.values())
        load = self.config.load
        if 0 < accepting < len(self.devices):
            load = dataclasses.replace(load, rate_per_device=load.rate_per_device * len(self.devices) / accepting)
        for dev in self.devices:
            mine = [f for f in active if f.targets(dev.node, dev.id)]
            noisy = dev.noisy_tenant if any(f.kind == "F7" for f in mine) else None
            now = serving[(dev.node, dev.id)]
            arrivals = {} if now.drained else load.arrivals(dev.rng, t0, dt, noisy)
            dev.step(t0, dt, arrivals, mine, now)
            self.control.set_in_flight(dev.node, dev.id, dev.runtime.queue_length)
        self.clock.advance(dt)

    def publish(self, heartbeat_seconds: float | None = None) -> None:
        """Write every device document and the fleet file. ``heartbeat_seconds`` is the wall time
        until the next publication (None: no further one is planned). A file that cannot be written
        is reported once and the fleet keeps running; its readers see the document age."""
        now = self.clock.now
        pub = publisher(heartbeat_seconds)
        failed: dict[Path, str] = {}
        for dev in self.devices:
            path = device_file(self.state_dir, dev.node, dev.id)
            try:
                write_json_atomic(path, dev.to_state(now, pub).to_json(), keep_previous=True)
            except OSError as exc:
                failed.setdefault(path.parent, str(exc.strerror or exc))
        for node in self.config.nodes:
            where = device_dir(self.state_dir, node.name)
            problem = failed.get(where)
            self._report(str(where), None if problem is None else (
                f"cannot publish device state in {where}: {problem}; the fleet keeps running and retries "
                "every publication"))
        path = fleet_file(self.state_dir)
        try:
            write_json_atomic(path, {
                "now": now, "speed": self.clock.speed, "pid": pub.pid, "seed": self.config.seed,
                "nodes": {n.name: [str(i) for i in range(len(n.devices))] for n in self.config.nodes},
            })
            self._report(str(path), None)
        except OSError as exc:
            self._report(str(path), f"cannot publish {path}: {exc.strerror or exc}; retrying every publication")

    def run(self, duration: float, on_tick: Callable[[Fleet], None] | None = None,
            publish_every: float = 1.0, stop: threading.Event | None = None) -> None:
        """Run ``duration`` virtual seconds (or until ``stop`` is set), publishing state every
        ``publish_every`` virtual seconds."""
        end = self.clock.now + duration
        next_publish = self.clock.now
        # wall seconds between publications; unpaced runs publish far more often than once a second
        heartbeat = publish_every / self.clock.speed if self.clock.speed else 1.0
        while self.clock.now < end and not (stop and stop.is_set()):
            self.tick()
            if self.clock.now >= next_publish:
                self.publish(heartbeat)
                next_publish = self.clock.now + publish_every
                if on_tick:
                    on_tick(self)
            self.clock.pace()
        self.publish()

    def node_dirs(self) -> dict[str, Path]:
        return {n.name: device_dir(self.state_dir, n.name).parent for n in self.config.nodes}
