"""Where code may reach: the package's layering rules, checked on the source (issue 14 items 3-5).

- Nothing below ``npuobs.stack`` (the runner of real Prometheus/Alertmanager servers) imports it:
  only the entry points above it (the CLI, game days, the scale harness) and the stack itself do.
- Backend results are typed (``Snapshot.errors``, ``Snapshot.children``): no caller looks up
  errors or children on a backend with ``getattr``.
- One family builder: schema families are constructed only in ``npuobs.families``.
- The old homes are gone: ``npuobs.deploy_render``, ``npuobs.slo_report``, ``npuobs.exporter.collectors``.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

import pytest

import npuobs

pytestmark = pytest.mark.unit

PACKAGE = Path(npuobs.__file__).parent
# the entry points that run real servers: the CLI, game days and the scale harness
ABOVE_STACK = ("npuobs.stack", "npuobs.cli", "npuobs.gameday", "npuobs.scale")


@functools.cache
def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, ast.parse(path.read_text(encoding="utf-8"), str(path))))
    return out


def _imports(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_below_the_stack_imports_it() -> None:
    offenders = {name: sorted(i for i in _imports(tree) if i == "npuobs.stack" or i.startswith("npuobs.stack."))
                 for name, tree in _modules() if not name.startswith(ABOVE_STACK)}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_getattr_for_backend_errors_or_children() -> None:
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    and node.args[1].value in ("last_errors", "backends", "children", "errors")):
                found.append(f"{name}:{node.lineno}")
    assert found == []


def test_one_family_builder() -> None:
    """Schema metric families are made in one place (``npuobs.families``), for the exporter and the
    instrumentation library alike; the game-day recorder's synthetic ``up`` is not a schema metric."""
    makers = {}
    for name, tree in _modules():
        calls = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name) and n.func.id.endswith("MetricFamily")]
        if calls and name not in ("npuobs.families", "npuobs.gameday.record"):
            makers[name] = calls
    assert makers == {}


@pytest.mark.parametrize("old", ["npuobs.deploy_render", "npuobs.slo_report", "npuobs.exporter.collectors"])
def test_old_homes_are_gone(old: str) -> None:
    assert importlib.util.find_spec(old) is None
