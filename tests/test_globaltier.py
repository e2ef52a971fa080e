"""The global tier on the real engine: VictoriaMetrics + one vmagent per cluster + vmalerts + Alertmanager.

A small fleet (20 synthetic nodes replaying real exporter output, 2 clusters, 1 s scrapes): node 13
(cluster c2) replays a node whose device 0 returns incorrect outputs (F8), node 17 (c2 too) one whose
devices are all offline (F1: its requests fail, so c2's availability SLO burns). The rules run as
deployed: each cluster's vmalert evaluates the generated cluster rules over its own cluster's series,
one global vmalert the global SLO rules and the composite device-down page over the clusters' records.
c2's faults must page with ``cluster="c2"`` through the generated Alertmanager config to the PagerDuty
receiver (F1 once, as the composite ``NpuDeviceDown``), and c1 must stay quiet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import require_binary

from npuobs.alerting import conventions as cv
from npuobs.alerting import globaltier
from npuobs.dashboards.promql import builtins, panel_queries, substitute, variable_defaults
from npuobs.scale.globalstack import GLOBAL, PAGE_KEY, GlobalStack, cluster_scoped_rules
from npuobs.scale.replay import ReplayServer, plan_nodes, record
from npuobs.stack.victoriametrics import vmalert_dry_run

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
FAULTY = 13  # node-0013, in c2 (nodes 11-20): F8
DOWN = 17  # node-0017, in c2: F1


@pytest.fixture(scope="module")
def binaries() -> None:
    for name in ("victoria-metrics", "vmagent", "vmalert"):
        require_binary(name, install="apt-get install -y victoria-metrics")
    require_binary("alertmanager", "prometheus-alertmanager", install="apt-get install -y prometheus-alertmanager")


@pytest.fixture(scope="module")
def stack(binaries: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlobalStack]:
    recording = record(2, 30, "standard", healthy=2, faults=("F8", "F1"))
    nodes = plan_nodes(20, 2, recording, {FAULTY: "F8", DOWN: "F1"})
    with ReplayServer(recording, nodes, advance_every=1.0) as replay, \
            GlobalStack.start(replay, tmp_path_factory.mktemp("global"), scrape_interval="1s",
                              evaluation_interval="2s", group_wait="1s") as stack:
        stack.vm.wait_for(f'count(up{{job="{cv.DEFAULT_EXPORTER_JOB}"}} == 1)',
                          lambda r: bool(r) and float(r[0]["value"][1]) == 20, timeout=60)
        yield stack


def test_generated_rules_load_in_vmalert(binaries: None, tmp_path: Path) -> None:
    generated = REPO / "alerts" / "generated"
    files = [generated / f for f in (*cv.RULE_FILES, globaltier.CLUSTER_RULES_FILE, globaltier.GLOBAL_RULES_FILE)]
    result = vmalert_dry_run(files)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - record: a:b\n    expr: sum(rate(x[5m])\n")
    assert vmalert_dry_run([broken]).returncode != 0  # the check can fail


def test_fault_in_one_cluster_pages_from_the_global_tier_with_its_cluster(stack: GlobalStack) -> None:
    event = stack.sink.wait_for(lambda e: e.get("routing_key") == PAGE_KEY and e.get("event_action") == "trigger",
                                timeout=120)
    firing = event["payload"]["custom_details"]["firing"]
    assert "cluster = c2" in firing and "cluster = c1" not in firing
    assert any(f in firing for f in ("node-0013", "node-0017", "alertname = NpuAccuracyErrorBudgetBurn",
                                     "alertname = NpuAvailabilityErrorBudgetBurn")), firing
    def pages(engine: str) -> list[dict[str, Any]]:
        return [a for a in stack.vmalerts[engine].alerts() if a["labels"].get("severity") == cv.SEVERITY_PAGE
                and a["state"] == "firing"]

    # the device page comes from c2's own rule engine, labelled with its cluster once; c1's holds none
    assert pages("c2") and {a["labels"]["cluster"] for a in pages("c2")} == {"c2"}
    assert not pages("c1")
    assert all(a["labels"].get("cluster") == "c2" for a in pages(GLOBAL))


def test_each_cluster_engine_evaluates_its_own_cluster_only(stack: GlobalStack) -> None:
    """Each cluster's vmalert reads and writes one cluster: its recordings cover that cluster's devices
    (10 nodes x 2), every series in VictoriaMetrics has its cluster once (no ``exported_cluster``),
    and the global engine evaluates the global SLO rules only."""
    devices = 10 * 2
    for cluster in ("c1", "c2"):
        # each engine starts in its own slot of the interval: wait for its first evaluation over data
        deadline = time.monotonic() + 60
        while True:
            rules = {(r["name"], r["type"]): r for g in stack.vmalerts[cluster].groups() for r in g["rules"]}
            got = (rules[("npuobs:npu_device_errors:rate5m", "recording")]["lastSamples"],
                   rules[(globaltier.preagg_record("total"), "recording")]["lastSamples"])
            if got == (devices, 1) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got == (devices, 1), cluster
        assert all(r["labels"].get("cluster") == cluster for r in rules.values())
        assert {a["labels"]["cluster"] for a in stack.vmalerts[cluster].alerts()} <= {cluster}
    recorded = stack.vm.wait_for("count by (cluster) (npuobs:npu_device_errors:rate5m)",
                                 lambda r: len(r) == 2, timeout=60)
    assert {s["metric"]["cluster"]: float(s["value"][1]) for s in recorded} == {"c1": devices, "c2": devices}
    assert not stack.vm.query('count({exported_cluster!=""})')
    global_groups = {g["name"] for g in stack.vmalerts[GLOBAL].groups()}
    assert global_groups and globaltier.GROUP_CLUSTER_PREAGG not in global_groups
    assert not global_groups & {g["name"] for g in stack.vmalerts["c1"].groups()}


def test_cluster_scoped_rules_only_add_the_cluster_filter() -> None:
    generated = yaml.safe_load((REPO / "alerts" / "generated" / globaltier.CLUSTER_RULES_FILE).read_text())
    scoped = yaml.safe_load(cluster_scoped_rules(
        (REPO / "alerts" / "generated" / globaltier.CLUSTER_RULES_FILE).read_text(), "eu-1"))
    assert [g.pop("params") for g in scoped["groups"]] == [{"extra_label": ["cluster=eu-1"]}] * len(
        generated["groups"])
    assert scoped == generated


def test_global_slo_rules_read_per_cluster_preaggregations(stack: GlobalStack) -> None:
    pre = stack.vm.wait_for(globaltier.preagg_record("total"), lambda r: len(r) == 6, timeout=60)
    assert {(s["metric"]["cluster"], s["metric"]["slo"]) for s in pre} == {
        (c, s) for c in ("c1", "c2") for s in ("digits-mlp-availability", "digits-mlp-latency",
                                               "digits-mlp-accuracy")}
    ratio = stack.vm.wait_for(f'{cv.slo_error_ratio("5m")}{{sli="accuracy"}}',
                              lambda r: len(r) == 2 and any(float(s["value"][1]) > 0 for s in r), timeout=60)
    by_cluster = {s["metric"]["cluster"]: float(s["value"][1]) for s in ratio}
    assert by_cluster["c1"] == 0.0 and by_cluster["c2"] > 0  # only c2's node 13 returns wrong outputs


def test_executive_and_oncall_queries_run_at_the_global_tier(stack: GlobalStack) -> None:
    """Every executive/on-call panel query is accepted by VictoriaMetrics, and most return data there."""
    answered = with_data = 0
    for key in ("executive", "oncall"):
        board: dict[str, Any] = json.loads((REPO / "dashboards" / f"{key}.json").read_text())
        values = {**variable_defaults(board), **builtins("1m", "15m")}
        for q in panel_queries(board):
            result = stack.vm.query(substitute(q.expr, values))  # raises on a rejected query
            answered += 1
            with_data += bool(result)
    assert answered >= 30 and with_data >= answered // 2, (answered, with_data)


def test_npuobs_scale_runs_and_writes_the_report(binaries: None, tmp_path: Path) -> None:
    """The CLI end to end on a tiny fleet (the 1,000-node run is in docs/scale.md)."""
    report = tmp_path / "scale.json"
    proc = subprocess.run(  # noqa: S603 - argv list
        [sys.executable, "-m", "npuobs.cli.main", "scale", "--nodes", "6", "--clusters", "2",
         "--devices-per-node", "1", "--duration", "20s", "--interval", "5s", "--fault-node", "5",
         "--report", str(report)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "npuobs scale: [" in proc.stderr  # progress on stderr
    r = json.loads(report.read_text())
    for key in ("nodes", "devices", "profile", "active_series", "series_per_device", "samples_per_second",
                "dropped_samples", "scrape_p99_seconds", "query_p99_seconds", "rule_eval_max_seconds",
                "engine_rss_bytes", "fault_paged"):
        assert key in r, key
    assert (r["nodes"], r["devices"], r["profile"], r["targets_up"]) == (6, 6, "standard", 6)
    assert r["active_series"] > 6 * 30 and r["samples_per_second"] > 0 and r["dropped_samples"] == 0
    assert isinstance(r["fault_paged"], bool) and r["engine_rss_bytes"] > 0
    assert not r["query_errors"]
    markdown = tmp_path / "scale.md"
    assert subprocess.run([sys.executable, "-m", "npuobs.cli.main", "scale", "--nodes", "0",  # noqa: S603
                           "--report", str(markdown)], capture_output=True, timeout=60).returncode == 2


def test_compose_global_profile_configs_pass_the_real_tools(binaries: None) -> None:
    """The compose profile's vmagent scrape config and vmalert rule files, through their mounts."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert all(services[s].get("profiles") == ["global"] for s in ("victoria-metrics", "vmagent", "vmalert"))

    def host(service: str, flag: str) -> list[Path]:
        out = []
        for arg in services[service]["command"]:
            if arg.startswith(f"-{flag}="):
                path = arg.split("=", 1)[1]
                for volume in services[service]["volumes"]:
                    src, dst = volume.split(":")[:2]
                    if src.startswith(".") and path.startswith(dst):
                        out.append(REPO / src / Path(path).relative_to(dst))
        assert out, f"{service}: no mounted -{flag}"
        return out

    (scrape,) = host("vmagent", "promscrape.config")
    result = subprocess.run([require_binary("vmagent", install="apt-get install -y victoria-metrics"),  # noqa: S603
                             "-dryRun", f"-promscrape.config={scrape}"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    rules = host("vmalert", "rule")
    assert {p.name for p in rules} == {globaltier.CLUSTER_RULES_FILE, globaltier.GLOBAL_RULES_FILE}
    assert vmalert_dry_run(rules).returncode == 0
    assert "-remoteWrite.label=cluster=demo" in services["vmagent"]["command"]


def test_helm_global_tier_values_render_valid_objects(binaries: None, tmp_path: Path) -> None:
    """globalTier.cluster: the ServiceMonitor adds the cluster label, the PrometheusRule carries the cluster
    rules, a ConfigMap the global rules; every object validates offline like the default render."""
    from test_deploy_k8s import _validate

    from npuobs.deploy.chart import render_chart
    from npuobs.deploy.sync import CHART_DIR

    objects = {(o["kind"], o["metadata"]["name"]): o
               for _, o in render_chart(REPO / CHART_DIR, {"globalTier": {"cluster": "eu-1"}})}
    _validate(list(objects.values()))
    monitor = objects[("ServiceMonitor", "npuobs")]
    assert monitor["spec"]["endpoints"][0]["relabelings"] == [{"targetLabel": "cluster", "replacement": "eu-1"}]
    rule_groups = objects[("PrometheusRule", "npuobs-rules")]["spec"]["groups"]
    assert rule_groups[0]["name"] == globaltier.GROUP_CLUSTER_PREAGG
    cluster_rules, global_rules = tmp_path / "cluster.yaml", tmp_path / "global.yaml"
    cluster_rules.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    global_rules.write_text(objects[("ConfigMap", "npuobs-global-rules")]["data"]["global-rules.yaml"])
    promtool = require_binary("promtool", install="apt-get install -y prometheus")
    for path in (cluster_rules, global_rules):
        result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,  # noqa: S603
                                timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    assert vmalert_dry_run([cluster_rules, global_rules]).returncode == 0
    default = {(o["kind"], o["metadata"]["name"]) for _, o in render_chart(REPO / CHART_DIR)}
    assert ("ConfigMap", "npuobs-global-rules") not in default


def test_fleet_panels_read_recordings_of_every_cluster_at_the_global_tier(stack: GlobalStack) -> None:
    """The executive/on-call fleet panels read the fleet pre-aggregations, which each cluster's engine
    records for its own cluster: every one has both clusters' series, and every panel reading them
    returns data from VictoriaMetrics."""
    generated = yaml.safe_load((REPO / "alerts" / "generated" / globaltier.CLUSTER_RULES_FILE).read_text())
    fleet = {r["record"] for g in generated["groups"] if g["name"] == cv.GROUP_FLEET_RECORDINGS for r in g["rules"]}
    assert {cv.CLUSTER_LATENCY_BUCKETS, cv.NODE_LATENCY_BUCKETS, cv.CLUSTER_REQUESTS, cv.DEVICE_QUEUE_LENGTH} <= fleet
    for name in fleet:
        stack.vm.wait_for(f"count by (cluster) ({name})", lambda r: {s["metric"].get("cluster") for s in r}
                          == {"c1", "c2"}, timeout=60)
    reading = 0
    for key in ("executive", "oncall"):
        board: dict[str, Any] = json.loads((REPO / "dashboards" / f"{key}.json").read_text())
        values = {**variable_defaults(board), **builtins("1m", "15m")}
        for q in panel_queries(board):
            if any(name in q.expr for name in fleet):
                reading += 1
                stack.vm.wait_for(substitute(q.expr, values), timeout=60)  # raises when it stays empty
    assert reading >= 8, reading  # latency x3, throughput, successes, energy, cost, queue length


def test_device_down_while_its_slo_burns_pages_once_from_the_global_tier(stack: GlobalStack) -> None:
    """c2's engine records its down devices; the global engine joins them with c2's availability burn
    into the composite NpuDeviceDown page (device and cluster named) and holds back the SLO's own page.
    Last in the module: the page waits out its ``for:``, and the panels above need the replay still moving."""
    node = f"node-{DOWN:04d}"
    down = stack.vm.wait_for(f'{cv.DOWN_SERVING}{{window="5m"}}', lambda r: len(r) == 2, timeout=60)
    assert {(s["metric"]["cluster"], s["metric"]["node"], s["metric"]["device"]) for s in down} == {
        ("c2", node, "0"), ("c2", node, "1")}  # only the down devices, with their cluster once
    event = stack.sink.wait_for(
        lambda e: e.get("routing_key") == PAGE_KEY and e.get("event_action") == "trigger"
        and f"alertname = {cv.ALERT_DEVICE_DOWN}" in e["payload"]["custom_details"]["firing"], timeout=180)
    firing = event["payload"]["custom_details"]["firing"]
    assert f"node = {node}" in firing and "cluster = c2" in firing and "slo = digits-mlp-availability" in firing

    def firing_pages(name: str) -> list[dict[str, str]]:
        return [a["labels"] for a in stack.vmalerts[GLOBAL].alerts() if a["labels"]["alertname"] == name
                and a["labels"].get("severity") == cv.SEVERITY_PAGE and a["state"] == "firing"]

    composite = firing_pages(cv.ALERT_DEVICE_DOWN)
    assert composite and {(a["cluster"], a["node"]) for a in composite} == {("c2", node)}
    assert not firing_pages(cv.SLO_BURN_ALERTS["availability"])  # held back: the composite explains it
