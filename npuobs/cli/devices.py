"""``npuobs devices``: what a backend sees right now, in the schema's units — the first thing to run on a node."""

from __future__ import annotations

import argparse
import json
import os
import socket
from dataclasses import asdict
from pathlib import Path

from npuobs.cli.errors import CliError
from npuobs.devices import registry
from npuobs.devices.base import BackendError, DeviceReading


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list devices and their readings through a backend",
                              description="Sample a backend once and print every device's readings in base units.")
    p.add_argument("--backend", default="auto", help=f"one of: {', '.join(registry.names())} (default auto)")
    p.add_argument("--node", default=os.environ.get("NODE_NAME", ""),
                   help="node name (sim: which simulated node; default $NODE_NAME or, for sim, every node)")
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("NPUOBS_STATE_DIR", "/tmp/npuobs/sim")),
                   help="sim backend: the fleet's state directory")
    p.add_argument("--tool-path", help="vendor backends: absolute path of the SMI tool")
    p.add_argument("--timeout", type=float, default=5.0, help="per-call timeout in seconds (default 5)")
    p.add_argument("--json", action="store_true", help="print readings as JSON")
    p.set_defaults(func=run)


def _backends(args: argparse.Namespace) -> list[tuple[str, object]]:
    if args.backend == "sim" and not args.node:
        nodes_dir = args.state_dir / "nodes"
        nodes = sorted(p.name for p in nodes_dir.iterdir()) if nodes_dir.is_dir() else []
        if not nodes:
            raise CliError(f"no simulated fleet in {args.state_dir} (start one with `npuobs sim run`)")
        return [(n, registry.create("sim", state_dir=args.state_dir, node=n)) for n in nodes]
    options = {"node": args.node or socket.gethostname(), "timeout": args.timeout, "state_dir": args.state_dir}
    if args.tool_path:
        options["tool_path"] = args.tool_path
    return [(options["node"], registry.create(args.backend, **options))]


def run(args: argparse.Namespace) -> int:
    try:
        readings = []
        for node, backend in _backends(args):
            snap = backend.sample()
            readings += [(node, d) for d in snap.devices]
            for device, error in getattr(backend, "last_errors", {}).items():
                print(f"npuobs: warning: {node}/{device}: {error}")
    except BackendError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps([{"node": n, **asdict(d)} for n, d in readings], indent=1, default=str))
    else:
        print(render(readings))
    return 0


def _fmt(value: float | None, scale: float = 1.0, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value / scale)


def render(readings: list[tuple[str, DeviceReading]]) -> str:
    rows = [("NODE", "DEVICE", "VENDOR", "MODEL", "UP", "TEMP°C", "POWER W", "LIMIT W", "UTIL", "MEM GiB",
             "THROTTLED", "DRIVER", "FIRMWARE")]
    for node, d in readings:
        mem = (f"{d.memory_used_bytes / 2**30:.1f}/{d.memory_total_bytes / 2**30:.0f}"
               if d.memory_used_bytes is not None and d.memory_total_bytes else "-")
        rows.append((node, d.info.device, d.info.vendor, d.info.model, "yes" if d.up else "NO",
                     _fmt(d.temperature_celsius), _fmt(d.power_watts), _fmt(d.power_limit_watts, fmt="{:.0f}"),
                     _fmt(d.utilization_ratio, fmt="{:.0%}") if d.utilization_ratio is not None else "-", mem,
                     "-" if d.throttled is None else ("YES" if d.throttled else "no"),
                     d.info.driver_version or "-", d.info.firmware_version or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
