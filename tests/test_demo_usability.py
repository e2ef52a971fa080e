"""The demo as a person uses it: a fresh state directory per demo, the exporter finding the only
simulated node, and the live dashboards page served without Grafana."""

from __future__ import annotations

import argparse
import stat
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from npuobs.cli.demo import fresh_state_dir
from npuobs.cli.errors import CliError
from npuobs.cli.exporter import add_arguments, build_config, sim_node
from npuobs.config import Config
from npuobs.dashboards.generate import dashboards
from npuobs.dashboards.live import LiveDashboardServer, LivePages
from npuobs.promapi import PrometheusAPI
from npuobs.simulator.fleet import Fleet, FleetConfig, NodeConfig

REPO = Path(__file__).resolve().parent.parent


def _exporter_config(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return build_config(parser.parse_args(list(argv)))


@pytest.mark.unit
def test_each_demo_gets_a_fresh_private_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUOBS_STATE_DIR", str(tmp_path / "npuobs" / "sim"))
    first, second = fresh_state_dir(), fresh_state_dir()
    assert first != second and first.parent == second.parent == tmp_path / "npuobs"
    for path in (first, second):
        assert list(path.iterdir()) == []  # nothing of an earlier demo (its faults) carries over
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.unit
def test_exporter_picks_the_only_simulated_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    one = tmp_path / "one"
    Fleet(FleetConfig.single_node(1, node="solo"), one).run(1)
    assert sim_node(_exporter_config("--backend", "sim", "--state-dir", str(one)), explicit=False).node == "solo"
    # a node named on purpose is kept, whatever the state directory holds
    named = _exporter_config("--backend", "sim", "--state-dir", str(one), "--node", "other")
    assert sim_node(named, explicit=True).node == "other"
    two = tmp_path / "two"
    Fleet(FleetConfig((NodeConfig("node-a", ("RNGD",)), NodeConfig("node-b", ("ATOM",)))), two).run(1)
    with pytest.raises(CliError, match=r"2 nodes \(node-a, node-b\): pick one with --node"):
        sim_node(_exporter_config("--backend", "sim", "--state-dir", str(two)), explicit=False)
    # no fleet there yet: unchanged (the backend reports it on every scrape until one starts)
    empty = _exporter_config("--backend", "sim", "--state-dir", str(tmp_path / "none"))
    assert sim_node(empty, explicit=False).node == empty.node


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return {ref.key: data for ref, data in dashboards(Config.load(REPO / "alerts" / "slo.yaml")).items()}


@pytest.mark.unit
def test_live_page_says_when_prometheus_is_unreachable(boards: dict[str, dict]) -> None:
    server = LiveDashboardServer(LivePages(PrometheusAPI("http://127.0.0.1:9", timeout=2), boards)).start()
    try:
        status, index = _get(server.url + "/")
        assert status == 200 and all(f'href="/d/{key}"' in index for key in ("executive", "oncall", "debug"))
        assert _get(server.url + "/d/nope")[0] == 404
        status, body = _get(server.url + "/d/oncall")
        assert status == 503 and "127.0.0.1:9" in body
    finally:
        server.stop()


def test_live_dashboards_draw_the_fleet_from_prometheus(fleet_stack, boards: dict[str, dict]) -> None:
    """Against the real Prometheus scraping the simulated fleet: panels carry data, drawn as SVG lines,
    stats and tables, with the alert's threshold line, and the page refreshes itself."""
    # 20 s of recorded data: the page's 8 s steps then land on points where every rate has samples
    fleet_stack.prometheus.wait_for("count_over_time(npuobs:npu_cpu_fallback:ratio_rate5m[1m]) >= 20",
                                    lambda r: len(r) > 0, timeout=90)
    server = LiveDashboardServer(LivePages(PrometheusAPI(fleet_stack.prometheus.url), boards)).start()
    try:
        status, page = _get(server.url + "/d/oncall")
    finally:
        server.stop()
    assert status == 200 and '<meta http-equiv="refresh" content="10">' in page
    assert 'class="err"' not in page, page[:2000]
    assert page.count("<polyline") >= 8  # one line per device at least on the device panels
    assert 'class="threshold"' in page  # e.g. the CPU-fallback alert's 5 % line
    assert "<b style=" in page  # stat panels (devices up ...)
    figure = page[page.index("CPU fallback ratio"):]
    figure = figure[:figure.index("</figure>")]
    assert "<polyline" in figure and "No data" not in figure
