"""Private state directories: created 0700, refused when another user owns them or others can write them.

Whoever can write a directory can swap the files in it under its writer (or plant a symlink where
the writer will write), so every writer of state (the simulator's state tree, the remediation
controller's records) checks its directory here before using it. Errors are one line naming the
path; the caller picks the exception type its CLI reports (a :class:`npuobs.errors.UsageError`).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from npuobs.errors import UsageError

ErrorType = Callable[[str], Exception]


def check_private_dir(path: Path, error: ErrorType = UsageError) -> None:
    """Refuse a directory another user owns (or a symlink to it another user owns) or that group or
    others can write: raises ``error`` with one line naming ``path``."""
    try:
        st = os.stat(path)
        link = os.lstat(path)
    except OSError as exc:
        raise error(f"state directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise error(f"state directory {path} is not a directory")
    uid = os.geteuid()
    for what, s in (("", st), ("symlink ", link)):
        if s.st_uid != uid:
            raise error(f"refusing state directory {path}: {what}owned by uid {s.st_uid}, not by this user "
                        f"(uid {uid}); use a directory of your own (--state-dir)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise error(f"refusing state directory {path}: writable by group or others "
                    f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 0700 {path} or use another --state-dir")


def ensure_private_dir(path: Path, error: ErrorType = UsageError) -> Path:
    """Create ``path`` (mode 0700, parents too) if missing, check it is private, prove it writable.

    A writer's start-up check: every directory it will write passes here first, so an unusable one
    is one clear line at start, not a traceback on the first write.
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"state directory {path} is not writable: cannot create it ({exc.strerror})") from None
    check_private_dir(path, error)
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise error(f"state directory {path} is not writable: {exc.strerror}") from None
    return path
