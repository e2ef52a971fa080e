"""The exporter against the real Prometheus: scraped with up == 1, every schema metric queryable,
lint-free for promtool, nothing outside the schema, and reset counters that survive restarts."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from npuobs import schema
from npuobs.schema import MetricType

GOLDEN = Path(__file__).parent / "golden"


def _scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(f"{url}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
        return resp.headers["Content-Type"], resp.read().decode()


def _families(body: str, accept: str | None) -> list:
    if accept:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

        return list(om_parse(body))
    return list(text_string_to_metric_families(body))


def _empty_labels(fleet_stack, metric: str) -> set[str]:
    """Labels of ``metric`` that some exporter currently emits with an empty value."""
    empty: set[str] = set()
    for url in fleet_stack.exporter_urls.values():
        for family in _families(_scrape(url)[1], None):
            empty |= {k for s in family.samples if s.name == metric for k, v in s.labels.items() if v == ""}
    return empty


def test_prometheus_scrapes_every_exporter_up(fleet_stack) -> None:
    result = fleet_stack.prometheus.query('up{job="npuobs"}')
    assert {r["metric"]["instance"] for r in result} == set(fleet_stack.runner.targets.values())
    assert all(r["value"][1] == "1" for r in result)


def test_every_schema_metric_is_queryable(fleet_stack) -> None:
    """Each schema metric of the exporters' profile (the default, standard) returns series from Prometheus
    (histograms via _bucket), labelled as the schema says for that profile; debug-only ones are absent."""
    profile = schema.DEFAULT_PROFILE
    for spec in schema.METRICS:
        if not spec.emitted_in(profile):
            query = f"{spec.name}_bucket" if spec.type is MetricType.HISTOGRAM else spec.name
            assert not fleet_stack.prometheus.query(f'{query}{{job="npuobs"}}'), f"{spec.name} is not in {profile}"
    missing: set[str] = set()
    deadline = time.monotonic() + 20  # model loads / canary checks need a few simulated seconds
    # per-node series only (the remediation controller's counters are not an exporter's)
    pending = {m.name: m for m in schema.METRICS if m.emitted_in(profile) and "node" in m.labels}
    while pending and time.monotonic() < deadline:
        for name, spec in list(pending.items()):
            query = f"{name}_bucket" if spec.type is MetricType.HISTOGRAM else name
            result = fleet_stack.prometheus.query(f'{query}{{job="npuobs"}}')
            if result:
                expected = set(spec.labels_in(profile))
                for series in result:
                    labels = set(series["metric"]) - {"__name__", "job", "instance", "le"}
                    assert "node" in labels and labels <= expected, (name, labels)
                    # Prometheus stores a label with an empty value as no label (pod_info's claim="" for a
                    # device-plugin allocation): a schema label may be missing only when the exporters emit it empty
                    if labels != expected:
                        assert expected - labels <= _empty_labels(fleet_stack, name), (name, labels)
                del pending[name]
        if pending:
            time.sleep(0.5)
    missing = set(pending)
    assert not missing, f"schema metrics Prometheus never returned: {sorted(missing)}"


def test_nothing_emitted_that_the_schema_lacks(fleet_stack) -> None:
    allowed = schema.all_sample_names()
    for url in fleet_stack.exporter_urls.values():
        for accept in (None, "application/openmetrics-text; version=1.0.0"):
            _, body = _scrape(url, accept)
            families = _families(body, accept)
            names = {s.name for f in families for s in f.samples}
            assert names and names <= allowed, sorted(names - allowed)
            # every sample carries exactly its schema labels, empty ones included (pod_info's claim="")
            for sample in (s for f in families for s in f.samples):
                spec = schema.resolve_sample_name(sample.name)
                labels = set(sample.labels) - {"le", "quantile"}
                assert labels == set(spec.labels_in(schema.DEFAULT_PROFILE)), (sample.name, sample.labels)


def test_promtool_check_metrics_is_clean(fleet_stack, promtool_bin: str) -> None:
    _, body = _scrape(next(iter(fleet_stack.exporter_urls.values())))
    proc = subprocess.run([promtool_bin, "check", "metrics"], input=body.encode(), capture_output=True,
                          timeout=30, check=False)
    assert proc.returncode == 0 and not proc.stdout and not proc.stderr, proc.stderr.decode()


@pytest.mark.parametrize("golden", sorted(p.name for p in GOLDEN.glob("*.prom")))
def test_golden_expositions_pass_promtool_check_metrics(golden: str, promtool_bin: str) -> None:
    """The committed golden expositions (tests/test_golden_exposition.py) are lint-free too."""
    proc = subprocess.run([promtool_bin, "check", "metrics"], input=(GOLDEN / golden).read_bytes(),
                          capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0 and not proc.stdout and not proc.stderr, proc.stderr.decode()


def test_histogram_le_labels_match_the_alert_rules(fleet_stack) -> None:
    _, body = _scrape(next(iter(fleet_stack.exporter_urls.values())))
    assert 'le="0.1"' in body and 'le="+Inf"' in body and 'le="1.0"' in body


def test_reset_counter_survives_exporter_restarts_and_counts_every_reset(fleet_stack) -> None:
    """Inject resets around two exporter restarts; Prometheus sees a monotonic counter with every reset."""
    # node-a/1: other suites inject on node-b/3 in the same session
    prom, node, device, reason = fleet_stack.prometheus, "node-a", "1", "user"
    # standard (the default profile) sums resets over reason: one counter per device
    selector = f'npu_resets_total{{node="{node}",device="{device}"}}'
    start = time.time()
    before = float(prom.wait_for(selector, timeout=10)[0]["value"][1])
    injected = 0
    for _ in range(2):
        fleet_stack.inject("RESET", node=node, device=device, duration=1.5, reason=reason)
        injected += 1
        prom.wait_for(f"{selector} >= {before + injected}", timeout=15)
        fleet_stack.runner.restart_exporter(node)
    # wait until Prometheus has scraped the freshly restarted exporter
    restarted = time.time()
    prom.wait_for(f"timestamp({selector}) > {restarted + 0.5:.3f}", timeout=15)
    window = int(time.time() - start) + 3
    values = [float(v) for _, v in prom.query(f"{selector}[{window}s]")[0]["values"]]
    assert values == sorted(values), f"reset counter went backwards: {values}"
    assert values[0] == before and values[-1] == before + injected, values
    assert prom.query(f"resets({selector}[{window}s])")[0]["value"][1] == "0"
