"""Get the PromQL out of dashboard JSON and make it runnable without Grafana.

``panel_queries`` lists every query of every panel; ``substitute`` replaces template variables the
way Grafana would with the dashboard's defaults (``All`` -> ``.*``, textboxes -> their value) and
Grafana's built-ins (``$__rate_interval`` ...) with given durations; ``metric_names`` lists the
series a query reads. The live test, the snapshot renderer and the metric-name check share them,
so what is proven is exactly what Grafana would send.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    exemplar: bool

    @property
    def where(self) -> str:
        return f"{self.dashboard} panel {self.panel_id} '{self.panel_title}' query {self.ref_id}"


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those nested in collapsed rows included (rows themselves excluded)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(dashboard["uid"], p["id"], p.get("title", ""), t["refId"], t["expr"], bool(t.get("exemplar")))
            for p in panels(dashboard) for t in p.get("targets", [])]


def variable_defaults(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """What each variable interpolates to at its default: ``All`` -> allValue, a textbox -> its text."""
    values: dict[str, str] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        current = var.get("current", {}).get("value")
        if var.get("includeAll") and current in ("$__all", ["$__all"]):
            values[var["name"]] = var.get("allValue") or ".*"
        elif isinstance(current, str):
            values[var["name"]] = current
    return values


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]``; an unknown variable raises KeyError."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"template variable ${name} has no value (defined: {', '.join(sorted(values))})")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def builtins(rate_interval: str, range_: str) -> dict[str, str]:
    """Grafana's own variables, for running a query outside Grafana (``$__interval``, the step, is
    given the rate interval: outside Grafana there is no panel width to derive it from)."""
    return {"__rate_interval": rate_interval, "__interval": rate_interval, "__range": range_}


# --- metric names ---------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_TOKEN = re.compile(r"""
    (?P<variable>\$\{?\w+(?::\w+)?\}?)              # a template variable left in
  | (?P<matchers>\{[^}]*\})                       # label matchers
  | (?P<range>\[[^\]]*\])                          # range / subquery
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:[smhdwy]|ms)*)  # numbers, durations
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<other>\S)
""", re.VERBOSE)
_AGGREGATIONS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                           "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"})


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (functions, keywords and grouping labels excluded).

    A lexer, not a parser: enough for the expressions npuobs writes, and checked against every
    generated rule expression by the tests.
    """
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(_STRING.sub('""', expr))]
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "ident" and text in _LABEL_LISTS:
            if nxt[0] == "open":  # skip the label list
                i += 1
                while i < len(tokens) and tokens[i][0] != "close":
                    i += 1
        elif kind == "ident" and nxt[0] != "open" and text not in _AGGREGATIONS \
                and text.lower() not in _KEYWORDS:
            names.add(text)
        i += 1
    return names
