"""argparse types shared by subcommands."""

from __future__ import annotations

import argparse

from npuobs.durations import parse_duration


def duration_seconds(text: str) -> float:
    """Seconds of a Prometheus-style duration (``--soak 24h``); a bad one is an argparse usage error."""
    try:
        return float(parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
