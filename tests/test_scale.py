"""npuobs scale, the parts that need no engine: options, node plan, replayed expositions, report parsing."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from npuobs.scale.harness import ScaleOptions, _dropped, parse_metrics, percentile
from npuobs.scale.replay import ReplayServer, node_name, plan_nodes, record

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def recording():
    return record(1, 3, "standard", healthy=2, faults=("F1",), interval=5.0)


def test_options_are_validated() -> None:
    ScaleOptions().validate()
    for bad, message in (({"clusters": 5, "nodes": 4}, "clusters"), ({"fault_node": 1001}, "fault node"),
                         ({"duration": 30.0}, "at least 4 scrape intervals"), ({"interval": 0.0}, "interval"),
                         ({"profile": "huge"}, "profile")):
        with pytest.raises(ValueError, match=message):
            ScaleOptions(**bad).validate()
    assert ScaleOptions(nodes=1000).faults[917] == "F8"


def test_nodes_split_into_contiguous_clusters_with_the_fault_where_asked(recording) -> None:
    nodes = plan_nodes(1000, 4, recording, {917: "F1"})
    assert [n.name for n in nodes[:2]] == ["node-0001", "node-0002"] and len(nodes) == 1000
    assert {n.cluster for n in nodes[:250]} == {"c1"} and {n.cluster for n in nodes[750:]} == {"c4"}
    faulty = [n for n in nodes if n.recorded == "rec-f1"]
    assert [(n.name, n.cluster) for n in faulty] == [("node-0917", "c4")]


def test_replayed_expositions_carry_the_node_and_keep_counters_monotonic(recording) -> None:
    nodes = plan_nodes(4, 2, recording, {3: "F1"})
    server = ReplayServer(recording, nodes, advance_every=1.0)  # not started: bodies only
    t0 = server._t0
    totals = []
    for step in range(4):
        body = server.body(node_name(2), now=t0 + step).decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        samples = families["npu_inference_requests"].samples
        assert {s.labels["node"] for s in samples} == {"node-0002"}
        totals.append(sum(s.value for s in samples if s.name == "npu_inference_requests_total"))
    assert totals == sorted(totals) and totals[-1] > totals[0]
    down = server.body(node_name(3), now=t0).decode()
    assert 'npu_device_up{device="0",node="node-0003",vendor=' in down and "} 0.0" in down
    configs = server.scrape_configs("c2", "npuobs", "15s")
    assert [t["labels"]["instance"] for t in configs[0]["static_configs"]] == ["node-0003", "node-0004"]


def test_engine_metrics_parsing() -> None:
    text = ('# HELP x\nvm_rows_inserted_total{type="promremotewrite"} 1200\nvm_rows_ignored_total{reason="x"} 3\n'
            'vmagent_remotewrite_packets_dropped_total 0\nvm_cache_entries{type="storage/hour_metric_ids"} 42\n')
    samples = parse_metrics(text)
    assert ("vm_cache_entries", {"type": "storage/hour_metric_ids"}, 42.0) in samples
    assert _dropped(samples) == {"vm_rows_ignored_total": 3.0}
    assert percentile([0.1, 0.2, 0.3, 1.0], 0.99) == 1.0 and percentile([0.5], 0.5) == 0.5
