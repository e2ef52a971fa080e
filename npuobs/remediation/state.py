"""The controller's memory: which alerts it handled and which actions it took, in a private state dir.

Idempotency and rate limits must survive a controller restart, including one in the middle of an
action: the record of an alert is written *before* the action is called ("acting"), so a restarted
controller that sees the same alert again (Alertmanager re-sends every group interval) finds it and
does not act twice, even when it cannot know whether the interrupted call reached the server.
Writes go to a fresh temporary file that is renamed into place; the directory is created 0700 and
refused when another user owns it or others can write to it; one controller holds the directory's
lock at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "lock"
ACTIONS_KEPT_SECONDS = 7 * 86400


class StateDirError(Exception):
    """The state directory is unusable (unsafe permissions, unwritable, held by another controller)."""


def default_state_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "npuobs" if runtime else Path.home() / ".local" / "state" / "npuobs"
    return base / "remediate"


def private_dir(path: Path) -> Path:
    """Create ``path`` 0700 (parents as needed) or check an existing one is ours and not writable by others."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        raise StateDirError(f"state directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"state directory {path} is not a directory")
    if st.st_uid != os.getuid():
        raise StateDirError(f"state directory {path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & 0o022:
        raise StateDirError(f"state directory {path} is writable by group or others (mode {st.st_mode & 0o777:o}); "
                            "chmod 700 it")
    return path


class StateStore:
    """Alert records (by ``fingerprint@startsAt``) and the action log, persisted on every change."""

    def __init__(self, directory: Path) -> None:
        self.dir = private_dir(directory)
        self.path = self.dir / STATE_FILE
        self._lock = threading.Lock()
        self._lock_fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise StateDirError(f"another npuobs remediate holds {self.dir} (one controller per state directory)")\
                from None
        self.alerts: dict[str, dict[str, Any]] = {}
        self.actions: list[dict[str, Any]] = []
        self._load()

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise StateDirError(f"{self.path} is unreadable ({exc}); move it away to start with no memory") from None
        if not isinstance(doc, dict):
            raise StateDirError(f"{self.path} is not a remediation state file")
        self.alerts = dict(doc.get("alerts") or {})
        self.actions = list(doc.get("actions") or [])

    def _save(self) -> None:
        tmp = self.dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"alerts": self.alerts, "actions": self.actions}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.alerts.get(key)
            return dict(record) if record else None

    def put(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            self.alerts[key] = dict(record)
            self._save()

    def update(self, key: str, **changes: Any) -> dict[str, Any]:
        with self._lock:
            record = self.alerts.setdefault(key, {})
            record.update(changes)
            self._save()
            return dict(record)

    def log_action(self, entry: dict[str, Any], now: float) -> None:
        with self._lock:
            self.actions = [a for a in self.actions if now - a["at"] < ACTIONS_KEPT_SECONDS] + [dict(entry)]
            self._save()

    def actions_since(self, since: float) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self.actions if a["at"] >= since]

    def pending(self) -> dict[str, dict[str, Any]]:
        """Records whose action ran (or may have run) and whose verification had not finished."""
        with self._lock:
            return {k: dict(r) for k, r in self.alerts.items() if r.get("status") in ("acting", "acted")}

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
