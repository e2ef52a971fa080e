"""Fault injection for every failure mode of the NPU SRE guide, controllable from another process.

Faults live in ``<state-dir>/control/faults.json`` so ``npuobs sim inject`` in one terminal
reaches ``npuobs sim run`` in another (and the game-day driver reaches the demo fleet) without
sockets. Writers take an exclusive ``flock`` on the file; the fleet re-reads it every tick.
A fault ends when cleared or when its ``until`` (virtual time) passes.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from npuobs.errors import UsageError
from npuobs.schema import RESET_REASONS
from npuobs.simulator.state import StateError, check_private_dir, ensure_private_dir, write_atomic

FAULTS: dict[str, str] = {
    "F1": "device offline: the device stops answering; requests fail with device errors",
    "F2": "thermal throttle: cooling degrades, the die heats past its threshold and clocks halve",
    "F3": "quantization accuracy loss: bad calibration corrupts the INT8 scales",
    "F4": "memory OOM: a leaked allocation fills device memory; batches fail to allocate",
    "F5": "unsupported op: a model compiled with an op the device lacks runs it on the host",
    "F6": "driver/firmware mismatch: the device runs an older firmware/driver than the fleet",
    "F7": "noisy neighbour: another tenant floods the shared device and is served first",
    "F8": "firmware bug: sporadic wrong outputs",
    "RESET": "device reset: the device drops its queue, reloads its model (cold start), counted with a reason",
}


class FaultError(ValueError, UsageError):
    """An unknown fault, a bad target or an unreadable control file (message says which)."""


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str  # a key of FAULTS
    node: str  # "" = every node
    device: str  # "" = every device on the node(s)
    since: float  # virtual time
    until: float | None  # virtual time; None = until cleared
    reason: str = ""  # RESET only

    def targets(self, node: str, device: str) -> bool:
        return self.node in ("", node) and self.device in ("", device)

    def active(self, now: float) -> bool:
        return self.since <= now and (self.until is None or now < self.until)


def validate_kind(kind: str) -> str:
    kind = kind.upper()
    if kind not in FAULTS:
        raise FaultError(f"unknown fault {kind!r}; choose one of: {', '.join(FAULTS)}")
    return kind


class FaultBook:
    """The control file of one fleet: read by the fleet, written by ``sim inject``/``sim clear``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "control" / "faults.json"

    @contextmanager
    def _locked(self, *, replace_unreadable: bool = False) -> Iterator[list[Fault]]:
        """The faults under an exclusive lock, written back (privately, atomically) on exit.

        The state directory and control/ must be private (``ensure_private_dir``); the lock file is
        opened with ``O_NOFOLLOW`` and the new file is written through ``write_atomic``, so a link
        planted in the directory is never followed. ``replace_unreadable`` lets ``clear`` of
        everything overwrite a corrupt file (the one way out of it from the CLI).
        """
        try:
            check_private_dir(self.path.parent.parent)
            ensure_private_dir(self.path.parent)
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except StateError as exc:
            raise FaultError(str(exc)) from None
        except OSError as exc:
            raise FaultError(f"cannot open fault control file {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                faults = self._read()
            except FaultError:
                if not replace_unreadable:
                    raise
                faults = []
            yield faults
            try:
                write_atomic(self.path, json.dumps([asdict(f) for f in faults], indent=1))
            except OSError as exc:
                raise FaultError(f"cannot write fault control file {self.path}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def _read(self) -> list[Fault]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise FaultError(f"fault control file {self.path} is unreadable: {exc} "
                             f"(`npuobs sim clear --state-dir {self.path.parent.parent}` replaces it)") from exc
        if not isinstance(raw, list):
            raise FaultError(f"fault control file {self.path}: expected a list of faults, got {type(raw).__name__}")
        faults = []
        for i, item in enumerate(raw):
            try:
                fault = Fault(**item)
                if not (isinstance(fault.kind, str) and isinstance(fault.node, str) and isinstance(fault.device, str)
                        and isinstance(fault.since, int | float)
                        and (fault.until is None or isinstance(fault.until, int | float))):
                    raise TypeError("wrong field types")
            except TypeError as exc:
                raise FaultError(f"fault control file {self.path}: entry {i} is not a fault ({exc})") from None
            faults.append(fault)
        return faults

    def read(self) -> list[Fault]:
        return self._read()

    def inject(self, kind: str, *, node: str = "", device: str = "", now: float,
               duration: float | None = None, reason: str = "") -> Fault:
        kind = validate_kind(kind)
        if kind == "RESET":
            reason = reason or "driver"
            if reason not in RESET_REASONS:
                raise FaultError(f"unknown reset reason {reason!r}; choose one of: {', '.join(RESET_REASONS)}")
        elif reason:
            raise FaultError("--reason applies to RESET only")
        if duration is not None and duration <= 0:
            raise FaultError(f"duration must be positive, got {duration:g}s")
        fault = Fault(uuid.uuid4().hex[:8], kind, node, device, now,
                      None if duration is None else now + duration, reason)
        with self._locked() as faults:
            faults.append(fault)
        return fault

    def clear(self, *, kind: str | None = None, node: str = "", device: str = "",
              fault_id: str | None = None) -> list[Fault]:
        """Remove matching faults (all of them with no filter); returns what was removed."""
        kind = validate_kind(kind) if kind else None
        everything = fault_id is None and kind is None and not node and not device
        with self._locked(replace_unreadable=everything) as faults:
            removed = [f for f in faults if (fault_id is None or f.id == fault_id)
                       and (kind is None or f.kind == kind)
                       and (not node or f.node in ("", node))
                       and (not device or f.device in ("", device))]
            faults[:] = [f for f in faults if f not in removed]
        return removed
