"""Live proof that the dashboards show data: every panel's PromQL, taken from the committed JSON with
its template variables substituted as Grafana would, parses and returns data from a real Prometheus
scraping the simulated fleet's exporters (``fleet_stack``) with the generated rules loaded.

This module runs a second Prometheus over ``fleet_stack``'s exporters rather than querying the
shared one, for two reasons that are about timing and features, not about the queries:

* the SLO budget group (30-day error ratio, budget remaining) is evaluated every 5 minutes in
  production, and its first evaluation comes up to 5 minutes after Prometheus starts; here every
  group runs at the 1 s evaluation interval (the expressions are the committed ones);
* exemplars need ``--enable-feature=exemplar-storage``, which the shared server does not enable.

The shared server is still used to show every query parses with the production rule files as-is.

The executive and on-call dashboards are checked against the exporters' default profile
(standard), the debug dashboard against a second set of exporters over the same simulated fleet
running ``--profile debug`` (its per-device drill-down needs that profile's series) and scraped
by a Prometheus of its own.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from npuobs.alerting import conventions as cv
from npuobs.dashboards.panels import DASHBOARDS
from npuobs.dashboards.promql import PanelQuery, builtins, panel_queries, substitute, variable_defaults
from npuobs.dashboards.queries import RECORD_LABELS
from npuobs.dashboards.snapshot import PrometheusAPI, Settings, snapshot
from npuobs.exporter import Exporter, ExporterConfig
from npuobs.stack import PrometheusServer, scrape_config
from npuobs.stack.proc import StackError

REPO = Path(__file__).resolve().parent.parent
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval for a 15 s scrape; >= 4 scrapes at this stack's 1 s too
DATA_DEADLINE = 45.0
DOWN_NODE, DOWN_DEVICE = "node-b", "3"  # F1 here makes NpuDeviceDown pend: the alerts table gets a row
ONE_DEVICE = {"node": "node-a", "device": "0", "vendor": "furiosa", "model": "digits-mlp"}


def _rules_at_test_speed(out: Path) -> list[Path]:
    """The committed rule files with per-group intervals dropped (all groups at the global 1 s)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    generated = REPO / "alerts" / "generated"
    for name in cv.RULE_FILES:
        doc = yaml.safe_load((generated / name).read_text())
        for group in doc["groups"]:
            group.pop("interval", None)
        (out / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(out / name)
    return paths


@contextlib.contextmanager
def _prometheus(targets: list[str], workdir: Path, prometheus_bin: str) -> Iterator[PrometheusServer]:
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [scrape_config(cv.DEFAULT_EXPORTER_JOB, targets, "1s")]}
    with PrometheusServer.start(config, workdir, rule_files=_rules_at_test_speed(workdir / "rules"),
                                extra_args=["--enable-feature=exemplar-storage"], binary=prometheus_bin) as prom:
        prom.wait_for(f'up{{job="{cv.DEFAULT_EXPORTER_JOB}"}} == 1', lambda r: len(r) == len(targets), timeout=30)
        yield prom


@pytest.fixture(scope="module")
def dashboard_prometheus(fleet_stack: Any, prometheus_bin: str,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Scrapes the shared fleet's exporters (standard profile): for the executive and on-call boards."""
    with _prometheus(list(fleet_stack.runner.targets.values()), tmp_path_factory.mktemp("dashboards-prometheus"),
                     prometheus_bin) as prom:
        yield prom


@pytest.fixture(scope="module")
def debug_prometheus(fleet_stack: Any, prometheus_bin: str,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Debug-profile exporters over the same fleet state, and a Prometheus of their own: for the debug board."""
    runner = fleet_stack.runner
    with contextlib.ExitStack() as stack:
        exporters = [stack.enter_context(Exporter(ExporterConfig(
            backend="sim", node=node, state_dir=runner.state_dir, listen="127.0.0.1:0", interval=runner.interval,
            profile="debug")).start()) for node in runner.nodes]
        targets = [e.url.removeprefix("http://") for e in exporters]
        yield stack.enter_context(_prometheus(targets, tmp_path_factory.mktemp("debug-prometheus"), prometheus_bin))


@pytest.fixture(scope="module")
def device_down(fleet_stack: Any) -> Iterator[None]:
    fleet_stack.inject("F1", node=DOWN_NODE, device=DOWN_DEVICE, duration=120)
    try:
        yield
    finally:
        fleet_stack.clear("F1", node=DOWN_NODE, device=DOWN_DEVICE)


@pytest.fixture(scope="module")
def boards() -> list[dict[str, Any]]:
    """The committed dashboards (test_dashboards.py proves they equal the generator's output)."""
    return [json.loads((REPO / "dashboards" / ref.filename).read_text()) for ref in DASHBOARDS]


def _queries(boards: list[dict[str, Any]], chosen: Mapping[str, str]) -> dict[PanelQuery, str]:
    out = {}
    for board in boards:
        values = {**variable_defaults(board), **builtins(RATE_INTERVAL, "15m")}
        values.update({k: v for k, v in chosen.items() if k in values})
        out.update({q: substitute(q.expr, values) for q in panel_queries(board)})
    return out


def _until_all_return_data(prom: PrometheusServer, queries: dict[PanelQuery, str]) -> list[str]:
    """Poll until every query has a result; a query Prometheus rejects fails at once. Returns what is
    still empty at the deadline."""
    deadline = time.monotonic() + DATA_DEADLINE
    pending = dict(queries)
    while True:
        for q, expr in list(pending.items()):
            try:
                if prom.query(expr):
                    del pending[q]
            except StackError as exc:
                pytest.fail(f"{q.where}: Prometheus rejects the query: {exc}\n{expr}")
        if not pending or time.monotonic() > deadline:
            return [f"{q.where}: no data\n    {expr}" for q, expr in pending.items()]
        time.sleep(1)


def test_every_panel_query_returns_data(dashboard_prometheus: PrometheusServer, debug_prometheus: PrometheusServer,
                                        device_down: None, boards: list[dict[str, Any]]) -> None:
    executive, oncall, debug = boards
    queries = _queries([executive, oncall], {})
    assert len(queries) + len(_queries([debug], {})) >= 60
    assert _until_all_return_data(dashboard_prometheus, queries) == []
    assert _until_all_return_data(debug_prometheus, _queries([debug], {})) == []


def test_panel_queries_with_one_device_selected(dashboard_prometheus: PrometheusServer,
                                                debug_prometheus: PrometheusServer, device_down: None,
                                                boards: list[dict[str, Any]]) -> None:
    """Picking a node, device, vendor and model narrows the panels without emptying any of them."""
    executive, oncall, debug = boards
    queries = _queries([executive, oncall], ONE_DEVICE)
    assert any('node=~"node-a"' in expr for expr in queries.values())
    assert _until_all_return_data(dashboard_prometheus, queries) == []
    queries = _queries([debug], ONE_DEVICE)
    assert _until_all_return_data(debug_prometheus, queries) == []
    p99 = next(e for q, e in queries.items() if q.panel_title == "p99 latency per tenant")
    assert {(s["metric"]["node"], s["metric"]["device"]) for s in debug_prometheus.query(p99)} == {("node-a", "0")}


def test_every_query_parses_on_the_shared_fleet_prometheus(fleet_stack: Any, boards: list[dict[str, Any]]) -> None:
    for q, expr in _queries(boards, {}).items():
        try:
            fleet_stack.prometheus.query(expr)
        except StackError as exc:
            pytest.fail(f"{q.where}: {exc}")


def test_recording_rules_carry_the_labels_the_filters_assume(debug_prometheus: PrometheusServer) -> None:
    expected = {**RECORD_LABELS, cv.SLO_ERROR_BUDGET_REMAINING: cv.SLO_LABELS,
                cv.slo_error_ratio("5m"): cv.SLO_LABELS}
    for name, labels in expected.items():
        result = debug_prometheus.wait_for(name, timeout=DATA_DEADLINE)
        for series in result:
            # cluster is the scraper's external label: this single Prometheus has none (the filter's .* matches)
            assert set(labels) - {"cluster"} <= set(series["metric"]), (name, series["metric"])


def test_latency_exemplars_carry_trace_ids(debug_prometheus: PrometheusServer,
                                           boards: list[dict[str, Any]]) -> None:
    exemplar_queries = [(q, e) for q, e in _queries(boards, {}).items() if q.exemplar]
    assert [q.panel_title for q, _ in exemplar_queries] == ["Latency p50 / p99 with exemplars"]
    expr = exemplar_queries[0][1]
    deadline = time.monotonic() + DATA_DEADLINE
    while True:
        now = time.time()
        params = urllib.parse.urlencode({"query": expr, "start": f"{now - 120:.3f}", "end": f"{now:.3f}"})
        with urllib.request.urlopen(f"{debug_prometheus.url}/api/v1/query_exemplars?{params}",  # noqa: S310
                                    timeout=10) as resp:
            data = json.load(resp)["data"]
        trace_ids = {e["labels"].get("trace_id") for series in data for e in series["exemplars"]}
        if trace_ids or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert trace_ids and all(re.fullmatch(r"[0-9a-f]{32}", t or "") for t in trace_ids)


def test_snapshot_of_live_data(dashboard_prometheus: PrometheusServer, device_down: None,
                               boards: list[dict[str, Any]], tmp_path: Path) -> None:
    executive = boards[0]
    _until_all_return_data(dashboard_prometheus, _queries([executive], {}))
    written = snapshot(PrometheusAPI(dashboard_prometheus.url), [executive], tmp_path,
                       Settings(minutes=1, rate_interval=RATE_INTERVAL, dpi=50))
    page = (tmp_path / "index.html").read_text()
    assert written[0] == tmp_path / "executive.png" and written[0].stat().st_size > 20_000
    assert 'class="err"' not in page
    assert "No data" not in page
    for panel in executive["panels"]:
        assert panel["title"] in page
