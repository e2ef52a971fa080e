"""Prometheus-style durations (``30d``, ``6h``, ``1h30m``): parsed and formatted in one place.

The CLI (``--duration 10m``), the fault injector, the SLO spec and the rule generator all speak
the same duration syntax as the Prometheus rules they end up in.
"""

from __future__ import annotations

import re

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> int:
    """Seconds in a Prometheus-style duration made of d/h/m/s parts (``30d``, ``1h30m``)."""
    match = _DURATION_RE.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration like 30d, 6h, 5m or 1h30m: {text!r}")
    return sum(int(v) * secs for v, (_, secs) in zip(match.groups(), _UNITS, strict=True) if v)


def format_duration(seconds: int) -> str:
    """Shortest d/h/m/s form (``86400`` -> ``1d``, ``5400`` -> ``1h30m``); stable, so rule names are."""
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {seconds}s")
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
