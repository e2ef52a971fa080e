"""Every committed generated artifact of a checkout, from one Config: what ``npuobs generate`` writes.

The repository commits what its generators produce (so reviewers see the rules and dashboards a
change makes, and deployers need no Python): ``docs/metrics.md`` from the schema, ``alerts/generated/``
and ``dashboards/`` from the Config loaded from ``alerts/slo.yaml``, and the deploy files (the
chart's rules copy, compose's Alertmanager config, ``deploy/manifests/``) from those and the chart.
``npuobs generate --check`` compares instead of writing and names each stale file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from npuobs.alerting import generate as alert_generate
from npuobs.config import Config
from npuobs.dashboards import generate as dashboard_generate
from npuobs.deploy import sync as deploy_sync
from npuobs.docsgen import metrics_markdown

SLO_SPEC = Path("alerts/slo.yaml")
ALERTS_DIR = Path("alerts/generated")
DASHBOARDS_DIR = Path("dashboards")
METRICS_DOC = Path("docs/metrics.md")


class NotACheckout(ValueError):
    """The root lacks what the generators read (``alerts/slo.yaml``, the Helm chart)."""


@dataclass(frozen=True)
class Stage:
    """One generator: the files it owns (relative to the root) and their expected content.

    Stages run in order: the deploy stage reads the PrometheusRule the alerts stage writes, and the
    manifests stage renders the chart holding the rules copies the deploy stage writes.
    """

    name: str
    files: Callable[[Path], dict[Path, str]]


def _config(root: Path) -> Config:
    return Config.load(root / SLO_SPEC)


def _alerts(root: Path) -> dict[Path, str]:
    return {ALERTS_DIR / name: content for name, content in alert_generate.render(_config(root)).items()}


def _dashboards(root: Path) -> dict[Path, str]:
    return {DASHBOARDS_DIR / name: content for name, content in dashboard_generate.render(_config(root)).items()}


def _docs(root: Path) -> dict[Path, str]:
    return {METRICS_DOC: metrics_markdown()}


def _deploy_copies(root: Path) -> dict[Path, str]:
    return dict(deploy_sync.expected_files(root))


def _manifests(root: Path) -> dict[Path, str]:
    return {deploy_sync.MANIFESTS_DIR / name: content
            for name, content in deploy_sync.manifest_files(root).items()}


# the manifests are rendered from the chart, so they come after the chart's rules copies are written
STAGES = (Stage("docs", _docs), Stage("alerts", _alerts), Stage("dashboards", _dashboards),
          Stage("deploy", _deploy_copies), Stage("manifests", _manifests))


def check_root(root: Path) -> None:
    missing = [p for p in (SLO_SPEC, deploy_sync.CHART_DIR) if not (root / p).exists()]
    if missing:
        raise NotACheckout(f"{root}: not an npuobs checkout (no {', '.join(map(str, missing))}); "
                           "run from the repository root or pass --root")


def _owned_dirs() -> tuple[Path, ...]:
    """Directories whose every file is generated: a file there that no stage writes is stale too."""
    return (ALERTS_DIR, deploy_sync.MANIFESTS_DIR)


def stale(root: Path) -> list[Path]:
    """Generated files that are missing, differ from a fresh render, or are left over (relative paths)."""
    check_root(root)
    expected: dict[Path, str] = {}
    out: list[Path] = []
    for stage in STAGES:
        files = stage.files(root)
        expected.update(files)
        out += [p for p, content in files.items()
                if not (root / p).is_file() or (root / p).read_text(encoding="utf-8") != content]
    for folder in _owned_dirs():
        out += sorted(p.relative_to(root) for p in (root / folder).glob("*.yaml")
                      if p.relative_to(root) not in expected)
    return out


def write(root: Path) -> list[Path]:
    """Write every generated file (stage by stage) and remove leftovers; returns what changed."""
    check_root(root)
    changed: list[Path] = []
    expected: set[Path] = set()
    for stage in STAGES:
        for path, content in stage.files(root).items():
            expected.add(path)
            target = root / path
            if target.is_file() and target.read_text(encoding="utf-8") == content:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            changed.append(path)
    for folder in _owned_dirs():
        for leftover in (root / folder).glob("*.yaml"):
            if leftover.relative_to(root) not in expected:
                leftover.unlink()
                changed.append(leftover.relative_to(root))
    return changed
