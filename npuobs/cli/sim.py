"""``npuobs sim``: run a simulated NPU fleet, inject and clear faults, show its state.

``sim run`` and ``sim inject`` meet in one state directory (default ``$NPUOBS_STATE_DIR``, else a
private per-user directory: ``$XDG_RUNTIME_DIR/npuobs/sim`` or ``/tmp/npuobs-<uid>/sim``), so
faults can be injected from another terminal while a fleet runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from npuobs.cli.argtypes import integer_between, number_between, seed
from npuobs.cli.argtypes import speed as speed_type
from npuobs.cli.errors import CliError
from npuobs.durations import parse_duration
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.faults import FAULTS, FaultBook, FaultError
from npuobs.simulator.fleet import Fleet, FleetConfig
from npuobs.simulator.loadgen import PROFILES, LoadProfile
from npuobs.simulator.state import (
    StateError,
    default_state_dir,
    device_file,
    read_device_state,
    read_fleet,
    stale_reason,
)

DEFAULT_STATE_DIR = str(default_state_dir())
RESET_DOWNTIME = "10s"


def _duration(text: str) -> float:
    """argparse type: ``90``, ``90s``, ``10m``, ``24h`` → seconds, more than zero."""
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else float(parse_duration(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration like 90s, 10m or 24h: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be longer than 0s, got {text!r}")
    return seconds


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sim", help="run a simulated NPU fleet and inject faults",
                              description="Simulated NPU fleet: real INT8 kernels, physics, faults F1-F8 + reset.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    run = sub.add_parser("run", help="run a fleet, publishing driver-like state and printing a live table")
    run.add_argument("--devices", type=integer_between(1, 256),
                     help="one node with this many devices (default: the 2x4 demo fleet)")
    run.add_argument("--fleet", type=Path, help="fleet YAML (nodes, device models, load); see simulator/")
    run.add_argument("--seed", type=seed, default=0, help="RNG seed: same seed, same run (default 0)")
    run.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR), help="where state is published")
    run.add_argument("--duration", type=_duration, help="stop after this much virtual time (e.g. 60s, 24h)")
    speed = run.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=speed_type, default=1.0,
                       help="virtual seconds per wall second (default 1; 0.01 to 1e6)")
    speed.add_argument("--fast", action="store_true", help="run as fast as the CPU allows (virtual time)")
    run.add_argument("--profile", choices=PROFILES, help="load profile (default: steady, or the fleet file's)")
    run.add_argument("--rate", type=number_between(0, 1e6), help="requests per second per device")
    run.add_argument("--quiet", action="store_true", help="no live table")
    run.add_argument("--control-listen", metavar="HOST:PORT",
                     help="serve the serving-plane control API (drain, reset, rollback, CPU path) here; needs "
                          "--control-token-file or --control-basic-auth-file (see docs/remediation.md)")
    run.add_argument("--control-token-file", type=Path, help="control API: file holding the bearer token")
    run.add_argument("--control-basic-auth-file", type=Path, help="control API: file holding 'user:password'")
    run.set_defaults(func=cmd_run)

    inj = sub.add_parser("inject", help="inject a fault: " + ", ".join(FAULTS))
    inj.add_argument("fault", help="; ".join(f"{k}: {v}" for k, v in FAULTS.items()))
    _target_args(inj)
    inj.add_argument("--duration", type=_duration, help="auto-clear after this much virtual time (default: "
                     f"until cleared; RESET: {RESET_DOWNTIME} of downtime)")
    inj.add_argument("--reason", default="", help="RESET only: driver, firmware, thermal, watchdog, user")
    inj.set_defaults(func=cmd_inject)

    clr = sub.add_parser("clear", help="clear faults (all, or those matching the filters)")
    clr.add_argument("fault", nargs="?", help="only this fault kind")
    _target_args(clr)
    clr.add_argument("--id", help="only the fault with this id")
    clr.set_defaults(func=cmd_clear)

    st = sub.add_parser("status", help="show the fleet's devices and active faults")
    st.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR))
    st.set_defaults(func=cmd_status)


def _target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", default="", help="node name (default: every node, or the only one)")
    p.add_argument("--device", default="", help="device index on the node (default: every device)")
    p.add_argument("--state-dir", type=Path, default=Path(DEFAULT_STATE_DIR))


def _fleet_config(args: argparse.Namespace) -> FleetConfig:
    if args.devices is not None and args.fleet:
        raise CliError("--devices and --fleet are exclusive")
    if args.devices is not None and not 1 <= args.devices <= 256:
        raise CliError(f"--devices must be between 1 and 256, got {args.devices}")
    try:
        if args.fleet:
            cfg = FleetConfig.from_yaml(args.fleet)
        elif args.devices is not None:
            cfg = FleetConfig.single_node(args.devices, seed=args.seed)
        else:
            cfg = FleetConfig.default(seed=args.seed)
        if args.profile or args.rate is not None:
            load = cfg.load
            cfg = FleetConfig(cfg.nodes, cfg.model, LoadProfile(
                args.profile or load.kind, load.rate_per_device if args.rate is None else args.rate,
                load.tenant_weights), args.seed if not args.fleet else cfg.seed, cfg.tick_seconds)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _fleet_config(args)
    clock = VirtualClock(speed=None if args.fast else args.speed)
    try:
        fleet = Fleet(cfg, args.state_dir, clock)  # checks every directory it will write
    except StateError as exc:
        raise CliError(str(exc)) from None
    n = len(fleet.devices)
    print(f"npuobs sim: {n} devices on {len(cfg.nodes)} node(s), seed {cfg.seed}, state in {args.state_dir}",
          file=sys.stderr)
    print(f"  inject a fault from another terminal: npuobs sim inject F2 --node {cfg.nodes[0].name} "
          f"--device 0 --duration 5m --state-dir {args.state_dir}", file=sys.stderr)
    server = _control_server(args, fleet)
    display = None if args.quiet else LiveTable(fleet, args.duration)
    try:
        fleet.run(args.duration if args.duration is not None else float("inf"),
                  on_tick=display.update if display else None)
    finally:
        if server is not None:
            server.stop()
    if display:
        display.update(fleet, final=True)
    return 0


def _control_server(args: argparse.Namespace, fleet: Fleet):  # noqa: ANN202 - lazily imported type
    """The control API on ``--control-listen`` (None without it); bad credentials files are one line."""
    if not args.control_listen:
        if args.control_token_file or args.control_basic_auth_file:
            raise CliError("--control-token-file/--control-basic-auth-file need --control-listen")
        return None
    from npuobs.instrumentation.controlserver import ControlAuth, ControlAuthError, ControlServer

    try:
        auth = ControlAuth.from_files(args.control_token_file, args.control_basic_auth_file)
        server = ControlServer(fleet.control, auth, args.control_listen).start()
    except ControlAuthError as exc:
        raise CliError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise CliError(f"--control-listen {args.control_listen}: {exc}") from None
    print(f"  control API on {server.url} (see docs/remediation.md)", file=sys.stderr)
    return server


class LiveTable:
    """Redraws a device table on a terminal (a progress line per 10 s otherwise)."""

    def __init__(self, fleet: Fleet, duration: float | None) -> None:
        self.tty = sys.stdout.isatty()
        self.duration = duration
        self.start = fleet.clock.now
        self.last = 0.0

    def update(self, fleet: Fleet, final: bool = False) -> None:
        wall = time.monotonic()
        if not final and wall - self.last < (1.0 if self.tty else 10.0):
            return
        self.last = wall
        elapsed = fleet.clock.now - self.start
        progress = f"{elapsed:,.0f}s" + (f" / {self.duration:,.0f}s ({elapsed / self.duration:.0%})"
                                         if self.duration else "")
        lines = [f"virtual time {progress}", render_table(fleet)]
        if self.tty:
            sys.stdout.write("\x1b[H\x1b[J")
        print("\n".join(lines), flush=True)


def render_table(fleet: Fleet) -> str:
    active = [f for f in fleet.faults.read() if f.active(fleet.clock.now)]
    rows = [("NODE", "DEV", "MODEL", "STATE", "TEMP°C", "POWER W", "UTIL", "CLOCK", "REQ OK", "RESETS", "FAULTS")]
    for d in fleet.devices:
        s = d.physics.state
        ok = sum(st.requests["success"] for st in d.runtime.stats.values())
        faults = ",".join(sorted({f.kind for f in active if f.targets(d.node, d.id)})) or "-"
        rows.append((d.node, d.id, d.spec.model, "online" if d.online else "OFFLINE", f"{s.temperature_celsius:.1f}",
                     f"{s.power_watts:.0f}", f"{s.utilization:.0%}",
                     "THROTTLED" if s.throttled else "max", f"{ok:,}", str(sum(d.resets.values())), faults))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _resolve_target(state_dir: Path, node: str, device: str) -> tuple[str, str, float]:
    """Check node/device against the running (or last) fleet; returns (node, device, virtual now)."""
    try:
        meta = read_fleet(state_dir)
    except StateError as exc:
        raise CliError(str(exc)) from None
    nodes: dict[str, list[str]] = meta["nodes"]
    if node and node not in nodes:
        raise CliError(f"unknown node {node!r}; the fleet has: {', '.join(nodes)}")
    if device:
        candidates = [node] if node else list(nodes)
        if len(candidates) > 1:
            raise CliError(f"--device needs --node: the fleet has several nodes ({', '.join(nodes)})")
        if device not in nodes[candidates[0]]:
            raise CliError(f"unknown device {device!r} on node {candidates[0]}; "
                           f"valid: {', '.join(nodes[candidates[0]])}")
        node = candidates[0]
    return node, device, float(meta["now"])


def cmd_inject(args: argparse.Namespace) -> int:
    node, device, now = _resolve_target(args.state_dir, args.node, args.device)
    try:
        duration = args.duration
        if duration is None and args.fault.upper() == "RESET":
            duration = float(parse_duration(RESET_DOWNTIME))
        fault = FaultBook(args.state_dir).inject(args.fault, node=node, device=device, now=now,
                                                 duration=duration, reason=args.reason)
    except FaultError as exc:
        raise CliError(str(exc)) from None
    where = f"{node or 'all nodes'}/{device or 'all devices'}"
    until = f"for {duration:g}s" if duration else "until cleared"
    print(f"injected {fault.kind} (id {fault.id}) on {where} {until}: {FAULTS[fault.kind]}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    node, device, _ = _resolve_target(args.state_dir, args.node, args.device)
    try:
        removed = FaultBook(args.state_dir).clear(kind=args.fault, node=node, device=device, fault_id=args.id)
    except FaultError as exc:
        raise CliError(str(exc)) from None
    print(f"cleared {len(removed)} fault(s)" + (": " + ", ".join(f"{f.kind}/{f.id}" for f in removed)
                                                 if removed else ""))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        meta = read_fleet(args.state_dir)
        faults = FaultBook(args.state_dir).read()
    except (StateError, FaultError) as exc:
        raise CliError(str(exc)) from None
    now = float(meta["now"])
    print(f"fleet in {args.state_dir}: " + ", ".join(f"{n} ({len(d)} devices)" for n, d in meta["nodes"].items()))
    print(_publisher_line(args.state_dir, meta["nodes"]))
    active = [f for f in faults if f.active(now)]
    if not active:
        print("no active faults")
    for f in active:
        left = f"{f.until - now:.0f}s left" if f.until is not None else "until cleared"
        print(f"  {f.id}  {f.kind:<5} {f.node or '*'}/{f.device or '*'}  {left}")
    return 0


def _publisher_line(state_dir: Path, nodes: dict[str, list[str]]) -> str:
    """Whether the simulator that wrote the state is still publishing (what the sim backend decides)."""
    for node, devices in nodes.items():
        for device in devices:
            try:
                pub = read_device_state(device_file(state_dir, node, device)).publisher
            except (FileNotFoundError, StateError):
                continue
            if pub is None:
                return "simulator: unknown (state written by an older npuobs)"
            stale = stale_reason(pub)
            if stale:
                return f"simulator: NOT PUBLISHING: {stale} (exporters report it failed)"
            age = time.time() - pub.published_at
            return f"simulator: pid {pub.pid}, last published {age:.1f}s ago"
    return "simulator: no readable device state"
