"""The driver-like state tree the simulator publishes and the ``sim`` backend reads.

Layout under a state directory::

    fleet.json                         fleet metadata: nodes, virtual time, speed, writer pid
    nodes/<node>/devices/<id>.json     one SMI-like JSON document per device
    control/faults.json                active faults (see npuobs.simulator.faults)

Every file is written to a temporary name and renamed into place, so a reader never sees half a
document; a device that disappears from the fleet has its file removed, which is how a reader
learns that a device vanished.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class StateError(Exception):
    """The state directory or one of its files is unusable; the message names the path."""


def write_json_atomic(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from exc


def fleet_file(state_dir: Path) -> Path:
    return Path(state_dir) / "fleet.json"


def device_dir(state_dir: Path, node: str) -> Path:
    return Path(state_dir) / "nodes" / node / "devices"


def device_file(state_dir: Path, node: str, device: str) -> Path:
    return device_dir(state_dir, node) / f"{device}.json"


def read_fleet(state_dir: Path) -> dict[str, Any]:
    """The fleet metadata, or a StateError saying that no fleet was ever started there."""
    path = fleet_file(state_dir)
    if not Path(state_dir).is_dir():
        raise StateError(f"state directory {state_dir} does not exist (start a fleet with `npuobs sim run`)")
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise StateError(f"{path} is missing: no simulated fleet has run in {state_dir}") from None
    if not isinstance(doc, dict) or "nodes" not in doc or "now" not in doc:
        raise StateError(f"{path} is not a fleet file (missing 'nodes'/'now')")
    return doc
