"""The generated dashboards: committed copies are current, valid against Grafana's schema and the
structural check, read only schema metrics and generated records, take units from the schema and
threshold lines from thresholds.py / the burn-rate policy, and link where they should.

The live proof (every panel returns data from a real Prometheus over the simulated fleet) is in
test_dashboards_live.py.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.burnrate import POLICIES
from npuobs.alerting.generate import build_rules
from npuobs.alerting.slo_spec import load_spec
from npuobs.cli.main import main
from npuobs.config import Config
from npuobs.dashboards import executive
from npuobs.dashboards.generate import (
    DATASOURCES_FILE,
    GRAFANA_DASHBOARD_DIR,
    PROVIDERS_FILE,
    modernise,
    render,
    stale,
)
from npuobs.dashboards.generate import dashboards as build_dashboards
from npuobs.dashboards.panels import DASHBOARDS, DATASOURCE, DEBUG, EXECUTIVE, ONCALL, runbook_link
from npuobs.dashboards.panelvalues import format_value, legend
from npuobs.dashboards.promql import (
    metric_names,
    panel_queries,
    panels,
    substitute,
    variable_defaults,
)
from npuobs.dashboards.queries import DEBUG_NOTE, PROMETHEUS_SERIES, labels_of
from npuobs.dashboards.snapshot import PrometheusAPI, Settings, snapshot
from npuobs.dashboards.validate import schema_problems, structural_problems
from npuobs.schema import Profile
from npuobs.thresholds import Thresholds

REPO = Path(__file__).resolve().parent.parent
SPEC = load_spec(REPO / "alerts" / "slo.yaml")


@pytest.fixture(scope="module")
def options() -> Config:
    return Config(spec=SPEC)


@pytest.fixture(scope="module")
def boards(options: Config) -> dict[str, dict[str, Any]]:
    return {ref.key: data for ref, data in build_dashboards(options).items()}


def panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in panels(board) if p["title"] == title)


def steps(p: dict[str, Any]) -> list[float | None]:
    return [s["value"] for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


# --- committed output ------------------------------------------------------------------------------


def test_committed_dashboards_are_current(options: Config) -> None:
    files = render(options)
    assert stale(files, REPO / "dashboards") == [], \
        "dashboards/ is stale: run `npuobs dashboards generate --out dashboards` and commit the result"


def test_render_is_deterministic(options: Config) -> None:
    assert render(options) == render(Config(spec=SPEC))


def test_stable_uids_and_titles(boards: dict[str, dict[str, Any]]) -> None:
    assert {k: b["uid"] for k, b in boards.items()} == {
        "executive": "npuobs-executive", "oncall": "npuobs-oncall", "debug": "npuobs-debug"}
    for ref in DASHBOARDS:
        assert json.loads((REPO / "dashboards" / ref.filename).read_text())["uid"] == ref.uid


# --- Grafana schema and structural check ------------------------------------------------------------


@pytest.mark.parametrize("key", [d.key for d in DASHBOARDS])
def test_valid_against_grafana_dashboard_schema(boards: dict[str, dict[str, Any]], key: str) -> None:
    assert schema_problems(boards[key]) == []


def test_schema_check_rejects_what_grafana_would(boards: dict[str, dict[str, Any]], options: Config) -> None:
    # grafanalib's raw output still carries the schemaVersion-12 model: modernise() is what fixes it
    raw = json.loads(json.dumps(executive.build(options).to_json_data(), default=lambda o: o.to_json_data()))
    assert any("'rows'" in p or "'style'" in p for p in schema_problems(raw))
    broken = copy.deepcopy(boards["oncall"])
    broken["panels"][1]["gridPos"]["h"] = "8"
    broken["panels"][1]["bogus"] = True
    problems = schema_problems(broken)
    assert any("panels/1" in p for p in problems) and problems


def test_structural_check_passes_with_runbooks(boards: dict[str, dict[str, Any]]) -> None:
    assert structural_problems(boards.values(), REPO / "runbooks") == []


def _mutate(boards: dict[str, dict[str, Any]], change: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(boards)
    oncall = out["oncall"]
    target = next(p for p in oncall["panels"] if p["type"] == "timeseries")
    if change == "overlap":
        target["gridPos"] = dict(oncall["panels"][2]["gridPos"])
    elif change == "unit":
        target["fieldConfig"]["defaults"]["unit"] = "furlongs"
    elif change == "uid":
        oncall["links"][0]["url"] = "/d/npuobs-nope"
    elif change == "runbook":
        target["links"].append({"url": "https://x/runbooks/NpuNoSuchAlert.md"})
    elif change == "variable":
        target["targets"][0]["expr"] += ' + on() vector($nope)'
    elif change == "ids":
        target["id"] = oncall["panels"][2]["id"]
    elif change == "thresholds":
        target["fieldConfig"]["defaults"]["thresholds"]["steps"] = [{"color": "red", "value": 2.0},
                                                                    {"color": "green", "value": 1.0}]
    elif change == "datasource":
        target["targets"][0]["datasource"] = {"type": "prometheus", "uid": "hardcoded"}
    elif change == "refid":
        target["targets"][0]["refId"] = ""
    return list(out.values())


@pytest.mark.parametrize(("change", "message"), [
    ("overlap", "overlaps"), ("unit", "not a Grafana unit id"), ("uid", "unknown dashboard uid"),
    ("runbook", "NpuNoSuchAlert.md does not exist"), ("variable", "undefined variable $nope"),
    ("ids", "duplicate panel id"), ("thresholds", "must start at null and ascend"),
    ("datasource", "not the $datasource variable"), ("refid", "refIds must be present"),
])
def test_structural_check_catches(boards: dict[str, dict[str, Any]], change: str, message: str) -> None:
    problems = structural_problems(_mutate(boards, change), REPO / "runbooks")
    assert any(message in p for p in problems), problems


# --- metrics, labels, units ------------------------------------------------------------------------


def generated_records() -> set[str]:
    return {r.name for g in build_rules(Config(spec=SPEC)).recording for r in g.rules}


def test_every_metric_is_in_the_schema_or_a_generated_record(boards: dict[str, dict[str, Any]]) -> None:
    records = generated_records()
    exprs = [q.expr for b in boards.values() for q in panel_queries(b)]
    exprs += [re.sub(r"^label_values\((.*), \w+\)$", r"\1", v["query"])
              for b in boards.values() for v in b["templating"]["list"] if v["type"] == "query"]
    named = set().union(*(metric_names(e) for e in exprs))
    unknown = {n for n in named if schema.resolve_sample_name(n) is None and n not in records
               and n not in PROMETHEUS_SERIES}
    assert unknown == set()
    # and the dashboards cover the schema's device, workload and SLO signals broadly
    assert len({n for n in named if schema.resolve_sample_name(n)}) >= 25
    assert {cv.CPU_FALLBACK_RATIO, cv.LATENCY_P99, cv.TENANT_P99_SPREAD, cv.DEVICE_ERROR_RATE,
            cv.SLO_ERROR_BUDGET_REMAINING} <= named


def test_metric_name_extraction_on_every_generated_rule() -> None:
    records = generated_records()
    for name in ("recording-rules.yaml", "slo-alerts.yaml", "device-alerts.yaml"):
        for group in yaml.safe_load((REPO / "alerts" / "generated" / name).read_text())["groups"]:
            for rule in group["rules"]:
                for n in metric_names(rule["expr"]):
                    assert schema.resolve_sample_name(n) or n in records or n == "up", (n, rule["expr"])
    assert metric_names('sum by (node, le) (rate(a_bucket{x="}"}[5m] offset 1m)) / ignoring (p) group_left () '
                        'count without (le) (b:c:d) > 0.5 and on () vector(3.6e+06) or histogram_quantile(0.9, e)'
                        ) == {"a_bucket", "b:c:d", "e"}


_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\{([^}]*)\}")


def test_filters_only_on_labels_the_series_carry(boards: dict[str, dict[str, Any]]) -> None:
    """Executive and on-call filter by the labels the standard profile emits; debug by debug's labels,
    and a debug panel that filters by a label standard lacks says it needs the debug profile."""
    for key, b in boards.items():
        profile = Profile.DEBUG if key == "debug" else Profile.STANDARD
        for panel in panels(b):
            for q in panel_queries({"uid": b["uid"], "panels": [panel]}):
                for name, matchers in _SELECTOR.findall(q.expr):
                    cluster = {"cluster"} if schema.resolve_sample_name(name) else set()
                    allowed = set(labels_of(name, profile)) | cluster
                    on_standard = set(labels_of(name, Profile.STANDARD)) | cluster
                    for label in re.findall(r'(\w+)=~"\$\w+"', matchers):
                        assert label in allowed, f"{q.where}: {name} has no label {label}"
                        if label not in on_standard:
                            assert DEBUG_NOTE in panel.get("description", ""), \
                                f"{q.where}: filters {name} by {label} (debug only) without saying so"


def test_units_come_from_the_schema(boards: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for b in boards.values():
        for p in panels(b):
            exprs = [t["expr"] for t in p["targets"]]
            if any(op in e for e in exprs for op in ("rate(", "increase(", " / ", "count(")):
                continue
            specs = {schema.resolve_sample_name(n) for e in exprs for n in metric_names(e)}
            if None in specs or not specs or any(s.type is not schema.MetricType.GAUGE for s in specs):
                continue
            units = {s.grafana_unit for s in specs}
            if len(units) == 1 and units != {"none"}:
                assert p["fieldConfig"]["defaults"]["unit"] == units.pop(), p["title"]
                checked += 1
    assert checked >= 8  # temperature, power, memory, clocks, utilization (x3), accuracy, model load


def test_template_variables(boards: dict[str, dict[str, Any]]) -> None:
    names = {k: [v["name"] for v in b["templating"]["list"]] for k, b in boards.items()}
    assert names["executive"] == ["datasource", "cluster", "model", "cost_per_kwh", "cost_per_device_hour"]
    assert names["oncall"] == names["debug"] == ["datasource", "cluster", "node", "vendor", "device", "model"]
    for b in boards.values():
        for var in b["templating"]["list"]:
            if var["type"] == "query":  # All is .*: it also matches series without the label (no cluster)
                assert var["includeAll"] and var["allValue"] == ".*" and var["datasource"] == DATASOURCE
        for p in panels(b):
            assert p["datasource"] == DATASOURCE


# --- thresholds and links ---------------------------------------------------------------------------


def test_threshold_lines_follow_thresholds_py_and_the_policy() -> None:
    custom = Thresholds(cpu_fallback_max_ratio=0.123, latency_slo_seconds=0.25, utilization_high_ratio=0.77,
                        device_error_rate_max_per_second=0.5, resets_per_hour_max=7, tenant_latency_spread_max=4.5,
                        accuracy_delta_max_ratio=0.031, temperature_margin_celsius=9)
    config = Config(spec=replace(SPEC, thresholds=custom), policy="npu-guide")
    b = {r.key: d for r, d in build_dashboards(config).items()}
    assert steps(panel(b["oncall"], "CPU fallback ratio")) == [None, 0.123]
    assert steps(panel(b["oncall"], "Live p99 latency")) == [None, 0.25]
    assert steps(panel(b["oncall"], "Utilization")) == [None, 0.77]
    assert steps(panel(b["oncall"], "Device errors")) == [None, 0.5]
    assert steps(panel(b["oncall"], "Resets in the last hour")) == [None, 7]
    assert steps(panel(b["debug"], "Tenant p99 spread")) == [None, 4.5]
    assert steps(panel(b["executive"], "Accuracy delta vs FP32")) == [None, 0.031]
    assert "- 9" in panel(b["debug"], "Temperature vs throttle threshold")["targets"][2]["expr"]
    burn = [p for p in panels(b["oncall"]) if p["title"].startswith("Burn rate")]
    assert [steps(p)[1] for p in burn] == [w.factor for w in POLICIES["npu-guide"]]
    assert [p["title"] for p in burn] == ["Burn rate 1h / 5m: page above 2x", "Burn rate 1d / 2h: ticket above 1.2x"]


def test_burn_rate_divides_by_each_slos_budget(boards: dict[str, dict[str, Any]]) -> None:
    expr = panel(boards["oncall"], "Burn rate 1h / 5m: page above 14.4x")["targets"][0]["expr"]
    for slo in SPEC.slos:
        assert f'slo="{slo.name}"}} / {slo.error_budget:g}' in expr
    attainment = panel(boards["executive"], "SLO attainment over the SLO period (30d)")
    objectives = {o["matcher"]["options"]: o["properties"][0]["value"]["steps"][1]["value"]
                  for o in attainment["fieldConfig"]["overrides"]}
    assert objectives == {s.name: s.objective / 100 for s in SPEC.slos}


def test_runbook_and_drilldown_links(boards: dict[str, dict[str, Any]], options: Config) -> None:
    for ref, b in zip(DASHBOARDS, boards.values(), strict=True):
        assert {link["url"] for link in b["links"]} == {d.url for d in DASHBOARDS} - {ref.url}
    runbooks = {link["url"].rsplit("/", 1)[1] for p in panels(boards["oncall"]) for link in p["links"]}
    assert {"NpuDeviceDown.md", "NpuCpuFallbackHigh.md", "NpuDeviceErrorRateHigh.md", "NpuDeviceResets.md",
            "NpuOutOfMemory.md", "NpuThermalThrottling.md", "NpuLatencyErrorBudgetBurn.md"} <= runbooks
    assert all(link["url"].startswith(cv.DEFAULT_RUNBOOK_BASE_URL + "/runbooks/")
               for p in panels(boards["oncall"]) for link in p["links"])
    drill = panel(boards["oncall"], "Utilization")["fieldConfig"]["defaults"]["links"][0]["url"]
    assert drill.startswith(DEBUG.url + "?var-node=${__field.labels.node}&var-device=${__field.labels.device}")
    with pytest.raises(ValueError, match="NpuNoSuchAlert"):
        runbook_link(options, "NpuNoSuchAlert")


def test_runbook_base_url_is_configurable() -> None:
    b = build_dashboards(Config(spec=SPEC, runbook_base_url="https://wiki.example/ops"))
    urls = [link["url"] for p in panels(b[ONCALL]) for link in p["links"]]
    assert urls and all(u.startswith("https://wiki.example/ops/runbooks/") for u in urls)


def test_debug_latency_has_exemplars_and_a_configurable_trace_link() -> None:
    b = build_dashboards(Config(spec=SPEC, trace_url="https://jaeger.example/trace/{trace_id}"))[DEBUG]
    latency = panel(b, "Latency p50 / p99 with exemplars")
    assert latency["targets"][0]["exemplar"] is True
    override = latency["fieldConfig"]["overrides"][0]
    assert override["matcher"] == {"id": "byName", "options": "trace_id", "scope": "exemplar"}
    assert override["properties"][0]["value"][0]["url"] == "https://jaeger.example/trace/${__value.raw}"


def test_cost_panel_reads_the_configurable_prices() -> None:
    b = build_dashboards(Config(spec=SPEC, cost_per_kwh=0.3, cost_per_device_hour=2.5))[EXECUTIVE]
    defaults = variable_defaults(b)
    assert (defaults["cost_per_kwh"], defaults["cost_per_device_hour"]) == ("0.3", "2.5")
    expr = panel(b, "Cost per inference")["targets"][0]["expr"]
    assert "$cost_per_kwh / 3600000" in expr and "$cost_per_device_hour / 3600" in expr


def test_provisioning(options: Config) -> None:
    files = render(options)
    datasources = yaml.safe_load(files[DATASOURCES_FILE])["datasources"]
    prometheus = next(d for d in datasources if d["type"] == "prometheus")
    assert prometheus["uid"] == options.datasource_uid == variable_defaults(json.loads(files["oncall.json"]))[
        "datasource"]
    destination = prometheus["jsonData"]["exemplarTraceIdDestinations"][0]
    assert destination["name"] == "trace_id" and "$${__value.raw}" in destination["url"]
    assert any(d["type"] == "tempo" for d in datasources)  # the default trace links open Tempo in Explore
    other = yaml.safe_load(render(Config(spec=SPEC, trace_url="https://j/trace/{trace_id}"))[DATASOURCES_FILE])
    assert [d["type"] for d in other["datasources"]] == ["prometheus"]
    provider = yaml.safe_load(files[PROVIDERS_FILE])["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == GRAFANA_DASHBOARD_DIR


def test_modernise_keeps_null_threshold_bases_only(options: Config) -> None:
    data = modernise(executive.build(options))
    text = json.dumps(data)
    assert '"span"' not in text and '"intervalFactor"' not in text and '"rows"' not in text
    assert all(v is not None for p in panels(data) for k, v in p.items())


# --- PromQL helpers and the snapshot renderer --------------------------------------------------------


def test_substitute_and_defaults(boards: dict[str, dict[str, Any]]) -> None:
    values = {**variable_defaults(boards["oncall"]), "__rate_interval": "1m"}
    assert values["node"] == ".*" and values["datasource"] == "prometheus"
    assert substitute('rate(x{node=~"$node",device=~"${device}"}[$__rate_interval])', values) == \
        'rate(x{node=~".*",device=~".*"}[1m])'
    with pytest.raises(KeyError, match=r"\$nope"):
        substitute("x{a=~\"$nope\"}", values)


@pytest.mark.parametrize(("value", "unit", "text"), [
    (0.0123, "percentunit", "1.2%"), (0.0042, "s", "4.20 ms"), (3 * 2**30, "bytes", "3.0 GiB"),
    (1.4e9, "hertz", "1.40 GHz"), (87.2, "celsius", "87.2 °C"), (8.0, "none", "8"), (1200, "reqps", "1.20 kreq/s"),
    (0.000012, "currencyUSD", "$0.000012"), (float("nan"), "s", "NaN"),
])
def test_format_value(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_legend() -> None:
    assert legend("{{node}}/{{device}} p99", {"node": "n1", "device": "0"}, "A0") == "n1/0 p99"
    assert legend("", {"node": "n1"}, "A0") == "A0"


class CannedPrometheus(PrometheusAPI):
    """Answers every query with two flat series: enough to exercise every drawing path offline."""

    def __init__(self) -> None:
        super().__init__("http://canned.invalid")

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        return [{"metric": {"node": "n1", "device": "0", "alertname": "NpuDeviceDown"}, "value": [at, "1"]}]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        points = [[start + i * step, str(0.5 + i % 3)] for i in range(int((end - start) / step))]
        return [{"metric": {"node": n, "device": "0"}, "values": points} for n in ("n1", "n2")]


def test_snapshot_renders_every_panel_kind_offline(boards: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    # one panel of each kind and style (rendering all of them is the live test's job; matplotlib is slow)
    kinds = {"Live p99 latency", "Firing alerts", "Alerts firing and pending", "Device up"}
    mini = dict(boards["oncall"], panels=[p for p in boards["oncall"]["panels"]
                                          if p["type"] == "row" or p["title"] in kinds])
    mini["panels"].append(dict(panel(boards["debug"], "Requests by outcome"), id=99,
                               gridPos={"h": 8, "w": 12, "x": 0, "y": 40}))
    written = snapshot(CannedPrometheus(), [mini], tmp_path, Settings(minutes=2, dpi=40), now=1_700_000_000)
    html = (tmp_path / "index.html").read_text()
    assert written[-1] == tmp_path / "index.html" and (tmp_path / "oncall.png").stat().st_size > 10_000
    for p in panels(mini):
        assert (tmp_path / "oncall" / f"panel-{p['id']}.png").stat().st_size > 1_000
        assert p["title"] in html


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_generate_and_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    assert main(["dashboards", "generate", "--out", str(tmp_path)]) == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        ["debug.json", "executive.json", "oncall.json", DATASOURCES_FILE, PROVIDERS_FILE])
    assert main(["dashboards", "generate", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "oncall.json").write_text("{}")
    capsys.readouterr()
    assert main(["dashboards", "generate", "--out", str(tmp_path), "--check"]) == 1
    assert "stale:" in capsys.readouterr().out
    assert main(["dashboards", "generate", "--out", "dashboards", "--check"]) == 0


def test_cli_bad_input_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(REPO)
    assert main(["dashboards", "generate", "--out", str(tmp_path), "--trace-url", "http://x/trace"]) == 2
    assert "{trace_id}" in capsys.readouterr().err
    assert main(["dashboards", "snapshot", "--prometheus", "http://127.0.0.1:9", "--out", str(tmp_path),
                 "--dashboard", "executive"]) == 2
    assert "cannot reach Prometheus" in capsys.readouterr().err
    assert main(["dashboards", "snapshot", "--prometheus", "http://x", "--out", str(tmp_path),
                 "--from", str(tmp_path / "none")]) == 2
    assert "no executive.json" in capsys.readouterr().err



def test_docs_describe_every_panel(boards: dict[str, dict[str, Any]]) -> None:
    docs = " ".join((REPO / "docs" / "dashboards.md").read_text().split())
    missing = [p["title"] for b in boards.values() for p in panels(b)
               if not p["title"].startswith("Burn rate") and f"*{p['title']}*" not in docs]
    assert missing == [], "describe these panels in docs/dashboards.md"
    assert "*Burn rate …*" in docs
