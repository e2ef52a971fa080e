"""Render the dashboards from live Prometheus data to PNG and one HTML page, without Grafana.

Each panel's queries run exactly as Grafana would send them (template variables at their
defaults, ``$__rate_interval`` as given) over the last N minutes; time series become line (or
stacked) plots with their threshold lines, stats become coloured values, tables become tables.
The output per run: ``<dashboard>.png`` (the whole dashboard laid out on Grafana's 24-column
grid), ``<dashboard>/panel-<id>.png`` per panel, and ``index.html`` showing the panels in the same
grid with their PromQL, so someone without Grafana sees what on-call would see.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from npuobs.dashboards.panels import GRID_COLUMNS  # noqa: E402
from npuobs.dashboards.panelvalues import (  # noqa: E402
    BACKGROUND,
    COLORS,
    GRID,
    MUTED,
    PALETTE,
    PANEL,
    TEXT,
    PanelResult,
    format_value,
    mapped_value,
    run_panel,
    threshold_color,
)
from npuobs.dashboards.promql import builtins, panels, variable_defaults  # noqa: E402
from npuobs.promapi import PrometheusAPI  # noqa: E402

INCH_PER_COLUMN = 0.75
INCH_PER_ROW = 0.40  # Grafana: 30 px grid rows against ~75 px columns on a 1920 px screen
MAX_TABLE_ROWS = 14
MAX_POINTS = 240
AXIS_COLUMNS = 1.0  # room left of a graph for its y tick labels, in grid columns


# --- drawing --------------------------------------------------------------------------------------


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    ax.set_title(title, color=TEXT, fontsize=9, loc="left", pad=4)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=MUTED, labelsize=7)


def _note(ax: Axes, text: str, color: str = MUTED) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color=color, fontsize=8, wrap=True)


def draw_timeseries(ax: Axes, result: PanelResult) -> None:
    defaults = result.panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "none")
    custom = defaults.get("custom", {})
    ax.grid(color=GRID, linewidth=0.5)
    series = [s for s in result.series if s.values]
    if custom.get("stacking", {}).get("mode") == "normal" and series:
        times = series[0].times
        aligned = [s for s in series if s.times == times]
        ax.stackplot(times, [[0 if math.isnan(v) else v for v in s.values] for s in aligned],
                     labels=[s.name for s in aligned], colors=PALETTE, alpha=0.7)
    else:
        for i, s in enumerate(series):
            ax.plot(s.times, s.values, label=s.name, color=PALETTE[i % len(PALETTE)], linewidth=1.1)
    if custom.get("thresholdsStyle", {}).get("mode", "off") != "off":
        for step in defaults["thresholds"]["steps"][1:]:
            ax.axhline(step["value"], color=COLORS.get(step["color"], step["color"]), linestyle="--", linewidth=1)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: format_value(v, unit)))
    if series and min(min(s.values) for s in series) >= 0:
        ax.set_ylim(bottom=0)  # like Grafana: a non-negative quantity is not drawn around a negative axis
    span = max((s.times[-1] - s.times[0]).total_seconds() for s in series) if series else 0
    width = result.panel["gridPos"]["w"]
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=2, maxticks=max(3, width // 2)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if span < 600 else "%H:%M"))
    if custom.get("axisLabel"):
        ax.set_ylabel(custom["axisLabel"], color=MUTED, fontsize=7)
    if series:
        shown = series[:8]
        ax.legend(handles=ax.get_legend_handles_labels()[0][:len(shown)], fontsize=6, loc="upper left",
                  ncol=2 if len(shown) > 4 else 1, facecolor=PANEL, edgecolor=GRID, labelcolor=TEXT, framealpha=0.8)
        if len(series) > len(shown):
            ax.text(1.0, 1.01, f"+{len(series) - len(shown)} more series", transform=ax.transAxes, ha="right",
                    va="bottom", color=MUTED, fontsize=6)
    elif not result.errors:
        _note(ax, "No data")


def draw_stat(ax: Axes, result: PanelResult) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    defaults = result.panel["fieldConfig"]["defaults"]
    unit, decimals = defaults.get("unit", "none"), defaults.get("decimals")
    background = result.panel.get("options", {}).get("colorMode") == "background"
    overrides = {o["matcher"]["options"]: o for o in result.panel["fieldConfig"].get("overrides", [])
                 if o["matcher"]["id"] == "byName"}
    cells = [(s.name, next((v for v in reversed(s.values) if not math.isnan(v)), math.nan)) for s in result.series]
    if not cells:
        if not result.errors:
            _note(ax, "No data")
        return
    columns = min(len(cells), 8)
    rows = math.ceil(len(cells) / columns)
    for i, (name, value) in enumerate(cells):
        steps = next((p["value"]["steps"] for p in overrides.get(name, {}).get("properties", [])
                      if p["id"] == "thresholds"), defaults["thresholds"]["steps"])
        mapped = mapped_value(value, defaults.get("mappings", []))
        text, color = mapped or (format_value(value, unit, decimals), threshold_color(value, steps))
        col, row = i % columns, i // columns
        x, y, w, h = col / columns, 1 - (row + 1) / rows, 1 / columns, 1 / rows
        if background:
            ax.add_patch(plt.Rectangle((x + 0.005, y + 0.02), w - 0.01, h - 0.04, transform=ax.transAxes,
                                       color=color, alpha=0.85))
            color = "#ffffff"
        size = max(7.0, min(20.0, 60 / max(columns, rows * 2)))
        ax.text(x + w / 2, y + h * 0.58, text, transform=ax.transAxes, ha="center", va="center", color=color,
                fontsize=size, fontweight="bold")
        ax.text(x + w / 2, y + h * 0.2, name, transform=ax.transAxes, ha="center", va="center",
                color=TEXT if not background else "#ffffff", fontsize=6)


def draw_table(ax: Axes, result: PanelResult) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    hidden = set()
    for transform in result.panel.get("transformations", []):
        if transform["id"] == "organize":
            hidden |= set(transform["options"].get("excludeByName", {}))
    rows = [s.labels for s in result.series]
    if not rows:
        if not result.errors:
            _note(ax, "No rows (nothing pending or firing)" if "ALERTS" in " ".join(result.queries) else "No data")
        return
    columns = sorted({k for r in rows for k in r} - hidden)
    cells = [[r.get(c, "") for c in columns] for r in rows[:MAX_TABLE_ROWS]]
    table = ax.table(cellText=cells, colLabels=columns, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    for (r, _), cell in table.get_celld().items():
        cell.set_facecolor(PANEL if r else "#22252b")
        cell.set_edgecolor(GRID)
        cell.get_text().set_color(TEXT)
    if len(rows) > MAX_TABLE_ROWS:
        ax.text(1.0, 0.0, f"+{len(rows) - MAX_TABLE_ROWS} more rows", transform=ax.transAxes, ha="right",
                va="bottom", color=MUTED, fontsize=6)


DRAW = {"timeseries": draw_timeseries, "stat": draw_stat, "table": draw_table}


def draw_panel(ax: Axes, result: PanelResult) -> None:
    _style(ax, result.panel.get("title", ""))
    DRAW[result.panel["type"]](ax, result)
    if result.errors:
        _note(ax, "\n".join(result.errors)[:300], COLORS["red"])


def dashboard_figure(dashboard: Mapping[str, Any], results: Sequence[PanelResult]) -> Figure:
    """The whole dashboard on one figure, panels where their gridPos puts them."""
    grids = [p["gridPos"] for p in dashboard["panels"]]
    height = max(g["y"] + g["h"] for g in grids) + 1  # + title line
    fig = plt.figure(figsize=(GRID_COLUMNS * INCH_PER_COLUMN, height * INCH_PER_ROW), facecolor=BACKGROUND)
    fig.text(0.005, 1 - 0.5 / height, dashboard["title"], color=TEXT, fontsize=14, va="center", fontweight="bold")
    by_id = {r.panel["id"]: r for r in results}
    pad_x, pad_y = 0.12 / GRID_COLUMNS, 0.35 / height
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        left, bottom = g["x"] / GRID_COLUMNS, 1 - (g["y"] + 1 + g["h"]) / height
        width, top_pad = g["w"] / GRID_COLUMNS, (0.9 if panel["type"] == "timeseries" else 0.6) / height
        if panel["type"] == "row":
            fig.text(left + 0.005, bottom + 0.5 / height, panel["title"], color=TEXT, fontsize=11, va="center")
            continue
        axis_x, axis_y = (AXIS_COLUMNS / GRID_COLUMNS, 0.25 / height) if panel["type"] == "timeseries" else (0, 0)
        ax = fig.add_axes((left + pad_x + axis_x, bottom + pad_y + axis_y, width - 2 * pad_x - axis_x,
                           g["h"] / height - pad_y - top_pad - axis_y))
        draw_panel(ax, by_id[panel["id"]])
    return fig


def panel_figure(result: PanelResult) -> Figure:
    g = result.panel["gridPos"]
    fig = plt.figure(figsize=(g["w"] * INCH_PER_COLUMN, g["h"] * INCH_PER_ROW * 1.2), facecolor=BACKGROUND)
    left = AXIS_COLUMNS / g["w"] if result.panel["type"] == "timeseries" else 0.02
    ax = fig.add_axes((left, 0.14, 0.97 - left, 0.74))
    draw_panel(ax, result)
    return fig


# --- one run --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    minutes: float = 15.0
    rate_interval: str = "1m"
    dpi: int = 110


def snapshot(api: PrometheusAPI, dashboards: Sequence[Mapping[str, Any]], out_dir: Path,
             settings: Settings = Settings(), now: float | None = None) -> list[Path]:
    """Render every dashboard; returns the files written (index.html last)."""
    end = time.time() if now is None else now
    start = end - settings.minutes * 60
    step = max(1.0, round(settings.minutes * 60 / MAX_POINTS))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections = []
    for dashboard in dashboards:
        values = {**variable_defaults(dashboard), **builtins(settings.rate_interval, f"{settings.minutes:g}m")}
        results = [run_panel(api, p, values, start, end, step) for p in panels(dashboard)]
        key = dashboard["uid"].removeprefix("npuobs-")
        (out_dir / key).mkdir(exist_ok=True)
        fig = dashboard_figure(dashboard, results)
        fig.savefig(out_dir / f"{key}.png", dpi=settings.dpi, facecolor=BACKGROUND)
        plt.close(fig)
        written.append(out_dir / f"{key}.png")
        for result in results:
            path = out_dir / key / f"panel-{result.panel['id']}.png"
            fig = panel_figure(result)
            fig.savefig(path, dpi=settings.dpi, facecolor=BACKGROUND)
            plt.close(fig)
            written.append(path)
        sections.append(_html_section(dashboard, key, results))
    index = out_dir / "index.html"
    taken = datetime.fromtimestamp(end, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    index.write_text(_HTML.format(title="npuobs dashboards snapshot", url=html.escape(api.url), taken=taken,
                                  minutes=f"{settings.minutes:g}", rate=html.escape(settings.rate_interval),
                                  sections="\n".join(sections)), encoding="utf-8")
    written.append(index)
    return written


def _html_section(dashboard: Mapping[str, Any], key: str, results: Sequence[PanelResult]) -> str:
    cells = []
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        area = f"grid-column:{g['x'] + 1}/span {g['w']};grid-row:{g['y'] + 1}/span {g['h']}"
        if panel["type"] == "row":
            cells.append(f'<h3 class="row" style="{area}">{html.escape(panel["title"])}</h3>')
            continue
        result = next(r for r in results if r.panel["id"] == panel["id"])
        queries = "\n".join(html.escape(q) for q in result.queries)
        errors = "".join(f'<p class="err">{html.escape(e)}</p>' for e in result.errors)
        cells.append(
            f'<figure style="{area}"><img src="{key}/panel-{panel["id"]}.png" alt="{html.escape(panel["title"])}">'
            f'<figcaption title="{html.escape(panel.get("description", ""))}">{html.escape(panel["title"])}'
            f"{errors}<details><summary>PromQL</summary><pre>{queries}</pre></details></figcaption></figure>")
    return (f'<section><h2>{html.escape(dashboard["title"])} <a href="{key}.png">(whole dashboard as one PNG)</a>'
            f'</h2><div class="grid">{"".join(cells)}</div></section>')


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ background:#111217; color:#ccccdc; font-family:sans-serif; margin:16px; }}
a {{ color:#6e9fff; }}
.grid {{ display:grid; grid-template-columns:repeat(24, 1fr); grid-auto-rows:30px; gap:6px; }}
figure {{ margin:0; background:#181b1f; border:1px solid #2c3235; overflow:hidden; display:flex;
  flex-direction:column; }}
figure img {{ width:100%; flex:1; min-height:0; object-fit:contain; }}
figcaption {{ font-size:11px; padding:2px 6px; }}
details pre {{ white-space:pre-wrap; font-size:10px; max-height:160px; overflow:auto; }}
.row {{ margin:0; align-self:end; border-bottom:1px solid #2c3235; }}
.err {{ color:#f2495c; margin:0; }}
</style></head><body>
<h1>{title}</h1>
<p>Prometheus {url}, last {minutes} minutes up to {taken}; $__rate_interval = {rate}; template variables at
their defaults (All).</p>
{sections}
</body></html>
"""
