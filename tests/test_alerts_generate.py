"""The alert generator: committed output is current, specs are validated, policies and periods."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from npuobs.alerting import conventions as cv
from npuobs.alerting.amconfig import ENV_ROUTING_KEY
from npuobs.alerting.burnrate import windows_for
from npuobs.alerting.generate import render
from npuobs.alerting.slo_spec import SpecError, load_spec
from npuobs.cli.main import main
from npuobs.config import Config
from npuobs.durations import format_duration, parse_duration

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "alerts" / "slo.yaml"
GENERATED = REPO / "alerts" / "generated"
UPDATE_HINT = "stale: run `npuobs alerts generate --slo alerts/slo.yaml --out alerts/generated` and commit"


def test_committed_output_is_current() -> None:
    files = render(Config(spec=load_spec(SPEC)))
    assert sorted(files) == sorted(p.name for p in GENERATED.glob("*.yaml"))
    for name, content in files.items():
        assert (GENERATED / name).read_text() == content, f"alerts/generated/{name} is {UPDATE_HINT}"


def test_cli_generate_writes_the_committed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_ROUTING_KEY.values():
        monkeypatch.delenv(var, raising=False)
    assert main(["alerts", "generate", "--slo", str(SPEC), "--out", str(tmp_path)]) == 0
    for path in GENERATED.glob("*.yaml"):
        assert (tmp_path / path.name).read_text() == path.read_text()


def test_cli_generate_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ROUTING_KEY["page"], "p" * 32)
    monkeypatch.delenv(ENV_ROUTING_KEY["ticket"], raising=False)
    assert main(["alerts", "generate", "--slo", str(SPEC), "--out", str(tmp_path), "--policy", "npu-guide",
                 "--runbook-base-url", "https://runbooks.example/npu/", "--pagerduty-url",
                 "http://127.0.0.1:9/v2/enqueue", "--routing-key-file-ticket", "/run/secrets/ticket"]) == 0
    am = yaml.safe_load((tmp_path / cv.ALERTMANAGER_FILE).read_text())
    page, ticket = (r["pagerduty_configs"][0] for r in am["receivers"])
    assert page["routing_key"] == "p" * 32 and "routing_key_file" not in page
    assert ticket["routing_key_file"] == "/run/secrets/ticket" and "routing_key" not in ticket
    assert page["url"] == ticket["url"] == "http://127.0.0.1:9/v2/enqueue"
    assert (page["severity"], ticket["severity"]) == ("critical", "warning")
    slo = (tmp_path / cv.SLO_ALERTS_FILE).read_text()
    assert "(2 * 0.001)" in slo and "(1.2 * 0.001)" in slo and "14.4" not in slo
    device_alerts = (tmp_path / cv.DEVICE_ALERTS_FILE).read_text()
    assert "https://runbooks.example/npu/runbooks/NpuDeviceDown.md" in device_alerts


def test_prometheusrule_holds_the_same_groups() -> None:
    crd = yaml.safe_load((GENERATED / cv.PROMETHEUS_RULE_FILE).read_text())
    assert (crd["apiVersion"], crd["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    groups = [g for f in cv.RULE_FILES for g in yaml.safe_load((GENERATED / f).read_text())["groups"]]
    assert crd["spec"]["groups"] == groups


def test_windows_scale_with_the_period() -> None:
    assert [(w.long, w.short) for w in windows_for("sre-workbook", "30d")] == [
        ("1h", "5m"), ("6h", "30m"), ("1d", "2h"), ("3d", "6h")]
    assert [(w.long, w.short) for w in windows_for("sre-workbook", "28d")] == [
        ("56m", "5m"), ("5h36m", "28m"), ("22h24m", "1h52m"), ("2d19h12m", "5h36m")]
    assert [(w.long, w.short) for w in windows_for("sre-workbook", "7d")][0] == ("14m", "1m")
    assert [w.factor for w in windows_for("npu-guide", "30d")] == [2.0, 1.2]


def test_durations_round_trip() -> None:
    for text in ("5m", "1h30m", "1d", "2d19h12m", "30s"):
        assert format_duration(parse_duration(text)) == text
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    return path


BASE = "version: npuobs/v1\nservice: svc\nslos:\n  - name: a\n    sli: availability\n    model: m\n"


@pytest.mark.parametrize(("extra", "message"), [
    ("    objective: 100\n", "slos[0].objective: must be > 0 and < 100"),
    ("    objective: 0\n", "slos[0].objective: must be > 0 and < 100"),
    ("    objective: high\n", "slos[0].objective: must be a number"),
    ("    objective: 99\n    period: 12h\n", "slos[0].period: must be at least 1d"),
    ("    objective: 99\n    period: month\n", "slos[0].period: not a duration"),
    ("    objective: 99\n    treshold: 1\n", "slos[0].treshold: unknown key"),
    ("    objective: 99\n    threshold_seconds: 0.1\n", "threshold_seconds: only applies to sli: latency"),
    ("    objective: 99\n    queries: {errors: 'sum(x)', total: 'sum(rate(y[{{window}}]))'}\n",
     "queries.errors: must be a PromQL string using {{window}}"),
])
def test_invalid_specs_name_file_and_key(tmp_path: Path, extra: str, message: str) -> None:
    path = _spec(tmp_path, BASE + extra)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_latency_threshold_must_be_a_bucket_edge(tmp_path: Path) -> None:
    path = _spec(tmp_path, "version: npuobs/v1\nservice: svc\nslos:\n  - name: l\n    sli: latency\n"
                           "    model: m\n    objective: 99\n    threshold_seconds: 0.2\n")
    with pytest.raises(SpecError, match="not a bucket edge"):
        load_spec(path)


def test_unreachable_burn_threshold_is_rejected(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, BASE + "    objective: 90\n"))
    with pytest.raises(SpecError, match="can never happen"):
        render(Config(spec=spec))


def test_cli_reports_spec_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _spec(tmp_path, BASE + "    objective: 100\n")
    assert main(["alerts", "generate", "--slo", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npuobs: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_custom_queries_and_other_period(tmp_path: Path, promtool_bin: str) -> None:
    path = _spec(tmp_path, """version: npuobs/v1
service: svc
slos:
  - name: custom-availability
    sli: availability
    objective: 99.5
    period: 7d
    queries:
      good: 'sum(rate(npu_inference_requests_total{outcome="success"}[{{window}}]))'
      total: 'sum(rate(npu_inference_requests_total[{{window}}]))'
""")
    out = tmp_path / "out"
    assert main(["alerts", "generate", "--slo", str(path), "--out", str(out)]) == 0
    recording = (out / cv.RECORDING_RULES_FILE).read_text()
    assert "npuobs:slo_errors_per_request:ratio_rate14m" in recording
    assert "npuobs:slo_errors_per_request:ratio_rate7d" in recording
    result = subprocess.run([promtool_bin, "check", "rules", *(str(out / f) for f in cv.RULE_FILES)],  # noqa: S603
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


OPENSLO = """apiVersion: openslo/v1
kind: SLO
metadata:
  name: digits-availability
  annotations: {npuobs.io/sli: availability, npuobs.io/model: digits-mlp}
spec:
  service: npu-inference
  budgetingMethod: Occurrences
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{target: 0.999}]
  indicator:
    metadata: {name: digits-availability}
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec: {query: 'npu_inference_requests_total{model="digits-mlp",outcome="success"}'}
        total:
          metricSource:
            type: Prometheus
            spec: {query: 'npu_inference_requests_total{model="digits-mlp"}'}
"""


def test_openslo_input(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, OPENSLO))
    (slo,) = spec.slos
    assert (spec.service, slo.name, slo.sli, slo.objective, slo.period, slo.model) == (
        "npu-inference", "digits-availability", "availability", 99.9, "28d", "digits-mlp")
    files = render(Config(spec=spec))
    assert "ratio_rate56m" in files[cv.RECORDING_RULES_FILE]
    good = 'npu_inference_requests_total{model="digits-mlp",outcome="success"}[5m]'
    assert good in files[cv.RECORDING_RULES_FILE]


def test_openslo_rejects_non_selector_queries(tmp_path: Path) -> None:
    bad = OPENSLO.replace("""query: 'npu_inference_requests_total{model="digits-mlp"}'""",
                          """query: 'sum(rate(npu_inference_requests_total[5m]))'""")
    with pytest.raises(SpecError, match=r"ratioMetric.total.metricSource.spec.query: must be a counter"):
        load_spec(_spec(tmp_path, bad))
