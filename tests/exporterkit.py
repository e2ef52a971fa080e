"""Helpers shared by the exporter tests: HTTP GET, exposition parsing, readings, log capture."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from npuobs.devices.base import DeviceInfo, DeviceReading
from npuobs.exporter import logs

OPENMETRICS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                      "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")  # what Prometheus 2.42 sends


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def samples(body: bytes, openmetrics: bool = False) -> dict[tuple[str, frozenset], float]:
    parse = parse_openmetrics if openmetrics else parse_text
    return {(s.name, frozenset(s.labels.items())): s.value for f in parse(body.decode()) for s in f.samples}


def value(body: bytes, name: str, **labels: str) -> float | None:
    want = set(labels.items())
    for (n, lab), v in samples(body).items():
        if n == name and want <= set(lab):
            return v
    return None


def reading(device: str, **fields) -> DeviceReading:
    return DeviceReading(info=DeviceInfo(device=device, vendor="furiosa", model="RNGD", uuid=f"uuid-{device}"),
                         up=True, **fields)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture(name="log_stream")
def log_stream_fixture() -> Iterator[io.StringIO]:
    """The exporter's JSON log lines, captured (import this fixture into a test module to use it)."""
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield stream
    logs.configure("json")


