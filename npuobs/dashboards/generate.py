"""Render the three dashboards and the Grafana provisioning files, deterministically.

``render(options)`` returns file name -> content: ``executive.json``, ``oncall.json``,
``debug.json`` and ``provisioning/{datasources,dashboards}/npuobs.yaml``. Same inputs, same bytes:
the committed copies under ``dashboards/`` are compared with a fresh render by the tests and by
``npuobs dashboards generate --check``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from npuobs.alerting.generate import Options as AlertOptions
from npuobs.alerting.generate import build_rules
from npuobs.alerting.slo_spec import Spec
from npuobs.dashboards import debug, executive, oncall
from npuobs.dashboards.panels import DASHBOARDS, TEMPO_UID, DashboardRef, Options, tempo_explore_url

BUILDERS: dict[str, Callable[[Options], g.Dashboard]] = {
    "executive": executive.build, "oncall": oncall.build, "debug": debug.build,
}
GRAFANA_DASHBOARD_DIR = "/var/lib/grafana/dashboards"
"""Where the dashboard provider reads JSON inside the Grafana container (mount ``dashboards/`` there)."""
DATASOURCES_FILE = "provisioning/datasources/npuobs.yaml"
PROVIDERS_FILE = "provisioning/dashboards/npuobs.yaml"

# Fields of Grafana's schemaVersion-12 model that grafanalib 0.7.1 still writes and the current
# dashboard schema no longer has (spans, per-row heights, tag-based variables ...).
_LEGACY_DASHBOARD = frozenset({"__inputs", "rows", "style", "sharedCrosshair", "hideControls"})
_LEGACY_PANEL = frozenset({"editable", "error", "height", "minSpan", "span", "color", "columns", "fontSize",
                           "mappings"})
_LEGACY_TIMEPICKER = frozenset({"time_options"})
# A row is a header, not a panel: Grafana's model gives it only these (grafanalib writes panel fields).
_ROW_KEYS = frozenset({"collapsed", "datasource", "gridPos", "id", "panels", "repeat", "title", "type"})


def default_options(spec: Spec, **overrides: Any) -> Options:
    """Options for ``spec`` with the alert names the alert generator produces (for runbook links)."""
    policy = overrides.get("policy")
    alert_options = AlertOptions(policy=policy) if policy else AlertOptions()
    known = frozenset(a.name for a in build_rules(spec, alert_options).alerts)
    return Options(spec=spec, known_alerts=known, **overrides)


def _drop_none(node: Any) -> Any:
    """Remove null-valued keys, except threshold steps' ``value`` (null there means "from -inf")."""
    if isinstance(node, dict):
        return {k: _drop_none(v) for k, v in node.items() if v is not None or k == "value"}
    if isinstance(node, list):
        return [_drop_none(v) for v in node]
    return node


def _modern_panel(panel: dict[str, Any]) -> dict[str, Any]:
    if panel["type"] == "row":
        return {k: v for k, v in panel.items() if k in _ROW_KEYS}
    out = {k: v for k, v in panel.items() if k not in _LEGACY_PANEL}
    if not out.get("repeat"):
        for key in ("repeat", "repeatDirection", "maxPerRow"):
            out.pop(key, None)
    if "panels" in out:
        out["panels"] = [_modern_panel(p) for p in out["panels"]]
    return out


def modernise(dashboard: g.Dashboard) -> dict[str, Any]:
    """grafanalib's dashboard as plain JSON data in Grafana's current model (see module docstring)."""
    data = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    data = {k: v for k, v in data.items() if k not in _LEGACY_DASHBOARD}
    data["panels"] = [_modern_panel(p) for p in data["panels"]]
    data["timepicker"] = {k: v for k, v in data["timepicker"].items() if k not in _LEGACY_TIMEPICKER}
    return _drop_none(data)


def dashboards(options: Options) -> dict[DashboardRef, dict[str, Any]]:
    """Every dashboard as JSON data, keyed by its reference."""
    return {ref: modernise(BUILDERS[ref.key](options)) for ref in DASHBOARDS}


def _datasources(options: Options) -> dict[str, Any]:
    # Grafana expands $VAR in provisioning files: a literal $ is written $$.
    trace_url = options.trace_url.replace("{trace_id}", "$${__value.raw}")
    datasources: list[dict[str, Any]] = [
        {"name": options.datasource_name, "uid": options.datasource_uid, "type": "prometheus", "access": "proxy",
         "url": options.prometheus_url, "isDefault": True, "editable": False,
         "jsonData": {"timeInterval": options.scrape_interval, "exemplarTraceIdDestinations": [
             {"name": "trace_id", "url": trace_url, "urlDisplayLabel": "Open trace"}]}},
    ]
    if options.trace_url == tempo_explore_url():  # trace links open Tempo in Explore: Grafana needs Tempo
        datasources.append({"name": "Tempo", "uid": TEMPO_UID, "type": "tempo", "access": "proxy",
                            "url": options.tempo_url, "editable": False})
    return {"apiVersion": 1, "datasources": datasources}


def _providers() -> dict[str, Any]:
    return {"apiVersion": 1, "providers": [
        {"name": "npuobs", "orgId": 1, "folder": "NPU fleet", "type": "file", "disableDeletion": True,
         "allowUiUpdates": False, "updateIntervalSeconds": 30,
         "options": {"path": GRAFANA_DASHBOARD_DIR, "foldersFromFilesStructure": False}},
    ]}


def _yaml(doc: dict[str, Any], what: str) -> str:
    header = f"# {what}\n# Generated by `npuobs dashboards generate`; do not edit (see docs/dashboards.md).\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=1_000)


def render(options: Options) -> dict[str, str]:
    """File name (relative to the output directory) -> content."""
    files = {ref.filename: json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
             for ref, data in dashboards(options).items()}
    files[DATASOURCES_FILE] = _yaml(_datasources(options), "Grafana datasources for the npuobs dashboards.")
    files[PROVIDERS_FILE] = _yaml(_providers(), f"Grafana loads the npuobs dashboards from {GRAFANA_DASHBOARD_DIR}.")
    return files


def write(files: dict[str, str], out_dir: Path) -> list[Path]:
    written = []
    for name, content in files.items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def stale(files: dict[str, str], out_dir: Path) -> list[str]:
    """Names of rendered files that are missing in ``out_dir`` or differ from it."""
    out = []
    for name, content in files.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            out.append(name)
    return out
