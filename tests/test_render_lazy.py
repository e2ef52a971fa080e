"""Render what is scraped, once per snapshot: formats and gzip are produced on the first scrape that
asks for them and cached; a snapshot nobody scrapes is never rendered."""

from __future__ import annotations

import gzip
import threading

import pytest
from prometheus_client.core import GaugeMetricFamily

from npuobs.exporter.render import OPENMETRICS, TEXT, RenderCache

pytestmark = pytest.mark.unit


def _families(calls: list[int]):
    def build() -> list:
        calls.append(1)
        g = GaugeMetricFamily("npu_temperature_celsius", "t", labels=["node"])
        g.add_metric(["n1"], 42.0)
        return [g]
    return build


def test_nothing_is_built_or_rendered_until_a_scrape_asks() -> None:
    calls: list[int] = []
    cache = RenderCache()
    rendered = cache.update(_families(calls))
    assert calls == [] and rendered.rendered_formats == frozenset()
    assert not rendered.is_ready(OPENMETRICS, True)
    body = rendered.body(OPENMETRICS, True)
    assert b'npu_temperature_celsius{node="n1"} 42.0' in gzip.decompress(body)
    assert rendered.rendered_formats == {OPENMETRICS} and rendered.is_ready(OPENMETRICS, True)
    assert rendered.body(OPENMETRICS, True) is body  # cached bytes, not a second render or compression
    assert not rendered.is_ready(TEXT, False)
    assert b"# EOF" not in rendered.body(TEXT, False)
    assert calls == [1]  # the families were built once for both formats
    cache.update(_families(calls))
    assert calls == [1]  # the next snapshot, not yet scraped, cost nothing


def test_concurrent_first_scrapes_render_once() -> None:
    calls: list[int] = []
    rendered = RenderCache().update(_families(calls))
    bodies: list[bytes] = []
    threads = [threading.Thread(target=lambda: bodies.append(rendered.body(OPENMETRICS, True))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and len(set(bodies)) == 1
