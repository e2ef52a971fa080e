"""The driver-like state tree the simulator publishes and the ``sim`` backend reads.

Layout under a state directory::

    fleet.json                              fleet metadata: nodes, virtual time, speed, writer pid
    nodes/<node>/devices/<id>.json          one device state document (``npuobs.statedoc``)
    nodes/<node>/devices/<id>.json.prev     the generation before it (counter recovery)
    control/faults.json                     active faults (see npuobs.simulator.faults)

Writes are atomic and private: each file is written to a fresh temporary name in its own directory
(``tempfile.mkstemp``: ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600, a random name nobody can pre-create
or plant a symlink at) and renamed into place, so a reader never sees half a document and a writer
never follows a link. A writer refuses a directory owned by another user or writable by group or
others (whoever can write it can swap files under the writer). A device file's previous generation
is kept as ``.prev`` (a hard link to the replaced file, so the current name never goes missing), so
a torn or corrupt current file costs one publication, not the counters.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from npuobs import privatedir
from npuobs.errors import UsageError
from npuobs.statedoc import DeviceState, DocumentError, Publisher

PREVIOUS_SUFFIX = ".prev"
TEMP_SUFFIX = ".tmp"
STALE_HEARTBEATS = 5
"""A publisher that missed this many heartbeats in a row is considered gone."""
STALE_MIN_SECONDS = 10.0
"""...but never sooner than this: a loaded machine delays a tick by seconds, not tens of seconds."""


class StateError(UsageError):
    """The state directory or one of its files is unusable; the message names the path."""


def default_state_dir() -> Path:
    """Where ``npuobs sim``/``devices`` meet by default: ``$NPUOBS_STATE_DIR``, else a per-user
    directory (``$XDG_RUNTIME_DIR/npuobs/sim``, else ``/tmp/npuobs-<uid>/sim``), never a path
    shared by every user of the machine."""
    if os.environ.get("NPUOBS_STATE_DIR"):
        return Path(os.environ["NPUOBS_STATE_DIR"])
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / "npuobs" / "sim"
    return Path(tempfile.gettempdir()) / f"npuobs-{os.geteuid()}" / "sim"


def check_private_dir(path: Path) -> None:
    """Refuse a directory another user owns or that group/others can write (one-line StateError)."""
    privatedir.check_private_dir(path, StateError)


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` 0700 if missing, check it is private, prove it writable (one-line StateError).

    The writers' start-up check: every directory the simulator will write passes here first."""
    return privatedir.ensure_private_dir(path, StateError)


def write_atomic(path: Path, text: str, *, keep_previous: bool = False) -> None:
    """Write ``text`` to ``path`` through a private temporary file and a rename.

    With ``keep_previous`` the file being replaced stays readable as ``<name>.prev``: it is
    hard-linked to a temporary name before the new file is renamed over it, and that link becomes
    ``.prev`` only afterwards, so ``.prev`` and the current name are never the same file (damage to
    one never reaches the other) and the current name never goes missing. Raises OSError (the
    caller decides whether that is fatal).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    kept: Path | None = None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if keep_previous:
            kept = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}{TEMP_SUFFIX}")
            try:
                os.link(path, kept)
            except FileNotFoundError:
                kept = None  # first publication: nothing to keep
        os.replace(tmp, path)
        if kept is not None:
            os.replace(kept, previous_file(path))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        if kept is not None:
            kept.unlink(missing_ok=True)
        raise


def remove_temporaries(directory: Path) -> None:
    """Remove temporary files a killed writer left behind in ``directory`` (never followed: unlink)."""
    for p in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        p.unlink(missing_ok=True)


def write_json_atomic(path: Path, doc: Any, *, keep_previous: bool = False) -> None:
    write_atomic(path, json.dumps(doc, separators=(",", ":")), keep_previous=keep_previous)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from exc


def read_device_state(path: Path) -> DeviceState:
    """One device document; FileNotFoundError when absent, StateError naming the file otherwise."""
    doc = read_json(path)
    try:
        return DeviceState.from_json(doc, str(path))
    except DocumentError as exc:
        raise StateError(str(exc)) from None


def previous_file(path: Path) -> Path:
    return path.with_name(path.name + PREVIOUS_SUFFIX)


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
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), dict) or "now" not in doc:
        raise StateError(f"{path} is not a fleet file (missing 'nodes'/'now')")
    nodes = doc["nodes"]
    if not all(isinstance(d, list) and all(isinstance(x, str) for x in d) for d in nodes.values()):
        raise StateError(f"{path}: 'nodes' must map node names to lists of device ids")
    try:
        doc["now"] = float(doc["now"])
    except (TypeError, ValueError):
        raise StateError(f"{path}: 'now' is not a number: {doc['now']!r}") from None
    return doc


# --- who publishes, and whether they still do -------------------------------------------------------

@functools.cache
def _process_identity(pid: int) -> tuple[float, str, str]:
    """(start time, PID namespace, boot id) of this process; cached per pid (a fork gets its own)."""
    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:
        started = 0.0
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return started, namespace, boot


def publisher(heartbeat_seconds: float | None) -> Publisher:
    """This process as the publisher of a document written now."""
    pid = os.getpid()
    started, namespace, boot = _process_identity(pid)
    return Publisher(pid=pid, started_at=started, pid_namespace=namespace, boot_id=boot,
                     published_at=time.time(), heartbeat_seconds=heartbeat_seconds)


def stale_reason(pub: Publisher | None, now: float | None = None) -> str | None:
    """Why a document from ``pub`` must not be served as current, or None while it is live.

    Two rules: the writer process is gone (checked only when the reader shares its PID namespace
    and boot, where the pid means the same process; a reused pid is told apart by its start time),
    or the writer promised a heartbeat and missed ``STALE_HEARTBEATS`` of them (a hung or stopped
    simulator, or one in another namespace that died). A document without a publisher (version 1)
    cannot be judged and is served as before.
    """
    if pub is None:
        return None
    now = time.time() if now is None else now
    age = now - pub.published_at
    _, namespace, boot = _process_identity(os.getpid())
    if pub.pid_namespace and pub.pid_namespace == namespace and pub.boot_id and pub.boot_id == boot:
        try:
            proc = psutil.Process(pub.pid)
            gone = proc.status() == psutil.STATUS_ZOMBIE or (
                pub.started_at > 0 and abs(proc.create_time() - pub.started_at) > 1.0)
        except psutil.NoSuchProcess:
            gone = True
        except psutil.Error:
            gone = False  # e.g. access denied: it exists
        if gone:
            return f"the simulator that published it (pid {pub.pid}) is gone; last published {age:.1f}s ago"
    if pub.heartbeat_seconds is not None:
        limit = max(STALE_HEARTBEATS * pub.heartbeat_seconds, STALE_MIN_SECONDS)
        if age > limit:
            return (f"not updated for {age:.1f}s (the simulator publishes every {pub.heartbeat_seconds:g}s; "
                    f"stale after {limit:g}s)")
    return None
