"""Multiwindow, multi-burn-rate alert policies (Google SRE workbook, ch. 5) and window arithmetic.

A policy is a list of (severity, burn factor, long window, short window) for a 30-day SLO. An
alert fires when the error ratio exceeds ``factor * (1 - objective)`` over BOTH windows: the
long window gives significance (how much budget was spent), the short one makes the alert
resolve soon after the burn stops. For other periods the windows scale with the period while the
factors stay, so each alert still means "this share of the budget went in this share of the
period" (Pyrra's approach).
"""

from __future__ import annotations

from dataclasses import dataclass

from npuobs.alerting import conventions as cv
from npuobs.durations import format_duration, parse_duration

BASE_PERIOD_SECONDS = 30 * 86400
MIN_WINDOW_SECONDS = 60  # below a minute rate() would see too few scrapes to be meaningful

@dataclass(frozen=True)
class BurnWindow:
    """One window pair: fire at ``severity`` when the error ratio over both windows exceeds
    ``factor`` times the error budget. ``long``/``short`` are Prometheus durations."""

    severity: str
    factor: float
    long: str
    short: str


POLICIES: dict[str, tuple[BurnWindow, ...]] = {
    # SRE workbook table 5-8: 2 % of the budget in 1 h or 5 % in 6 h pages; 10 % in 3 d tickets.
    "sre-workbook": (
        BurnWindow(cv.SEVERITY_PAGE, 14.4, "1h", "5m"),
        BurnWindow(cv.SEVERITY_PAGE, 6.0, "6h", "30m"),
        BurnWindow(cv.SEVERITY_TICKET, 3.0, "1d", "2h"),
        BurnWindow(cv.SEVERITY_TICKET, 1.0, "3d", "6h"),
    ),
    # NPU SRE guide: "alert when burn rate exceeds 2x expected for short windows and 1.2x for
    # longer windows". Short -> page on 1h (5m confirms), long -> ticket on 1d (2h confirms).
    # Far more sensitive than the workbook: it pages after ~0.3 % of the budget is gone.
    "npu-guide": (
        BurnWindow(cv.SEVERITY_PAGE, 2.0, "1h", "5m"),
        BurnWindow(cv.SEVERITY_TICKET, 1.2, "1d", "2h"),
    ),
}
DEFAULT_POLICY = "sre-workbook"


def scale_window(window: str, period_seconds: int) -> str:
    """``window`` (written for 30 days) scaled to ``period_seconds``, rounded to whole minutes."""
    scaled = parse_duration(window) * period_seconds / BASE_PERIOD_SECONDS
    minutes = max(MIN_WINDOW_SECONDS, round(scaled / 60) * 60)
    return format_duration(int(minutes))


def windows_for(policy: str, period: str) -> tuple[BurnWindow, ...]:
    """The policy's window pairs for an SLO period (``30d`` returns them unchanged)."""
    try:
        pairs = POLICIES[policy]
    except KeyError:
        choices = ", ".join(POLICIES)
        raise ValueError(f"unknown burn-rate policy {policy!r}; choose one of {choices}") from None
    period_seconds = parse_duration(period)
    return tuple(BurnWindow(w.severity, w.factor, scale_window(w.long, period_seconds),
                              scale_window(w.short, period_seconds)) for w in pairs)
