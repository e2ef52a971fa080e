"""One config: the SLO spec's ``thresholds:`` section is validated and moves alerts and dashboards together."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from npuobs.alerting import conventions as cv
from npuobs.alerting.generate import render as render_rules
from npuobs.alerting.slo_spec import SpecError, _is_duration
from npuobs.cli.main import main
from npuobs.config import Config
from npuobs.dashboards.generate import render as render_dashboards
from npuobs.thresholds import Thresholds

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def _spec_with(tmp_path: Path, thresholds: object) -> Path:
    doc = yaml.safe_load((REPO / "alerts" / "slo.yaml").read_text(encoding="utf-8"))
    doc["thresholds"] = thresholds
    path = tmp_path / "slo.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_default_config_is_the_packaged_spec_with_default_thresholds() -> None:
    config = Config.load()
    assert config.thresholds == Thresholds()
    assert config.spec.service == "npu-inference"
    assert "NpuCpuFallbackHigh" in config.known_alerts


def _other_value(name: str, default: object) -> object:
    """A valid value different from the default, for any threshold (new ones included)."""
    if name == "latency_slo_seconds":
        return 0.25  # must be a latency bucket edge
    if isinstance(default, float):
        return default / 2
    return "2h" if _is_duration(default) else "golden"


def test_every_threshold_is_overridable(tmp_path: Path) -> None:
    values = {f.name: _other_value(f.name, f.default) for f in dataclasses.fields(Thresholds)}
    config = Config.load(_spec_with(tmp_path, values))
    for name, value in values.items():
        assert getattr(config.thresholds, name) == value != getattr(Thresholds(), name)
    # the spec's built-in SLIs use the overridden canary tenant and latency threshold
    latency = next(s for s in config.spec.slos if s.sli == "latency")
    assert 'le="0.25"' in (latency.good_query or "") and 'tenant!="golden"' in latency.total_query


def test_a_threshold_moves_the_alert_and_the_dashboard_line_together(tmp_path: Path) -> None:
    config = Config.load(_spec_with(tmp_path, {"cpu_fallback_max_ratio": 0.125}))
    rules = yaml.safe_load(render_rules(config)[cv.DEVICE_ALERTS_FILE])
    (alert,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "NpuCpuFallbackHigh"]
    assert "> 0.125" in alert["expr"]
    oncall = json.loads(render_dashboards(config)["oncall.json"])
    panel = next(p for p in oncall["panels"] if p.get("title") == "CPU fallback ratio")
    assert [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None, 0.125]


@pytest.mark.parametrize(("thresholds", "message"), [
    ({"cpu_fallback_max": 0.1}, "thresholds.cpu_fallback_max: unknown key"),
    ({"cpu_fallback_max_ratio": "5%"}, "thresholds.cpu_fallback_max_ratio: must be a non-negative number"),
    ({"resets_per_hour_max": True}, "thresholds.resets_per_hour_max: must be a non-negative number"),
    ({"throttle_for": "ten minutes"}, "thresholds.throttle_for:"),
    ({"capacity_demand_lookback": "a while"}, "thresholds.capacity_demand_lookback:"),
    ({"canary_tenant": 'a"b'}, "thresholds.canary_tenant: must be a label value"),
    ({"latency_slo_seconds": 0.2}, "thresholds.latency_slo_seconds: 0.2 is not a bucket edge"),
    ([1, 2], "thresholds: must be a mapping"),
])
def test_bad_thresholds_are_one_line_errors(tmp_path: Path, thresholds: object, message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _spec_with(tmp_path, thresholds)
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        Config.load(path)
    for argv in (["alerts", "generate", "--slo", str(path), "--out", str(tmp_path / "out")],
                 ["dashboards", "generate", "--slo", str(path), "--out", str(tmp_path / "boards")],
                 ["demo", "--slo", str(path)], ["gameday", "--scenario", "F1", "--slo", str(path)],
                 ["slo", "report", "--prometheus", "http://127.0.0.1:9", "--slo", str(path)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
