"""Keep every deploy artifact in sync with its source: ``python -m npuobs.deploy [--check]``.

The Helm chart is the single source of truth for every deploy artifact (it is rendered without
Helm by ``npuobs.deploy.chart``); the alert rules and the Alertmanager config are generated from
the SLO spec (``npuobs.alerting``). ``npuobs generate`` runs this along with every other generator.

``python -m npuobs.deploy`` (re)writes, from their sources:

- ``deploy/helm/npuobs/files/prometheus-rules.yaml``: the ``spec`` of the generated
  ``alerts/generated/prometheusrule.yaml`` (the chart's PrometheusRule embeds it with ``.Files.Get``);
- ``deploy/compose/alertmanager.yml``: the generated Alertmanager config with the PagerDuty URL
  pointed at the compose stack's sink;
- ``deploy/manifests/``: the chart rendered for its default values, one object per file, plus a
  Namespace and a ``kustomization.yaml``.

``--check`` writes nothing and exits 1 when any of those is stale (the tests do the same).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import AlertmanagerOptions
from npuobs.alerting.generate import dump_yaml, render
from npuobs.config import Config
from npuobs.deploy.chart import NAMESPACE, RELEASE_NAME, render_chart
from npuobs.deploy.template import TemplateError

CHART_DIR = Path("deploy/helm/npuobs")
MANIFESTS_DIR = Path("deploy/manifests")
CHART_RULES_FILE = CHART_DIR / "files" / "prometheus-rules.yaml"
# the global tier (values globalTier.cluster): cluster rules for the in-cluster Prometheus, global
# SLO rules for the global rule engine (alerts/generated/{cluster,global}-rules.yaml)
CHART_CLUSTER_RULES_FILE = CHART_DIR / "files" / "cluster-rules.yaml"
CHART_GLOBAL_RULES_FILE = CHART_DIR / "files" / "global-rules.yaml"
COMPOSE_ALERTMANAGER_FILE = Path("deploy/compose/alertmanager.yml")
SLO_SPEC = Path("alerts/slo.yaml")
GENERATED_PROMETHEUS_RULE = Path("alerts/generated") / cv.PROMETHEUS_RULE_FILE

# The compose stack's PagerDuty stand-in (service ``pagerduty-sink`` in docker-compose.yml).
COMPOSE_PAGERDUTY_URL = "http://pagerduty-sink:8080/v2/enqueue"

REGENERATE = "python -m npuobs.deploy"



def chart_rules_file(root: Path) -> str:
    """The chart's copy of the generated PrometheusRule's ``spec`` (rule groups)."""
    crd = yaml.safe_load((root / GENERATED_PROMETHEUS_RULE).read_text(encoding="utf-8"))
    header = (f"# Copied from {GENERATED_PROMETHEUS_RULE} (its spec) by `{REGENERATE}`; do not edit.\n"
              f"# templates/prometheusrule.yaml embeds it with .Files.Get.\n")
    return dump_yaml(crd["spec"], header)


def chart_tier_rules_file(root: Path, name: str) -> str:
    """A copy of a generated global-tier rule file (``groups:``) for the chart."""
    doc = yaml.safe_load((root / "alerts" / "generated" / name).read_text(encoding="utf-8"))
    header = f"# Copied from alerts/generated/{name} by `{REGENERATE}`; do not edit.\n"
    return dump_yaml(doc, header)


def compose_alertmanager_config(root: Path) -> str:
    """The generated Alertmanager config, PagerDuty pointed at the compose stack's sink."""
    config = Config.load(root / SLO_SPEC, alertmanager=AlertmanagerOptions(pagerduty_url=COMPOSE_PAGERDUTY_URL))
    return render(config)[cv.ALERTMANAGER_FILE]


def namespace_object() -> dict[str, Any]:
    """The Namespace for the plain manifests (Helm users pass ``--create-namespace`` and label it).

    Pod Security ``restricted``: every default DaemonSet meets it; the one that needs a hostPath
    (neuron) runs isolated in its own ``privileged`` namespace, which the chart renders itself.
    """
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {
                "app.kubernetes.io/name": "npuobs",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            }}}


def manifest_files(root: Path) -> dict[str, str]:
    """File name -> content of ``deploy/manifests`` (default values, release ``npuobs``)."""
    header = (f"# Rendered from {CHART_DIR} (default values, release {RELEASE_NAME!r}) by `{REGENERATE}`; "
              "do not edit.\n")
    objects = [("namespace", namespace_object())] + render_chart(root / CHART_DIR)
    files: dict[str, str] = {}
    for _, obj in objects:
        name = f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        if name in files:
            raise TemplateError(f"two objects render to {name}")
        files[name] = dump_yaml(obj, header)
    # no kustomization-wide namespace: it would pull the isolated accelerators' objects (and rename
    # their Namespace) into the restricted one; every object names its namespace itself
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": list(files)}
    files["kustomization.yaml"] = dump_yaml(kustomization, header)
    return files


def expected_files(root: Path) -> dict[Path, str]:
    """Every file this module owns, relative to the repository root, with its expected content.

    The chart's rules copy comes first: rendering the manifests reads it.
    """
    return {CHART_RULES_FILE: chart_rules_file(root),
            CHART_CLUSTER_RULES_FILE: chart_tier_rules_file(root, "cluster-rules.yaml"),
            CHART_GLOBAL_RULES_FILE: chart_tier_rules_file(root, "global-rules.yaml"),
            COMPOSE_ALERTMANAGER_FILE: compose_alertmanager_config(root)}


def stale(root: Path) -> list[Path]:
    """Owned files whose content differs from what would be written (or that are missing/extra)."""
    out = [path for path, content in expected_files(root).items()
           if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != content]
    manifests = manifest_files(root)
    present = {p.name for p in (root / MANIFESTS_DIR).glob("*.yaml")}
    out += [MANIFESTS_DIR / name for name in sorted(present | set(manifests))
            if name not in manifests or name not in present
            or (root / MANIFESTS_DIR / name).read_text(encoding="utf-8") != manifests[name]]
    return out


def write_all(root: Path) -> list[Path]:
    written = []
    for path, content in expected_files(root).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content, encoding="utf-8")
        written.append(path)
    out_dir = root / MANIFESTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    manifests = manifest_files(root)
    for old in out_dir.glob("*.yaml"):
        if old.name not in manifests:
            old.unlink()
    for name, content in manifests.items():
        (out_dir / name).write_text(content, encoding="utf-8")
        written.append(MANIFESTS_DIR / name)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="repository root (default: the current directory); `npuobs generate` does this and more")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything is stale")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.root)
        for path in outdated:
            print(f"stale: {path}", file=sys.stderr)
        if outdated:
            print(f"run `{REGENERATE}` and commit the result", file=sys.stderr)
        return 1 if outdated else 0
    for path in write_all(args.root):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
