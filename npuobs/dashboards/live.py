"""The three dashboards as live HTML pages, drawn from Prometheus' HTTP API: Grafana for the demo.

Grafana cannot run here, yet a person running ``npuobs demo`` wants to watch the panels move when
they inject a fault. So the demo serves each generated dashboard (the same JSON Grafana would load)
as one page: every panel's queries run as Grafana would send them (template variables at their
defaults, ``$__rate_interval`` as the demo's scrape interval allows), time series drawn as inline
SVG with their threshold lines, stats as coloured values, tables as tables; the page reloads itself.
No plotting library and no JavaScript: the wheel's plain install serves it.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from npuobs.boundedhttp import Blocking, BoundedHTTPServer, Limits, Request, Response
from npuobs.dashboards.panelvalues import (
    COLORS,
    MUTED,
    PALETTE,
    PanelResult,
    format_value,
    mapped_value,
    run_panel,
    threshold_color,
)
from npuobs.dashboards.promql import builtins, panels, variable_defaults
from npuobs.promapi import PrometheusAPI, PrometheusUnreachable

MAX_POINTS = 120
MAX_SERIES = 12  # lines drawn per panel; the legend says how many more there are
MAX_TABLE_ROWS = 20
SVG_W, SVG_H = 400, 150


@dataclass(frozen=True)
class LiveSettings:
    minutes: float = 15.0
    rate_interval: str = "20s"  # Grafana's rule: at least 4 scrape intervals (the demo scrapes every 5 s)
    refresh_seconds: int = 10


class LivePages:
    """Renders the index and one page per dashboard (key -> dashboard JSON) from ``api``."""

    def __init__(self, api: PrometheusAPI, boards: Mapping[str, Mapping[str, Any]],
                 settings: LiveSettings = LiveSettings()) -> None:
        self.api = api
        self.boards = dict(boards)
        self.settings = settings

    def index(self) -> str:
        links = "".join(f'<li><a href="/d/{html.escape(key)}">{html.escape(board["title"])}</a></li>'
                        for key, board in self.boards.items())
        return _page("npuobs demo dashboards", f"<ul>{links}</ul><p>Drawn from Prometheus "
                     f"{html.escape(self.api.url)} without Grafana; the same JSON Grafana loads is in "
                     "dashboards/.</p>", refresh=None)

    def dashboard(self, key: str, now: float | None = None) -> str:
        board = self.boards[key]
        s = self.settings
        end = time.time() if now is None else now
        start = end - s.minutes * 60
        step = max(1.0, round(s.minutes * 60 / MAX_POINTS))
        values = {**variable_defaults(board), **builtins(s.rate_interval, f"{s.minutes:g}m")}
        results = {p["id"]: run_panel(self.api, p, values, start, end, step) for p in panels(board)}
        cells = []
        for panel in board["panels"]:
            g = panel["gridPos"]
            area = f"grid-column:{g['x'] + 1}/span {g['w']};grid-row:{g['y'] + 1}/span {g['h']}"
            if panel["type"] == "row":
                cells.append(f'<h3 class="row" style="{area}">{html.escape(panel.get("title", ""))}</h3>')
                continue
            cells.append(_panel_html(results[panel["id"]], area, start, end))
            for nested in panel.get("panels", []):  # a collapsed row's panels follow it
                ng = nested["gridPos"]
                narea = f"grid-column:{ng['x'] + 1}/span {ng['w']};grid-row:{ng['y'] + 1}/span {ng['h']}"
                cells.append(_panel_html(results[nested["id"]], narea, start, end))
        nav = " | ".join(f'<a href="/d/{html.escape(k)}">{html.escape(b["title"])}</a>' for k, b in self.boards.items())
        taken = time.strftime("%H:%M:%S", time.localtime(end))
        body = (f'<nav>{nav}</nav><p class="muted">last {s.minutes:g} min up to {taken}, refreshed every '
                f'{s.refresh_seconds} s; $__rate_interval = {html.escape(s.rate_interval)}; variables at their '
                f'defaults (All)</p><div class="grid">{"".join(cells)}</div>')
        return _page(board["title"], body, refresh=s.refresh_seconds)


def _panel_html(result: PanelResult, area: str, start: float, end: float) -> str:
    panel = result.panel
    draw = {"timeseries": _timeseries_svg, "stat": _stat_html, "table": _table_html}.get(panel["type"])
    inner = draw(result, start, end) if draw else f'<p class="muted">panel type {panel["type"]}</p>'
    errors = "".join(f'<p class="err">{html.escape(e)}</p>' for e in result.errors)
    queries = "\n".join(html.escape(q) for q in result.queries)
    return (f'<figure style="{area}" data-panel="{panel["id"]}"><figcaption title="'
            f'{html.escape(panel.get("description", ""))}">{html.escape(panel.get("title", ""))}</figcaption>'
            f'<div class="body">{inner}</div>{errors}<details><summary>PromQL</summary><pre>{queries}</pre>'
            "</details></figure>")


def _timeseries_svg(result: PanelResult, start: float, end: float) -> str:
    defaults = result.panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "none")
    series = [s for s in result.series if any(not math.isnan(v) for v in s.values)]
    if not series:
        return "" if result.errors else '<p class="muted">No data</p>'
    custom = defaults.get("custom", {})
    lines = [step["value"] for step in defaults.get("thresholds", {}).get("steps", [])[1:]
             if custom.get("thresholdsStyle", {}).get("mode", "off") != "off" and step.get("value") is not None]
    finite = [v for s in series for v in s.values if math.isfinite(v)] + lines
    lo, hi = min([0.0, *finite]), max(finite or [1.0])
    if hi <= lo:
        hi = lo + 1.0
    pad_l = 52

    def x(t: float) -> float:
        return pad_l + (t - start) / max(end - start, 1e-9) * (SVG_W - pad_l - 4)

    def y(v: float) -> float:
        return 4 + (hi - v) / (hi - lo) * (SVG_H - 18)

    parts = [f'<svg viewBox="0 0 {SVG_W} {SVG_H}" preserveAspectRatio="none" role="img">',
             f'<text x="2" y="12" class="axis">{html.escape(format_value(hi, unit))}</text>',
             f'<text x="2" y="{SVG_H - 14}" class="axis">{html.escape(format_value(lo, unit))}</text>',
             f'<line x1="{pad_l}" y1="{y(lo):.1f}" x2="{SVG_W - 4}" y2="{y(lo):.1f}" class="gridline"/>']
    for value in lines:
        parts.append(f'<line x1="{pad_l}" y1="{y(value):.1f}" x2="{SVG_W - 4}" y2="{y(value):.1f}" '
                     f'stroke="{COLORS["red"]}" stroke-dasharray="4 3" class="threshold"/>')
    for i, s in enumerate(series[:MAX_SERIES]):
        points = " ".join(f"{x(t.timestamp()):.1f},{y(v):.1f}" for t, v in zip(s.times, s.values, strict=True)
                          if math.isfinite(v))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                     f'stroke-width="1.5"><title>{html.escape(s.name)}</title></polyline>')
    parts.append("</svg>")
    legend = "".join(f'<span style="color:{PALETTE[i % len(PALETTE)]}">&#9632; {html.escape(s.name)} '
                     f"{html.escape(format_value(_last(s.values), unit))}</span> "
                     for i, s in enumerate(series[:MAX_SERIES]))
    more = f'<span class="muted">+{len(series) - MAX_SERIES} more series</span>' if len(series) > MAX_SERIES else ""
    return "".join(parts) + f'<div class="legend">{legend}{more}</div>'


def _stat_html(result: PanelResult, start: float, end: float) -> str:
    defaults = result.panel["fieldConfig"]["defaults"]
    unit, decimals = defaults.get("unit", "none"), defaults.get("decimals")
    overrides = {o["matcher"]["options"]: o for o in result.panel["fieldConfig"].get("overrides", [])
                 if o["matcher"]["id"] == "byName"}
    if not result.series:
        return "" if result.errors else '<p class="muted">No data</p>'
    cells = []
    for s in result.series:
        value = _last(s.values)
        steps = next((p["value"]["steps"] for p in overrides.get(s.name, {}).get("properties", [])
                      if p["id"] == "thresholds"), defaults.get("thresholds", {}).get("steps", []))
        text, color = mapped_value(value, defaults.get("mappings", [])) or (
            format_value(value, unit, decimals), threshold_color(value, steps))
        cells.append(f'<div class="stat"><b style="color:{color}">{html.escape(text)}</b>'
                     f"<small>{html.escape(s.name)}</small></div>")
    return f'<div class="stats">{"".join(cells)}</div>'


def _table_html(result: PanelResult, start: float, end: float) -> str:
    hidden: set[str] = set()
    for transform in result.panel.get("transformations", []):
        if transform["id"] == "organize":
            hidden |= set(transform["options"].get("excludeByName", {}))
    rows = [s.labels for s in result.series]
    if not rows:
        return "" if result.errors else '<p class="muted">No rows</p>'
    columns = sorted({k for r in rows for k in r} - hidden)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r.get(c, ''))}</td>" for c in columns) + "</tr>"
                   for r in rows[:MAX_TABLE_ROWS])
    more = f'<p class="muted">+{len(rows) - MAX_TABLE_ROWS} more rows</p>' if len(rows) > MAX_TABLE_ROWS else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _last(values: Sequence[float]) -> float:
    return next((v for v in reversed(values) if not math.isnan(v)), math.nan)


def _page(title: str, body: str, refresh: int | None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{meta}<title>{html.escape(title)}</title>
<style>
body {{ background:#111217; color:#ccccdc; font-family:sans-serif; margin:12px; }}
a {{ color:#6e9fff; }}
.grid {{ display:grid; grid-template-columns:repeat(24, 1fr); grid-auto-rows:30px; gap:6px; }}
figure {{ margin:0; background:#181b1f; border:1px solid #2c3235; overflow:hidden; display:flex;
  flex-direction:column; padding:2px 6px; }}
figcaption {{ font-size:12px; font-weight:bold; }}
.body {{ flex:1; min-height:0; overflow:auto; }}
svg {{ width:100%; height:70%; }}
.axis {{ fill:{MUTED}; font-size:10px; }}
.gridline {{ stroke:#2c3235; }}
.legend {{ font-size:10px; }}
.stats {{ display:flex; flex-wrap:wrap; gap:8px; }}
.stat {{ display:flex; flex-direction:column; align-items:center; }}
.stat b {{ font-size:22px; }}
.stat small {{ font-size:10px; }}
table {{ font-size:10px; border-collapse:collapse; }}
td, th {{ border:1px solid #2c3235; padding:1px 4px; text-align:left; }}
details pre {{ white-space:pre-wrap; font-size:10px; max-height:120px; overflow:auto; }}
summary {{ font-size:10px; color:{MUTED}; }}
.row {{ margin:0; align-self:end; border-bottom:1px solid #2c3235; }}
.err {{ color:{COLORS["red"]}; margin:0; font-size:10px; }}
.muted {{ color:{MUTED}; font-size:11px; }}
</style></head><body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""


class LiveDashboardServer:
    """Serves ``LivePages`` on a bounded HTTP server: ``/`` (index) and ``/d/<key>``."""

    def __init__(self, pages: LivePages, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pages = pages
        self._server = BoundedHTTPServer(host, port, self._handle, limits=Limits(max_connections=64, workers=2),
                                         name="npuobs-live-dashboards")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LiveDashboardServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def _handle(self, request: Request) -> Response | Blocking:
        path = request.path
        if path == "/":
            return Response(200, self.pages.index().encode(), "text/html; charset=utf-8")
        key = path.removeprefix("/d/")
        if not path.startswith("/d/") or key not in self.pages.boards:
            return Response(404, b"not found: try /\n")

        def render() -> Response:  # queries Prometheus: runs in the worker pool, not on the event loop
            try:
                page = self.pages.dashboard(key)
            except PrometheusUnreachable as exc:
                return Response(503, f"{exc}\n".encode())
            return Response(200, page.encode(), "text/html; charset=utf-8")

        return render
