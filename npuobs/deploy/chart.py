"""The Helm chart in ``deploy/helm/npuobs`` rendered without Helm, by ``npuobs.deploy.template``.

No ``helm`` binary installs from the registries this project can reach, yet the chart and the
plain manifests in ``deploy/manifests`` must never drift apart, so the chart is the single source
of truth and this renders it: ``values.yaml`` merged with overrides as Helm coalesces them, and
Helm's ``.Values``, ``.Release``, ``.Chart`` and ``.Files`` objects. The tests compare the output
with Helm v4's own engine (``helm-python-sdk``, a ~250 MB native wheel this package does not need).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from npuobs.deploy.template import Renderer, TemplateError, parse

RELEASE_NAME = "npuobs"
NAMESPACE = "npuobs"


@dataclass(frozen=True)
class Release:
    name: str = RELEASE_NAME
    namespace: str = NAMESPACE


class _Files:
    """Helm's ``.Files``: read-only access to the chart's non-template files."""

    def __init__(self, chart_dir: Path) -> None:
        self._chart_dir = chart_dir

    def Get(self, name: str) -> str:  # noqa: N802 - Helm's method name
        path = (self._chart_dir / name).resolve()
        if self._chart_dir.resolve() not in path.parents or not path.is_file():
            raise TemplateError(f".Files.Get: no file {name!r} in the chart")
        return path.read_text(encoding="utf-8")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Helm's value coalescing for what ``--set``/``-f`` do: maps merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_metadata(chart_dir: Path) -> dict[str, Any]:
    """Chart.yaml as Helm exposes it to templates (``.Chart.Name``, ``.Chart.AppVersion``...)."""
    doc = yaml.safe_load((chart_dir / "Chart.yaml").read_text(encoding="utf-8"))
    return {key[:1].upper() + key[1:]: value for key, value in doc.items()}


def render_chart(chart_dir: Path, overrides: dict[str, Any] | None = None,
                 release: Release = Release()) -> list[tuple[str, dict[str, Any]]]:
    """Render every template for ``values.yaml`` merged with ``overrides``: [(template, object)]."""
    values = yaml.safe_load((chart_dir / "values.yaml").read_text(encoding="utf-8")) or {}
    root = {
        "Values": _merge(values, overrides or {}),
        "Release": {"Name": release.name, "Namespace": release.namespace, "Service": "Helm"},
        "Chart": chart_metadata(chart_dir),
        "Files": _Files(chart_dir),
    }
    templates = sorted(p for p in (chart_dir / "templates").iterdir() if p.suffix in (".yaml", ".tpl"))
    parsed, defines = {}, {}
    for path in templates:
        nodes, file_defines = parse(path.read_text(encoding="utf-8"), path.name)
        parsed[path.name] = nodes
        defines.update(file_defines)
    renderer = Renderer(defines)
    objects = []
    for name, nodes in parsed.items():
        if name.startswith("_"):
            continue  # partials only define templates, as in Helm
        out: list[str] = []
        renderer.run(nodes, root, [{"$": root}], out, name)
        try:
            docs = list(yaml.safe_load_all("".join(out)))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{name}: rendered output is not YAML: {exc}") from exc
        objects.extend((name, doc) for doc in docs if doc is not None)
    return objects
