"""Panel results and their values as Grafana shows them: shared by the PNG snapshot and the demo's
live HTML page, and free of any plotting library (``dashboards generate`` and the demo need none).

``run_panel`` runs one panel's queries exactly as Grafana would send them (template variables
already substituted by the caller's values); ``format_value`` writes a value in the panel's unit,
``legend`` applies a legend format, ``threshold_color`` / ``mapped_value`` colour a stat.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from npuobs.dashboards.promql import substitute
from npuobs.promapi import PrometheusAPI, PrometheusQueryError

# Grafana's dark theme, so the pictures look like the real thing.
BACKGROUND = "#111217"
PANEL = "#181b1f"
TEXT = "#ccccdc"
MUTED = "#8e8e8e"
GRID = "#2c3235"
COLORS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a", "blue": "#5794f2",
          "purple": "#b877d9", "text": TEXT}
PALETTE = ("#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0",
           "#508642", "#cca300", "#447ebc", "#c15c17")


@dataclass
class Series:
    name: str
    times: list[datetime]
    values: list[float]
    labels: dict[str, str]


@dataclass
class PanelResult:
    panel: dict[str, Any]
    queries: list[str]
    series: list[Series] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- formatting -----------------------------------------------------------------------------------

_SI = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_IEC = ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"))
_SUBUNIT_SUFFIXES = frozenset({"s", "W", "J", "Hz"})  # ms and mW read naturally; "mreq/s" does not
_CURRENCY = {"currencyUSD": "$", "currencyEUR": "€", "currencyGBP": "£", "currencyJPY": "¥", "currencyKRW": "₩",
             "currencyCNY": "¥"}


def _si(value: float, suffix: str, decimals: int | None) -> str:
    for size, prefix in _SI:
        if abs(value) >= size:
            return f"{value / size:.{2 if decimals is None else decimals}f} {prefix}{suffix}".rstrip()
    if value and abs(value) < 1 and suffix in _SUBUNIT_SUFFIXES:
        for size, prefix in ((1e-3, "m"), (1e-6, "µ")):
            if abs(value) >= size:
                return f"{value / size:.{2 if decimals is None else decimals}f} {prefix}{suffix}"
    return f"{value:.{_auto_decimals(value) if decimals is None else decimals}f} {suffix}".rstrip()


def _auto_decimals(value: float) -> int:
    if value == 0 or abs(value) >= 100 or float(value).is_integer():
        return 0
    return min(6, max(0, 2 - int(math.floor(math.log10(abs(value))))))


def format_value(value: float, unit: str, decimals: int | None = None) -> str:
    """A value the way Grafana's unit would show it (the units the npuobs dashboards use)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "bytes":
        for size, name in _IEC:
            if abs(value) >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit in _CURRENCY:
        return f"{_CURRENCY[unit]}{value:.{_auto_decimals(value) if decimals is None else decimals}f}"
    suffix = {"s": "s", "hertz": "Hz", "watt": "W", "joule": "J", "celsius": "°C", "reqps": "req/s",
              "cps": "c/s", "ops": "ops/s"}.get(unit, "")
    if unit == "celsius":
        return f"{value:.1f} °C"
    return _si(value, suffix, decimals)


def legend(template: str, labels: Mapping[str, str], fallback: str) -> str:
    """Grafana's legend format: ``{{label}}`` replaced by the series' label values."""
    if not template:
        return fallback
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def threshold_color(value: float, steps: Sequence[Mapping[str, Any]]) -> str:
    color = steps[0]["color"] if steps else "text"
    for step in steps:
        if step["value"] is None or value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


def mapped_value(value: float, mappings: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    for mapping in mappings:
        if mapping.get("type") == "value":
            hit = mapping["options"].get(f"{value:g}")
            if hit:
                return hit["text"], COLORS.get(hit.get("color", "text"), TEXT)
    return None


# --- querying -------------------------------------------------------------------------------------


def run_panel(api: PrometheusAPI, panel: dict[str, Any], values: Mapping[str, str], start: float, end: float,
              step: float) -> PanelResult:
    """Run every query of one panel; a rejected query is recorded on the panel, not raised."""
    result = PanelResult(panel, [])
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], values)
        result.queries.append(expr)
        try:
            if target.get("instant"):
                rows = api.query(expr, end)
                result.series += [Series("", [], [float(r["value"][1])], r["metric"]) for r in rows]
            else:
                rows = api.query_range(expr, start, end, step)
                for i, row in enumerate(rows):
                    name = legend(target.get("legendFormat", ""), row["metric"], f"{target['refId']}{i}")
                    result.series.append(Series(
                        name, [datetime.fromtimestamp(float(t), tz=timezone.utc) for t, _ in row["values"]],
                        [float(v) for _, v in row["values"]], row["metric"]))
        except PrometheusQueryError as exc:
            result.errors.append(f"{target['refId']}: {exc}")
    return result
