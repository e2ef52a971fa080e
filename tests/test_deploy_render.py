"""The chart renderer (npuobs.deploy): Go-template semantics it must share with Helm, and the
generated deploy artifacts being current."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from npuobs.deploy import chart, sync
from npuobs.deploy.template import TemplateError

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / sync.CHART_DIR
# Values that take every branch of the chart's templates at least once, for the comparison with Helm.
VARIANTS: dict[str, tuple[dict[str, Any], chart.Release]] = {
    "defaults": ({}, chart.Release()),
    "privileged-neuron": ({"accelerators": {"neuron": {"privileged": True}}}, chart.Release()),
    "pod-attribution": ({"podResources": {"enabled": True}}, chart.Release()),
    "web-config-and-policy": ({"webConfig": {"secretName": "npuobs-web", "tls": True, "serviceMonitor": {
        "tlsConfig": {"serverName": "npuobs"},
        "basicAuth": {"username": {"name": "s", "key": "u"}, "password": {"name": "s", "key": "p"}}}},
        "networkPolicy": {"monitoringNamespace": "obs", "extraFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        "accelerators": {"neuron": {"isolated": False, "hostPaths": []}, "amd": {"privileged": True}}},
        chart.Release("fleet", "monitoring")),
    "minimal": ({"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
                 "accelerators": {"furiosa": {"enabled": False}, "amd": {"enabled": False}}},
                chart.Release("fleet", "monitoring")),
    "every-option": ({
        "image": {"tag": "1.2.3"}, "imagePullSecrets": [{"name": "regcred"}], "priorityClassName": "high",
        "maxUnavailable": "10%", "exporter": {"otlp": {"endpoint": "http://otel:4318", "protocol": "http"}},
        "serviceMonitor": {"labels": {"release": "kps"}}, "prometheusRule": {"labels": {"release": "kps"}},
        "accelerators": {"nvidia": {
            "runtimeClassName": "nvidia", "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            "hostPaths": [{"name": "drv", "path": "/run/nvidia/driver", "mountPath": "/driver"},
                          {"name": "smi", "path": "/usr/bin/nvidia-smi", "type": "File"}],
            "config": {"backend_options": {"smi_format": "csv"}}}}}, chart.Release("x", "y")),
}


def _chart(tmp_path: Path, templates: dict[str, str], values: str = "{}\n",
           files: dict[str, str] | None = None) -> Path:
    """A throwaway chart holding the given templates, values and files."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "Chart.yaml").write_text("apiVersion: v2\nname: t\nversion: 1.2.3\nappVersion: '9.9'\n")
    (tmp_path / "values.yaml").write_text(values)
    for name, text in templates.items():
        (tmp_path / "templates" / name).write_text(text)
    for name, text in (files or {}).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def _render_one(tmp_path: Path, template: str, values: str = "{}\n", **kwargs: object) -> object:
    objects = chart.render_chart(_chart(tmp_path, {"t.yaml": template}, values, **kwargs))  # type: ignore[arg-type]
    assert len(objects) == 1
    return objects[0][1]


def test_generated_deploy_artifacts_are_current() -> None:
    assert sync.stale(REPO) == [], f"stale: run `{sync.REGENERATE}` and commit"


def test_chart_rules_copy_equals_generated_prometheusrule() -> None:
    generated = yaml.safe_load((REPO / sync.GENERATED_PROMETHEUS_RULE).read_text())
    copy = yaml.safe_load((REPO / sync.CHART_RULES_FILE).read_text())
    assert copy == generated["spec"]
    rendered = [o for _, o in chart.render_chart(CHART) if o["kind"] == "PrometheusRule"]
    assert [o["spec"] for o in rendered] == [generated["spec"]]


def test_trim_markers_comments_and_release(tmp_path: Path) -> None:
    doc = _render_one(tmp_path, (
        "{{- /* a comment\n spanning lines */ -}}\n"
        "name: {{ .Release.Name }}-x   \n"
        "ns: {{ .Release.Namespace }}\n"
        "chart: {{ .Chart.Name }}-{{ .Chart.Version }}\n"
        "app: {{ .Chart.AppVersion | quote }}\n"
        "list:\n"
        "  - a\n"
        "  {{- if true }}\n"
        "  - b\n"
        "  {{- end }}\n"))
    assert doc == {"name": "npuobs-x", "ns": "npuobs", "chart": "t-1.2.3", "app": "9.9", "list": ["a", "b"]}


def test_range_over_map_is_sorted_and_sets_variables(tmp_path: Path) -> None:
    doc = _render_one(tmp_path, (
        "items:\n"
        "{{- range $k, $v := .Values.m }}\n"
        "  - {{ $k }}={{ $v.n }} in {{ $.Release.Name }}\n"
        "{{- end }}\n"
        "idx:\n"
        "{{- range $i, $x := .Values.l }}\n"
        "  - {{ $i }}:{{ . }}\n"
        "{{- end }}\n"
        "none: {{ range .Values.empty }}x{{ else }}empty{{ end }}\n"),
        values="m: {zeta: {n: 1}, alpha: {n: 2}}\nl: [p, q]\nempty: []\n")
    assert doc == {"items": ["alpha=2 in npuobs", "zeta=1 in npuobs"], "idx": ["0:p", "1:q"], "none": "empty"}


def test_include_toyaml_nindent_default_with(tmp_path: Path) -> None:
    helpers = '{{- define "t.labels" -}}\na: {{ .Release.Name }}\nb: "2"\n{{- end }}\n'
    doc = chart.render_chart(_chart(tmp_path, {"_h.tpl": helpers, "t.yaml": (
        "labels:\n"
        "  {{- include \"t.labels\" . | nindent 2 }}\n"
        "sel:\n"
        "  {{- toYaml .Values.sel | nindent 2 }}\n"
        "tag: {{ .Values.tag | default .Chart.AppVersion }}\n"
        "{{- with .Values.opt }}\n"
        "opt: {{ . }}\n"
        "{{- else }}\n"
        "opt: fallback\n"
        "{{- end }}\n"
        "either: {{ or .Values.tag .Values.sel.z }}\n"
        "neither: {{ and .Values.sel.z .Values.tag }}\n"
        "flip: {{ not .Values.tag }}\n")},
        values="sel: {z: 1, y: [1, 2]}\ntag: ''\nopt: ''\n"))
    assert doc == [("t.yaml", {"labels": {"a": "npuobs", "b": "2"}, "sel": {"y": [1, 2], "z": 1}, "tag": 9.9,
                               "opt": "fallback", "either": 1, "neither": None, "flip": True})]


def test_overrides_merge_maps_and_replace_the_rest(tmp_path: Path) -> None:
    chart_dir = _chart(tmp_path, {"t.yaml": "v: {{ toYaml .Values | nindent 2 }}\n"},
                       values="a: {x: 1, y: 2}\nl: [1, 2]\n")
    [(_, doc)] = chart.render_chart(chart_dir, {"a": {"y": 3}, "l": [9]}, chart.Release("r", "n"))
    assert doc == {"v": {"a": {"x": 1, "y": 3}, "l": [9]}}


@pytest.mark.parametrize(("template", "message"), [
    ("x: {{ .Values.missing }}\n", "value is missing"),
    ("x: {{ .Values.missing.deeper }}\n", "nil pointer"),
    ("x: {{ .Values.m }}\n", "use toYaml"),
    ("x: {{ .Values.big }}\n", "exponent form"),
    ("x: {{ upper .Values.s }}\n", "not supported"),
    ("x: {{ if .Values.s }}a{{ else if .Values.s }}b{{ end }}\n", "bare else only"),
    ("x: {{ if .Values.s }}a\n", "missing end"),
    ("x: {{ .Files.Get \"../Chart.yaml\" }}\n", "no file"),
    ("x: {{ .Values.s\n", "unterminated"),
])
def test_unsupported_or_missing_fails_loudly(tmp_path: Path, template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        chart.render_chart(_chart(tmp_path, {"t.yaml": template}, values="m: {a: 1}\ns: text\nbig: 1000000\n"))


def test_files_get_is_not_evaluated(tmp_path: Path) -> None:
    doc = _render_one(tmp_path, 'spec:\n  {{- .Files.Get "files/r.yaml" | nindent 2 }}\n',
                      files={"files/r.yaml": "summary: '{{ $labels.node }} is hot'\n"})
    assert doc == {"spec": {"summary": "{{ $labels.node }} is hot"}}


def test_check_mode_reports_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (sync.CHART_DIR, sync.SLO_SPEC.parent, sync.GENERATED_PROMETHEUS_RULE.parent):
        src = REPO / path
        for f in src.rglob("*"):
            if f.is_file():
                (tmp_path / path / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / path / f.relative_to(src)).write_bytes(f.read_bytes())
    assert sync.main(["--check", "--root", str(tmp_path)]) == 1
    assert "stale: deploy/manifests/kustomization.yaml" in capsys.readouterr().err
    sync.main(["--root", str(tmp_path)])
    assert sync.main(["--check", "--root", str(tmp_path)]) == 0
    for name in ("Chart.yaml", "values.yaml"):
        assert (tmp_path / sync.CHART_DIR / name).read_text() == (CHART / name).read_text()
    assert sorted(p.name for p in (tmp_path / sync.MANIFESTS_DIR).iterdir()) == \
        sorted(p.name for p in (REPO / sync.MANIFESTS_DIR).iterdir())


def _helm() -> Any:
    """helm-python-sdk: Helm's own Go SDK (libhelm_c, in the wheel); no helm binary installs from
    the registries. Missing: skip locally, fail under CI=true (like the other real-tool tests)."""
    try:
        import helm_python
    except ImportError:
        message = "helm-python-sdk is not installed; install it with: pip install helm-python-sdk"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return helm_python


@pytest.mark.integration  # Helm v4's real template engine (helm-python-sdk's native library)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_real_helm_renders_the_same_objects(variant: str) -> None:
    """The subset interpreter and Helm v4's template engine agree, object for object."""
    helm = _helm()
    overrides, release = VARIANTS[variant]
    rendered = helm.Chart.load(CHART).render(overrides, name=release.name, namespace=release.namespace)
    by_helm = {(o["kind"], o["metadata"]["name"]): o
               for text in rendered.values() for o in yaml.safe_load_all(text) if o}
    ours = {(o["kind"], o["metadata"]["name"]): o for _, o in chart.render_chart(CHART, overrides, release)}
    assert sorted(ours) == sorted(by_helm)
    for key, obj in ours.items():
        assert obj == by_helm[key], key


def test_helm_lint_strict_is_clean() -> None:
    report = _helm().lint(CHART, strict=True, kube_version="v1.33.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # info ("icon is recommended") only
