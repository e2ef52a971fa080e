"""The virtual-time soak end to end: simulated fleet -> OpenMetrics through the exporter's collectors ->
``promtool`` backfill -> real Prometheus evaluating the generated rules, with ``for:`` honoured.

Small on purpose (2 devices, 40 virtual minutes, light load) so it fits the CI budget; the 24-hour
run on the 8-device demo fleet is ``npuobs gameday --soak 24h`` (figures in docs/gameday.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.pool import ThreadPool
from pathlib import Path

import pytest

from npuobs.cli.main import main
from npuobs.gameday import record as record_module
from npuobs.gameday.promeval import AlertRule
from npuobs.gameday.report import soak_json, soak_markdown, soak_text, write_report
from npuobs.gameday.soak import SoakOptions, SoakResult, run_soak
from npuobs.simulator.fleet import FleetConfig
from npuobs.simulator.loadgen import LoadProfile

pytestmark = pytest.mark.integration  # real promtool/Prometheus and worker processes


@pytest.fixture(scope="module")
def soaked(promtool_bin: str, prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> SoakResult:
    fleet = replace(FleetConfig.single_node(2, seed=2), load=LoadProfile("diurnal", 20.0), tick_seconds=5.0)
    # blips that fail no request: on a 2-device fleet a reset or an offline blip fails half the traffic,
    # which rightly burns the availability SLO (the 8-device soak in docs/gameday.md draws every kind)
    options = SoakOptions(duration=2400, fleet=fleet, scrape_interval=15, eval_interval=30, noise=True,
                          blips_per_hour=6, blips=(("F2", 60.0), ("F7", 60.0)), quiet_start=600,
                          workers=1)
    lines: list[str] = []
    result = run_soak(options, tmp_path_factory.mktemp("soak"), keep=True, progress=lines.append)
    result.progress_lines = lines  # type: ignore[attr-defined]
    yield result
    assert result.evaluator is not None
    result.evaluator.stop()


def test_healthy_load_with_blips_pages_nobody(soaked: SoakResult) -> None:
    assert soaked.blips, "the seeded schedule should inject background blips"
    assert soaked.pages == []
    assert soaked.recording.samples > 10_000
    assert set(soaked.stage_seconds) == {"simulate+render", "backfill", "recording rules", "alert rules"}
    said = soaked.progress_lines  # type: ignore[attr-defined]
    assert said[0] == "recorded node-0 (1/1 nodes)"
    assert said[1] == f"backfilling {soaked.recording.samples:,} samples with promtool"
    assert said[-1] == "evaluating the alert rules"


def test_recording_progress_follows_the_slowest_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers start one file per block window; progress is the slowest node's latest window."""
    monkeypatch.setattr(record_module, "PROGRESS_POLL_SECONDS", 0.01)
    start, step = 1_767_225_600, record_module.BLOCK_SECONDS
    gates = {node: [threading.Event() for _ in range(3)] for node in ("node-a", "node-b")}

    def worker(node: str) -> str:
        for i, gate in enumerate(gates[node]):
            (tmp_path / f"{node}-{start + i * step}.om").touch()
            assert gate.wait(10)
        return node

    def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    lines: list[str] = []
    with ThreadPool(2) as pool:
        pending = [pool.apply_async(worker, (node,)) for node in gates]
        reporter = threading.Thread(target=record_module._report_progress,
                                    args=(pending, tmp_path, start, 3 * step, lines.append))
        reporter.start()
        for gate in gates["node-a"]:  # node-a runs to its last window; node-b sets the pace
            gate.set()
        until(lambda: len(list(tmp_path.glob("node-a-*.om"))) == 3)
        for i, gate in enumerate(gates["node-b"]):
            gate.set()
            if i < 2:
                until(lambda i=i: len(lines) == i + 1)
        reporter.join(10)
    assert lines == ["simulated 2h of 6h (33%)", "simulated 4h of 6h (67%)"]


def test_the_evaluation_is_real_a_rule_that_pages_on_healthy_data_pages(soaked: SoakResult) -> None:
    assert soaked.evaluator is not None
    rec = soaked.recording
    eager = AlertRule("TooEager", 'npu_device_up{job="npuobs"} == 1', 120, {"severity": "page"}, {}, "test")
    fired = [a for a in soaked.evaluator.evaluate(eager, rec.start, rec.end) if a.fired]
    assert sorted(a.labels["device"] for a in fired) == ["0", "1"]
    # the first scrape lands one interval in; for: 2m then holds it pending for 4 evaluations
    assert all(a.fired_at - a.active_at == 120 for a in fired)
    recorded = soaked.evaluator.prometheus.query_range(  # the backfilled recording rules are there too
        "npuobs:slo_error_budget_remaining:ratio", rec.end - 600, rec.end, 300)
    assert {s["metric"]["slo"] for s in recorded} == {"digits-mlp-availability", "digits-mlp-latency",
                                                      "digits-mlp-accuracy"}


def test_soak_reports(soaked: SoakResult, tmp_path: Path) -> None:
    text, md, doc = soak_text(soaked), soak_markdown(soaked), soak_json(soaked)
    assert text.startswith("npuobs gameday --soak: PASS (0 pages)")
    assert "0 pages" in md.splitlines()[0] and "| background blips |" in md
    write_report(tmp_path / "soak.json", md, doc)
    loaded = json.loads((tmp_path / "soak.json").read_text())
    assert loaded["passed"] is True and loaded["pages"] == 0 and len(loaded["blips"]) == len(soaked.blips)


def test_soak_cli_rejects_a_scrape_interval_off_the_tick(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gameday", "--soak", "1h", "--tick", "7", "--scrape-interval", "30s"]) == 2
    assert "multiple of --tick" in capsys.readouterr().err


def test_recording_in_worker_processes_equals_one_process(tmp_path: Path) -> None:
    """Nodes draw from their own seeded RNGs, so spreading them over processes changes no sample."""
    fleet = replace(FleetConfig.default(), load=LoadProfile("diurnal", 20.0), tick_seconds=5.0)
    fleet = replace(fleet, nodes=tuple(replace(n, devices=n.devices[:1]) for n in fleet.nodes))
    texts = []
    for workers in (1, 2):
        rec = record_module.record(fleet, 120, tmp_path / f"w{workers}", (),
                                   record_module.RecordOptions(scrape_interval=15, workers=workers))
        assert [n.node for n in rec.nodes] == ["node-a", "node-b"] and rec.samples > 1000
        # everything but the exporter's own wall-clock timing of its sample
        texts.append({f.name: [line for line in f.read_text().splitlines()
                               if not line.startswith("npuobs_collector_duration_seconds")] for f in rec.files})
    assert texts[0] == texts[1]
