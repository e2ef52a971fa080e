"""Check dashboard JSON without a Grafana server (none can be installed here; see docs/dashboards.md).

Two layers:

* ``schema_problems``: JSON Schema validation against Grafana's own dashboard model, shipped as
  ``grafana-dashboard.schema.json`` (converted from the ``@grafana/schema`` npm package). It
  rejects unknown keys, wrong types and missing required fields, i.e. what Grafana's
  TypeScript types would.
* ``structural_problems``: what a schema cannot express and Grafana would only show as a broken
  panel: unique panel ids, non-overlapping grid positions inside the 24-column grid, every query
  on the ``$datasource`` variable with a refId and an expression, Grafana unit ids, threshold
  steps in ascending order from a null base, template variables that exist, dashboard links to
  UIDs that exist, runbook links to runbooks that exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from grafanalib import formatunits

from npuobs.dashboards.panels import DATASOURCE, GRID_COLUMNS
from npuobs.dashboards.promql import panels

SCHEMA_RESOURCE = "grafana-dashboard.schema.json"  # package data of npuobs.dashboards

# Grafana's unit ids, as grafanalib lists them, plus the currencies the cost panel may be set to.
UNITS = frozenset(v for k, v in vars(formatunits).items() if k.isupper() and isinstance(v, str)) | {
    "currencyUSD", "currencyEUR", "currencyGBP", "currencyJPY", "currencyKRW", "currencyCNY"}
_BUILTIN_VARIABLE = re.compile(r"^__")
_VARIABLE_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_DASHBOARD_URL = re.compile(r"^/d/([^/?#]+)")
_RUNBOOK_URL = re.compile(r"/runbooks/([A-Za-z0-9]+)\.md$")


@cache
def _validator() -> Any:
    import jsonschema  # only the checks need it; generating dashboards does not

    schema = json.loads(resources.files("npuobs.dashboards").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def schema_problems(dashboard: Mapping[str, Any]) -> list[str]:
    """Violations of Grafana's dashboard schema, each as ``path: message``."""
    errors = sorted(_validator().iter_errors(dashboard), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def _overlaps(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def _units(panel: Mapping[str, Any]) -> Iterable[str]:
    config = panel.get("fieldConfig", {})
    if "unit" in config.get("defaults", {}):
        yield config["defaults"]["unit"]
    for override in config.get("overrides", []):
        yield from (prop["value"] for prop in override["properties"] if prop["id"] == "unit")


def _thresholds(panel: Mapping[str, Any]) -> Iterable[list[dict[str, Any]]]:
    config = panel.get("fieldConfig", {})
    if "thresholds" in config.get("defaults", {}):
        yield config["defaults"]["thresholds"]["steps"]
    for override in config.get("overrides", []):
        yield from (prop["value"]["steps"] for prop in override["properties"] if prop["id"] == "thresholds")


def _links(dashboard: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(where, url) of every dashboard, panel, data and override link."""
    for link in dashboard.get("links", []):
        yield "dashboard links", link.get("url", "")
    for panel in panels(dashboard):
        where = f"panel {panel['id']} '{panel.get('title', '')}'"
        for link in panel.get("links", []):
            yield where, link.get("url", "")
        config = panel.get("fieldConfig", {})
        for link in config.get("defaults", {}).get("links", []):
            yield where, link["url"]
        for override in config.get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    yield from ((where, link["url"]) for link in prop["value"])


def _grid_problems(name: str, dashboard: Mapping[str, Any]) -> Iterable[str]:
    ids: set[int] = set()
    placed: list[tuple[str, Mapping[str, int]]] = []
    for panel in dashboard.get("panels", []):
        where = f"{name} panel {panel.get('id')} '{panel.get('title', '')}'"
        if panel.get("id") in ids:
            yield f"{where}: duplicate panel id"
        ids.add(panel.get("id"))
        grid = panel.get("gridPos")
        if not grid:
            yield f"{where}: no gridPos"
            continue
        if min(grid["x"], grid["y"]) < 0 or min(grid["w"], grid["h"]) <= 0 or grid["x"] + grid["w"] > GRID_COLUMNS:
            yield f"{where}: gridPos {grid} outside the {GRID_COLUMNS}-column grid"
        yield from (f"{where}: overlaps {other}" for other, other_grid in placed if _overlaps(grid, other_grid))
        placed.append((where, grid))


def _panel_problems(name: str, panel: Mapping[str, Any], variables: set[str]) -> Iterable[str]:
    where = f"{name} panel {panel.get('id')} '{panel.get('title', '')}'"
    if not panel.get("title") or not panel.get("description"):
        yield f"{where}: every panel needs a title and a description (what it shows, what is bad)"
    if panel.get("datasource") != DATASOURCE:
        yield f"{where}: datasource {panel.get('datasource')} is not the $datasource variable"
    refs = [t.get("refId") for t in panel.get("targets", [])]
    if not refs:
        yield f"{where}: no queries"
    if len(set(refs)) != len(refs) or not all(refs):
        yield f"{where}: refIds must be present and unique, got {refs}"
    for target in panel.get("targets", []):
        query = f"{where} query {target.get('refId')}"
        if not target.get("expr", "").strip():
            yield f"{query}: empty expr"
        if target.get("datasource") != DATASOURCE:
            yield f"{query}: datasource is not the $datasource variable"
        for match in _VARIABLE_REF.finditer(target.get("expr", "")):
            var = match.group(1) or match.group(2)
            if var not in variables and not _BUILTIN_VARIABLE.match(var):
                yield f"{query}: undefined variable ${var}"
    yield from (f"{where}: {unit!r} is not a Grafana unit id" for unit in _units(panel) if unit not in UNITS)
    for steps in _thresholds(panel):
        values = [s["value"] for s in steps]
        if not values or values[0] is not None or values[1:] != sorted(values[1:]):
            yield f"{where}: threshold steps must start at null and ascend, got {values}"


def _link_problems(name: str, dashboard: Mapping[str, Any], uids: set[str],
                   runbooks_dir: Path | None) -> Iterable[str]:
    for where, url in _links(dashboard):
        target = _DASHBOARD_URL.match(url)
        if target and target.group(1) not in uids:
            yield f"{name} {where}: link to unknown dashboard uid {target.group(1)!r}"
        runbook = _RUNBOOK_URL.search(url)
        if runbook and runbooks_dir is not None and not (runbooks_dir / f"{runbook.group(1)}.md").is_file():
            yield f"{name} {where}: runbook {runbook.group(1)}.md does not exist in {runbooks_dir}"


def structural_problems(dashboards: Iterable[Mapping[str, Any]], runbooks_dir: Path | None = None) -> list[str]:
    """Problems that would break panels in Grafana, across a set of dashboards that link to each other."""
    boards = list(dashboards)
    uids = {d.get("uid", "") for d in boards}
    problems: list[str] = []
    for d in boards:
        name = d.get("uid") or d.get("title", "?")
        problems += [f"{name}: missing top-level key {key!r}"
                     for key in ("uid", "title", "schemaVersion", "panels", "templating", "time") if key not in d]
        variables = {v["name"] for v in d.get("templating", {}).get("list", [])}
        problems += _grid_problems(name, d)
        for panel in panels(d):
            problems += _panel_problems(name, panel, variables)
        problems += _link_problems(name, d, uids, runbooks_dir)
    return problems
