"""``npuobs devices``: what a backend sees right now, in the schema's units — the first thing to run on a node.

``--json`` prints the inventory document of ``npuobs.devices.inventory`` (schema shipped as
``npuobs/devices/inventory.schema.json``); ``--option key=value`` passes a backend option (the
keyword arguments its constructor declares), checked against that backend before anything runs.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import socket
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from npuobs.cli.errors import CliError
from npuobs.devices import inventory, registry
from npuobs.devices.base import BackendError, DeviceReading

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a backend option (repeatable), e.g. --option smi_format=csv; see docs/backends.md")
    p.add_argument("--json", action="store_true",
                   help="print the inventory document (schema: npuobs/devices/inventory.schema.json)")
    p.set_defaults(func=run)


def _converter(annotation: Any) -> Callable[[str], Any] | None:
    """How to turn a command-line string into a value of ``annotation``; None when no string can be one."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _converter(args[0]) if len(args) == 1 else None
    if origin in (list, tuple, Sequence) and args and set(args) <= {str, Ellipsis}:
        return lambda text: tuple(part.strip() for part in text.split(",") if part.strip())
    if annotation is bool:
        return _to_bool
    if annotation in (int, float, str, Path):
        return annotation
    return None


def _to_bool(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError(f"expected one of {'/'.join(_TRUE + _FALSE)}")


def option_types(backend: str) -> dict[str, Callable[[str], Any]]:
    """Keyword options ``backend`` declares that a string can give, name -> converter.

    ``auto`` forwards every other option to each backend it starts, so it accepts the union.
    """
    targets = [backend] + ([n for n in registry.names() if n != "auto"] if backend == "auto" else [])
    found: dict[str, Callable[[str], Any]] = {}
    for name in targets:
        try:
            factory = registry.factory(name)
        except BackendError:
            if name == backend:
                raise
            continue  # an optional backend whose library is missing
        init = factory.__init__ if isinstance(factory, type) else factory
        try:
            hints = typing.get_type_hints(init)
        except (NameError, TypeError):  # an annotation only importable for type checkers
            hints = {}
        for param in inspect.signature(init).parameters.values():
            if param.kind is not param.KEYWORD_ONLY or param.name not in hints:
                continue
            convert = _converter(hints[param.name])
            if convert is not None:
                found.setdefault(param.name, convert)
    return found


def parse_options(backend: str, pairs: list[str]) -> dict[str, Any]:
    """``["smi_format=csv", ...]`` -> typed options for ``backend``; CliError naming a bad one."""
    types = option_types(backend)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CliError(f"--option {pair!r}: expected key=value")
        if key not in types:
            raise CliError(f"--option {key}: unknown option for backend {backend!r}; "
                           f"valid: {', '.join(sorted(types)) or 'none'}")
        try:
            options[key] = types[key](text)
        except ValueError as exc:
            raise CliError(f"--option {key}={text!r}: invalid value for backend {backend!r}: {exc}") from None
    return options


def _backends(args: argparse.Namespace, extra: dict[str, Any]) -> list[tuple[str, object]]:
    if args.backend == "sim" and not args.node and "node" not in extra:
        state_dir = Path(extra.get("state_dir", args.state_dir))
        nodes_dir = state_dir / "nodes"
        nodes = sorted(p.name for p in nodes_dir.iterdir()) if nodes_dir.is_dir() else []
        if not nodes:
            raise CliError(f"no simulated fleet in {state_dir} (start one with `npuobs sim run`)")
        return [(n, registry.create("sim", **{**extra, "state_dir": state_dir, "node": n})) for n in nodes]
    options: dict[str, Any] = {"node": args.node or socket.gethostname(), "timeout": args.timeout,
                               "state_dir": args.state_dir}
    if args.tool_path:
        options["tool_path"] = args.tool_path
    options.update(extra)
    return [(options["node"], registry.create(args.backend, **options))]


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
        for source, error in getattr(backend, "last_errors", {}).items():
            errors.append(inventory.SourceError(node, source, error))
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
