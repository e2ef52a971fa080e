"""Shared building blocks of the three dashboards: variables, targets, panels, links, layout.

The dashboards are grafanalib objects. grafanalib 0.7.1 still writes some fields of Grafana's
old dashboard model (schemaVersion 12: ``span``, ``intervalFactor``, tag options ...); targets and
variables here are grafanalib subclasses that write the current model, and ``generate.modernise``
drops the remaining legacy keys, so the JSON validates against Grafana's own dashboard schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib import core as g

from npuobs.alerting import conventions as cv
from npuobs.config import Config
from npuobs.dashboards.queries import ALL

SCHEMA_VERSION = 39
"""Grafana 10.4's dashboard model: loads without migrations there and migrates cleanly in 11/12."""

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
"""Every panel and query variable uses the datasource the ``$datasource`` variable picks."""

GRID_COLUMNS = 24
@dataclass(frozen=True)
class DashboardRef:
    """Identity of one generated dashboard: a stable UID keeps links and bookmarks valid across runs."""

    key: str
    uid: str
    title: str

    @property
    def filename(self) -> str:
        return f"{self.key}.json"

    @property
    def url(self) -> str:
        return f"/d/{self.uid}"


EXECUTIVE = DashboardRef("executive", "npuobs-executive", "NPU fleet: executive overview")
ONCALL = DashboardRef("oncall", "npuobs-oncall", "NPU fleet: on-call")
DEBUG = DashboardRef("debug", "npuobs-debug", "NPU fleet: device debug")
DASHBOARDS = (EXECUTIVE, ONCALL, DEBUG)


# --- targets and variables ---------------------------------------------------------------------


@attr.s
class PromTarget(g.Target):
    """A Prometheus query in Grafana's current target model (grafanalib's Target predates it).

    ``exemplar`` asks Grafana to fetch exemplars with the series: the trace IDs the exporter
    attaches to latency buckets, linked to traces by the datasource's exemplar settings.
    """

    exemplar: bool = attr.ib(default=False, validator=attr.validators.instance_of(bool))

    def to_json_data(self) -> dict[str, Any]:
        return {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "exemplar": self.exemplar,
            "expr": self.expr,
            "format": self.format,
            "instant": self.instant,
            "legendFormat": self.legendFormat,
            "range": not self.instant,
            "refId": self.refId,
        }


@dataclass(frozen=True)
class Q:
    """One query of a panel before it gets its refId: PromQL and its legend."""

    expr: str
    legend: str = ""
    exemplar: bool = False


def targets(queries: Sequence[Q], instant: bool = False) -> list[PromTarget]:
    fmt = g.TABLE_TARGET_FORMAT if instant else g.TIME_SERIES_TARGET_FORMAT
    return [PromTarget(expr=q.expr, legendFormat=q.legend, refId=chr(ord("A") + i), instant=instant,
                       format=fmt, exemplar=q.exemplar) for i, q in enumerate(queries)]


@attr.s
class Variable(g.Template):
    """A template variable in Grafana's current model (no tag options, ``All`` shown as ``All``)."""

    description: str = attr.ib(default="")
    text: str = attr.ib(default="")  # shown for the default value when it differs from it (datasource name)

    def to_json_data(self) -> dict[str, Any]:
        if self.type != "query":
            current = {"text": self.text or self.default, "value": self.default}
        elif self.includeAll:
            current = {"text": ["All"], "value": ["$__all"]} if self.multi else {"text": "All", "value": "$__all"}
        else:
            current = {"text": self.text or self.default, "value": self.default}
        data = {
            "current": current,
            "description": self.description,
            "hide": self.hide,
            "label": self.label,
            "name": self.name,
            "options": [],
            "query": self.query,
            "skipUrlSync": False,
            "type": self.type,
        }
        if self.type == "query":
            data.update({"allValue": self.allValue, "datasource": self.dataSource, "includeAll": self.includeAll,
                         "multi": self.multi, "refresh": self.refresh, "regex": "", "sort": self.sort})
        return data


def datasource_variable(options: Config) -> Variable:
    return Variable(name="datasource", label="Data source", type="datasource", query="prometheus",
                    default=options.datasource_uid, text=options.datasource_name,
                    description="Prometheus that scrapes the npuobs exporters and evaluates the npuobs rules")


def label_variable(name: str, label: str, metric: str, parents: Iterable[str] = ()) -> Variable:
    """A multi-value label filter whose ``All`` is ``.*``: matches series lacking the label too."""
    matchers = ",".join(f'{p}=~"${p}"' for p in parents)
    source = f"{metric}{{{matchers}}}" if matchers else metric
    return Variable(name=name, label=label, type="query", query=f"label_values({source}, {name})",
                    dataSource=DATASOURCE, includeAll=True, multi=True, allValue=ALL,
                    refresh=g.REFRESH_ON_TIME_RANGE_CHANGE, sort=g.SORT_ALPHA_ASC, default="$__all")


def device_variables(names: Sequence[str]) -> list[Variable]:
    """cluster -> node -> vendor -> device (each narrowed by the ones before) and model, as requested."""
    chain = [("cluster", "Cluster"), ("node", "Node"), ("vendor", "Vendor"), ("device", "Device")]
    out: list[Variable] = []
    parents: list[str] = []
    for name, label in chain:
        if name in names:
            out.append(label_variable(name, label, "npu_device_up", parents))
            parents.append(name)
    if "model" in names:
        out.append(label_variable("model", "Model", "npu_inference_requests_total",
                                  [p for p in parents if p != "vendor"]))
    return out


def textbox(name: str, label: str, value: str, description: str) -> Variable:
    return Variable(name=name, label=label, type="textbox", query=value, default=value, description=description)


# --- thresholds, units, links --------------------------------------------------------------------


def steps(base: str, *marks: tuple[float, str]) -> list[dict[str, Any]]:
    """Threshold steps: ``base`` colour below the first mark, then each mark's colour from its value up."""
    return [{"color": base, "value": None}, *({"color": c, "value": float(v)} for v, c in marks)]


def above(value: float, color: str = "red") -> list[dict[str, Any]]:
    """Green, turning ``color`` at ``value``: the usual "alert fires above this" line."""
    return steps("green", (value, color))


def below(value: float) -> list[dict[str, Any]]:
    """Red below ``value``, green from it: for quantities where less is worse (budget, attainment)."""
    return steps("red", (value, "green"))


def runbook_link(options: Config, alert: str) -> g.DashboardLink:
    """A panel link to the alert's runbook; unknown alert names fail generation instead of rotting."""
    if options.known_alerts and alert not in options.known_alerts:
        raise ValueError(f"runbook link to {alert!r}, which is not an alert the generator produces")
    return g.DashboardLink(type="link", title=f"Runbook: {alert}", uri=cv.runbook_url(options.runbook_base_url, alert),
                           targetBlank=True, keepTime=False, icon="doc")


def dashboard_link(ref: DashboardRef) -> g.DashboardLink:
    """A link to another npuobs dashboard that carries the time range and the shared filters along."""
    return g.DashboardLink(type="link", title=ref.title, uri=ref.url, includeVars=True, keepTime=True,
                           icon="dashboard", tooltip=f"Open {ref.title}")


def drilldown(ref: DashboardRef, title: str) -> dict[str, Any]:
    """A data link from one device's series to ``ref`` filtered to that node and device."""
    url = (f"{ref.url}?var-node=${{__field.labels.node}}&var-device=${{__field.labels.device}}"
           "&${datasource:queryparam}&${__url_time_range}")
    return {"title": title, "url": url, "targetBlank": False}


# --- panels --------------------------------------------------------------------------------------


def timeseries(title: str, queries: Sequence[Q], unit: str, description: str, *,
               thresholds: list[dict[str, Any]] | None = None, links: Sequence[g.DashboardLink] = (),
               data_links: Sequence[dict[str, Any]] = (), stacked: bool = False,
               overrides: Sequence[dict[str, Any]] = (), axis_label: str = "") -> g.TimeSeries:
    """A time-series panel; given thresholds are drawn as dashed lines (the alert's line on the graph)."""
    panel = g.TimeSeries(
        title=title, description=description, dataSource=DATASOURCE, targets=targets(queries), unit=unit,
        thresholds=thresholds or steps("green"), thresholdsStyleMode="dashed" if thresholds else "off",
        links=list(links), stacking={"mode": "normal", "group": "A"} if stacked else {"mode": "none"},
        fillOpacity=30 if stacked else 10, showPoints="never", lineWidth=1, legendDisplayMode="list",
        tooltipMode="multi", overrides=list(overrides), maxDataPoints=None, axisLabel=axis_label,
    )
    return _with_data_links(panel, data_links)


def stat(title: str, queries: Sequence[Q], unit: str, description: str, *,
         thresholds: list[dict[str, Any]] | None = None, links: Sequence[g.DashboardLink] = (),
         data_links: Sequence[dict[str, Any]] = (), mappings: Sequence[dict[str, Any]] = (),
         decimals: int | None = None, overrides: Sequence[dict[str, Any]] = (),
         color_mode: str = "value", graph: bool = True) -> g.Stat:
    """A stat panel showing each series' latest value, coloured by thresholds."""
    panel = g.Stat(
        title=title, description=description, dataSource=DATASOURCE, targets=targets(queries), format=unit,
        thresholds=thresholds or steps("blue"), links=list(links), mappings=list(mappings), decimals=decimals,
        reduceCalc="lastNotNull", colorMode=color_mode, graphMode="area" if graph else "none",
        textMode="value_and_name", noValue="no data", overrides=list(overrides), maxDataPoints=None,
    )
    return _with_data_links(panel, data_links)


def table(title: str, queries: Sequence[Q], description: str, *, hidden: Sequence[str] = (),
          links: Sequence[g.DashboardLink] = (), overrides: Sequence[dict[str, Any]] = ()) -> g.Table:
    """An instant-query table of label sets (alerts, versions): one row per series."""
    organize = {"id": "organize", "options": {"excludeByName": dict.fromkeys(("Time", "Value", *hidden), True)}}
    return g.Table(title=title, description=description, dataSource=DATASOURCE,
                   targets=targets(queries, instant=True), transformations=[organize], links=list(links),
                   overrides=list(overrides), filterable=True, maxDataPoints=None, unit="none",
                   thresholds=steps("green"))


def _with_data_links(panel: g.Panel, data_links: Sequence[dict[str, Any]]) -> g.Panel:
    if not data_links:
        return panel
    return attr.evolve(panel, extraJson={"fieldConfig": {"defaults": {"links": list(data_links)}}})


def by_name(name: str, **properties: Any) -> dict[str, Any]:
    """A field override for the series named ``name`` (its legend)."""
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": k, "value": v} for k, v in sorted(properties.items())]}


UP_DOWN = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red", "index": 0},
                                         "1": {"text": "UP", "color": "green", "index": 1}}}]


# --- layout --------------------------------------------------------------------------------------


class Board:
    """Places panels left to right in rows of 24 grid columns and numbers them, so the layout and the
    panel ids are a pure function of the order panels are added in (deterministic JSON)."""

    def __init__(self) -> None:
        self.panels: list[g.Panel] = []
        self._x = 0
        self._y = 0
        self._line_height = 0

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def row(self, title: str) -> None:
        if self._x:
            self._newline()
        self.panels.append(g.RowPanel(title=title, id=len(self.panels) + 1,
                                      gridPos=g.GridPos(h=1, w=GRID_COLUMNS, x=0, y=self._y)))
        self._y += 1

    def add(self, panel: g.Panel, w: int, h: int = 8) -> None:
        if not 0 < w <= GRID_COLUMNS:
            raise ValueError(f"panel width must be 1..{GRID_COLUMNS}, got {w}")
        if self._x + w > GRID_COLUMNS:
            self._newline()
        grid = g.GridPos(h=h, w=w, x=self._x, y=self._y)
        self.panels.append(attr.evolve(panel, id=len(self.panels) + 1, gridPos=grid))
        self._x += w
        self._line_height = max(self._line_height, h)


def remediation_annotations() -> g.Annotations:
    """Grafana's built-in annotation query for the tag every ``npuobs remediate`` decision carries:
    what the controller did (or refused) shows on the graphs where the incident shows."""
    return g.Annotations(list=[{
        "builtIn": 0, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
        "iconColor": "orange", "name": "npuobs remediation",
        "target": {"type": "tags", "tags": ["npuobs-remediation"], "limit": 100, "matchAny": False},
    }])


def dashboard(ref: DashboardRef, board: Board, variables: Sequence[Variable], description: str,
              links: Sequence[g.DashboardLink], tags: Sequence[str] = (),
              annotations: g.Annotations | None = None) -> g.Dashboard:
    return g.Dashboard(
        title=ref.title, uid=ref.uid, description=description, tags=["npuobs", *tags],
        annotations=annotations or g.Annotations(),
        panels=board.panels, templating=g.Templating(list=list(variables)), links=list(links),
        refresh="30s", time=g.Time("now-1h", "now"), timezone="browser", schemaVersion=SCHEMA_VERSION,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR, editable=True, version=1,
    )
