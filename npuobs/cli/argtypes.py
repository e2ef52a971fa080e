"""argparse types shared by subcommands: each one rejects a bad value at parse time, naming it.

Bounds live here, once, so ``--interval inf`` or ``--speed 0`` is one usage line (exit 2) in every
subcommand that takes such a value, instead of a traceback or a silently different behaviour.
"""

from __future__ import annotations

import argparse
import math
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from npuobs.durations import parse_duration

SEED_MAX = 2**32 - 1  # numpy's SeedSequence takes non-negative integers; keep seeds portable
SPEED_BOUNDS = (0.01, 1e6)  # virtual seconds per wall second


def duration_seconds(text: str) -> float:
    """Seconds of a Prometheus-style duration (``--soak 24h``), greater than zero."""
    try:
        seconds = float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be longer than 0s, got {text!r}")
    return seconds


def number_between(lo: float, hi: float, what: str = "a number") -> Callable[[str], float]:
    """A finite float in [lo, hi] (``--speed``, ``--interval``, ``--rate``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo:g} and {hi:g}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in "invalid <name> value"
    return parse


def integer_between(lo: int, hi: int) -> Callable[[str], int]:
    """An integer in [lo, hi] (``--seed``, ``--devices``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {text!r}")
        return value

    return parse


seed = integer_between(0, SEED_MAX)
speed = number_between(*SPEED_BOUNDS, what="a speed")


def http_url(text: str) -> str:
    """An http(s) base URL with a host (``--prometheus``, ``--alertmanager``)."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL like http://127.0.0.1:9090: {text!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text.rstrip("/")


def output_dir(text: str) -> Path:
    """A directory to write into: absent (created later) or a directory, never an existing file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {parent} is not a directory")
            break
    return path


def input_file(text: str) -> Path:
    """A file to read: it must exist and be a regular file (a directory here is a usage error)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a readable file" if path.exists() else
                                         f"{text!r} does not exist")
    return path
