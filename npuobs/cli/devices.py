"""``npuobs devices``: what a backend sees right now, in the schema's units — the first thing to run on a node.

``--json`` prints the inventory document of ``npuobs.devices.inventory`` (schema shipped as
``npuobs/devices/inventory.schema.json``); ``--option key=value`` passes a backend option (a field
of the backend's typed options class, ``npuobs.devices.options``), converted and checked by the
registry before anything runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any

from npuobs.cli.argtypes import number_between
from npuobs.cli.errors import CliError
from npuobs.devices import inventory, registry
from npuobs.devices import options as options_mod
from npuobs.devices.base import BackendError, DeviceReading
from npuobs.simulator.state import default_state_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list devices and their readings through a backend",
                              description="Sample a backend once and print every device's readings in base units.")
    p.add_argument("--backend", default="auto", help=f"one of: {', '.join(registry.names())} (default auto)")
    p.add_argument("--node", default=os.environ.get("NODE_NAME", ""),
                   help="node name (sim: which simulated node; default $NODE_NAME or, for sim, every node)")
    p.add_argument("--state-dir", type=Path, default=default_state_dir(),
                   help="sim backend: the fleet's state directory")
    p.add_argument("--tool-path", help="vendor backends: absolute path of the SMI tool")
    p.add_argument("--timeout", type=number_between(0.01, 600), default=5.0,
                   help="per-call timeout in seconds (default 5)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option (repeatable), e.g. --option smi_format=csv; see docs/backends.md")
    p.add_argument("--json", action="store_true",
                   help="print the inventory document (schema: npuobs/devices/inventory.schema.json)")
    p.set_defaults(func=run)


def parse_options(backend: str, pairs: list[str]) -> dict[str, Any]:
    """``["smi_format=csv", ...]`` -> typed options for ``backend`` (converted and checked by its
    registry entry's options class); CliError naming a bad one."""
    known = options_mod.names(registry.entry(backend).options)
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CliError(f"--option {pair!r}: expected key=value")
        if key not in known:
            raise CliError(f"--option {key}: unknown option for backend {backend!r}; "
                           f"valid: {', '.join(sorted(known)) or 'none'}")
        try:
            values[key] = getattr(registry.parse_options(backend, {key: text}), key)
        except BackendError as exc:
            raise CliError(f"--option {key}={text!r}: invalid value for backend {backend!r}: {exc}") from None
    return values


def _backends(args: argparse.Namespace, extra: dict[str, Any]) -> list[tuple[str, object]]:
    if args.backend == "sim" and not args.node and "node" not in extra:
        state_dir = Path(extra.get("state_dir", args.state_dir))
        nodes_dir = state_dir / "nodes"
        nodes = sorted(p.name for p in nodes_dir.iterdir()) if nodes_dir.is_dir() else []
        if not nodes:
            raise CliError(f"no simulated fleet in {state_dir} (start one with `npuobs sim run`)")
        return [(n, registry.build("sim", {**extra, "state_dir": state_dir, "node": n})) for n in nodes]
    # the generic flags reach the backends that declare them; --tool-path and --option must be ones it takes
    context = {"node": args.node or socket.gethostname(), "timeout": args.timeout, "state_dir": args.state_dir}
    options = {"tool_path": args.tool_path, **extra} if args.tool_path else extra
    return [(extra.get("node", context["node"]), registry.build(args.backend, options, context=context))]


def run(args: argparse.Namespace) -> int:
    try:
        extra = parse_options(args.backend, args.option)
        backends = _backends(args, extra)
    except BackendError as exc:
        raise CliError(str(exc)) from None
    readings: list[tuple[str, str, DeviceReading]] = []
    errors: list[inventory.SourceError] = []
    for node, backend in backends:
        try:
            snap = backend.sample()
        except BackendError as exc:
            if not args.json:
                raise CliError(str(exc)) from None
            errors.append(inventory.SourceError(node, args.backend, str(exc)))
            continue
        finally:
            backend.close()
        for d in snap.devices:
            child = d.info.device.split(":", 1)[0] if args.backend == "auto" and ":" in d.info.device else snap.backend
            readings.append((node, child, d))
        for source, error in snap.errors.items():
            errors.append(inventory.SourceError(node, source, error))
        for result in snap.children:  # auto: a failed vendor is an error of its own
            if not result.ok:
                errors.append(inventory.SourceError(node, result.source, result.error or ""))
    if args.json:
        print(json.dumps(inventory.document(args.backend, readings, errors), indent=1))
        return 1 if errors and not readings else 0
    for err in errors:
        print(f"npuobs: warning: {err.node}/{err.source}: {err.message}")
    print(render([(node, d) for node, _, d in readings]))
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
