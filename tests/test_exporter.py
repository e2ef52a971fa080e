"""The exporter in-process: routes, content negotiation, exemplars, and every failure behaviour
(hung, raising and garbage backends, vanished devices, absent readings) with scrapes still 200."""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from pathlib import Path

from exporterkit import OPENMETRICS_ACCEPT, get, log_stream_fixture, reading, samples, value, wait_until

from npuobs.devices import registry
from npuobs.devices.base import (
    BackendError,
    DeviceBackend,
    DeviceInfo,
    Histogram,
    Snapshot,
    WorkloadReading,
)
from npuobs.exporter import Exporter, ExporterConfig
from npuobs.exporter.families import workload
from npuobs.exporter.render import OPENMETRICS, TEXT, negotiate
from npuobs.schema import LATENCY_BUCKETS
from npuobs.simulator.fleet import Fleet, FleetConfig
from npuobs.simulator.state import device_file

__all__ = ["log_stream_fixture"]  # the log_stream fixture, used by name


class StaticBackend(DeviceBackend):
    """Returns the snapshot it was built with, every time."""

    name = "static"

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def discover(self) -> tuple[DeviceInfo, ...]:
        return tuple(d.info for d in self.snapshot.devices)

    def sample(self) -> Snapshot:
        return self.snapshot


def config(**kw) -> ExporterConfig:
    return ExporterConfig(**{"backend": "sim", "node": "node-a", "listen": "127.0.0.1:0", "interval": 0.2, **kw})


# --- routes and formats ----------------------------------------------------------------------------


def test_routes_and_content_negotiation(sim_state: Path) -> None:
    # one sample for the whole test: the plain and the gzipped body are compared byte for byte
    with Exporter(config(state_dir=sim_state, interval=60)).start() as exp:
        assert exp.ready
        status, headers, text = get(f"{exp.url}/metrics")
        assert status == 200 and headers["Content-Type"] == TEXT
        assert b"# EOF" not in text
        status, headers, om = get(f"{exp.url}/metrics", {"Accept": OPENMETRICS_ACCEPT})
        assert status == 200 and headers["Content-Type"] == OPENMETRICS
        assert om.rstrip().endswith(b"# EOF")
        assert samples(om, openmetrics=True)  # parses as OpenMetrics
        status, headers, zipped = get(f"{exp.url}/metrics", {"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == text
        assert get(f"{exp.url}/healthz")[0] == 200
        assert get(f"{exp.url}/ready")[0] == 200
        status, headers, page = get(f"{exp.url}/")
        assert status == 200 and b'href="/metrics"' in page and b"node-a" in page
        assert get(f"{exp.url}/nope")[0] == 404
        info = value(text, "npu_device_info", device="0")
        assert info == 1.0


def test_scrapes_serve_bytes_rendered_once_per_sample(sim_state: Path) -> None:
    with Exporter(config(state_dir=sim_state, interval=60)).start() as exp:
        rendered = exp.cache.current
        bodies = {get(f"{exp.url}/metrics")[2] for _ in range(5)}
        assert len(bodies) == 1 and exp.cache.current is rendered and rendered.sequence == 1
        assert bodies == {rendered.body(TEXT, gzip_ok=False)}


def test_negotiate() -> None:
    assert negotiate(None) == TEXT
    assert negotiate("*/*") == TEXT
    assert negotiate("text/plain;version=0.0.4") == TEXT
    assert negotiate(OPENMETRICS_ACCEPT) == OPENMETRICS


def _workload_with_exemplar() -> WorkloadReading:
    counts = tuple((b, i) for i, b in enumerate((*LATENCY_BUCKETS, float("inf"))))
    return WorkloadReading(device="0", model="m", tenant="t", latency=Histogram(counts, 1.0),
                           requests_total={"success": 1}, queue_length=0, latency_exemplar=("abc", 0.07))


def test_exemplars_only_in_openmetrics() -> None:
    snap = Snapshot("static", time.time(), (reading("0"),), (_workload_with_exemplar(),))
    with Exporter(config(backend="static"), backend=StaticBackend(snap)).start() as exp:
        text = get(f"{exp.url}/metrics")[2]
        om = get(f"{exp.url}/metrics", {"Accept": OPENMETRICS_ACCEPT})[2]
    assert b"trace_id" not in text
    [line] = [x for x in om.decode().splitlines() if "trace_id" in x]
    assert line.startswith("npu_inference_latency_seconds_bucket{") and 'le="0.1"' in line
    assert line.endswith('# {trace_id="abc"} 0.07')


def test_exemplar_sits_on_the_bucket_containing_its_latency() -> None:
    w = _workload_with_exemplar()
    [hist] = [f for f in workload.build("n", Snapshot("x", 0.0, (), (w,))) if f.type == "histogram"]
    with_exemplar = [s for s in hist.samples if s.exemplar is not None]
    assert [(s.labels["le"], s.exemplar.labels, s.exemplar.value) for s in with_exemplar] == \
        [("0.1", {"trace_id": "abc"}, 0.07)]
    assert [s.labels["le"] for s in hist.samples if s.name.endswith("_bucket")][-1] == "+Inf"


def test_absent_readings_produce_no_series() -> None:
    backend = StaticBackend(Snapshot("static", time.time(), (reading("0", temperature_celsius=41.0),)))
    with Exporter(config(backend="static"), backend=backend).start() as exp:
        body = get(f"{exp.url}/metrics")[2]
    names = {n for n, _ in samples(body)}
    assert "npu_temperature_celsius" in names and "npu_device_up" in names
    for absent in ("npu_power_watts", "npu_device_healthy", "npu_utilization_ratio", "npu_oom_events_total"):
        assert absent not in names


# --- failures: the scrape always succeeds -------------------------------------------------------------


class HangingBackend(DeviceBackend):
    """Answers once, then hangs in sample() until released (a wedged driver call)."""

    name = "test-hang"
    release = threading.Event()

    def __init__(self, **_: object) -> None:
        self.calls = 0

    def discover(self) -> tuple[DeviceInfo, ...]:
        return ()

    def sample(self) -> Snapshot:
        self.calls += 1
        if self.calls > 1:
            self.release.wait(30)
        return Snapshot.now(self.name, (reading("0", temperature_celsius=40.0),))


class RaisingBackend(DeviceBackend):
    name = "test-raise"

    def __init__(self, **_: object) -> None:
        pass

    def discover(self) -> tuple[DeviceInfo, ...]:
        raise BackendError("test-raise: tool exited 1: device busy")

    def sample(self) -> Snapshot:
        raise BackendError("test-raise: tool exited 1: device busy")


registry.register("test-hang")(HangingBackend)
registry.register("test-raise")(RaisingBackend)


def test_hung_backend_never_blocks_a_scrape(log_stream: io.StringIO) -> None:
    HangingBackend.release.clear()
    exp = Exporter(config(backend="test-hang", interval=0.3, sample_timeout=0.2)).start()
    try:
        assert value(get(f"{exp.url}/metrics")[2], "npuobs_collector_success", collector="test-hang") == 1.0
        wait_until(lambda: exp.statuses["test-hang"].errors_total >= 3)
        threads_before = threading.active_count()
        for _ in range(5):
            t0 = time.monotonic()
            status, _, body = get(f"{exp.url}/metrics", timeout=2)
            assert status == 200 and time.monotonic() - t0 < 0.5
        assert value(body, "npuobs_collector_success", collector="test-hang") == 0.0
        assert value(body, "npuobs_collector_errors_total", collector="test-hang") >= 3
        assert value(body, "npuobs_collector_last_success_timestamp_seconds", collector="test-hang") > 0
        assert value(body, "npu_temperature_celsius") is None  # no stale values while failing
        assert value(body, "npuobs_exporter_build_info") == 1.0
        wait_until(lambda: exp.statuses["test-hang"].errors_total >= 5)
        assert threading.active_count() <= threads_before + 1  # hung workers do not pile up
    finally:
        HangingBackend.release.set()
        exp.stop()
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    failures = [x for x in lines if x["msg"] == "collector sample failed"]
    assert failures and failures[0]["collector"] == "test-hang" and failures[0]["level"] == "error"
    assert "timed out after 0.2s" in failures[0]["error"]
    assert any("previous sample still running" in x["error"] for x in failures)


def test_raising_backend_fails_the_collector_not_the_scrape(log_stream: io.StringIO) -> None:
    t0 = time.monotonic()
    with Exporter(config(backend="test-raise")).start() as exp:
        assert time.monotonic() - t0 < 2  # a broken backend never stops start-up
        status, _, body = get(f"{exp.url}/metrics")
        assert get(f"{exp.url}/ready")[0] == 200
    assert status == 200
    assert value(body, "npuobs_collector_success", collector="test-raise") == 0.0
    assert value(body, "npuobs_collector_errors_total", collector="test-raise") >= 1
    assert value(body, "npuobs_collector_last_success_timestamp_seconds") is None
    line = json.loads(log_stream.getvalue().splitlines()[0])
    assert line["msg"] == "collector sample failed" and "device busy" in line["error"]


def test_garbage_device_file_marks_only_that_device(tmp_path: Path, log_stream: io.StringIO) -> None:
    Fleet(FleetConfig.single_node(3, node="n"), tmp_path).run(2)
    device_file(tmp_path, "n", "1").write_text('{"device": "1", "counters": [garbage')
    with Exporter(config(state_dir=tmp_path, node="n")).start() as exp:
        body = get(f"{exp.url}/metrics")[2]
    assert value(body, "npu_device_up", device="1") == 0.0
    assert value(body, "npu_device_up", device="0") == 1.0 and value(body, "npu_device_up", device="2") == 1.0
    assert value(body, "npu_temperature_celsius", device="0") is not None
    assert value(body, "npuobs_collector_success", collector="sim") == 0.0
    logged = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert any(x["msg"] == "device read failed" and x["device"] == "1" and "not valid JSON" in x["error"]
               for x in logged)


def test_vanished_device_keeps_only_up_zero(tmp_path: Path, log_stream: io.StringIO) -> None:
    fleet = Fleet(FleetConfig.single_node(3, node="n"), tmp_path)
    fleet.run(2)
    with Exporter(config(state_dir=tmp_path, node="n", interval=0.1)).start() as exp:
        assert value(get(f"{exp.url}/metrics")[2], "npu_device_up", device="2") == 1.0
        first = exp.cache.current.sequence
        device_file(tmp_path, "n", "2").unlink()
        wait_until(lambda: exp.cache.current.sequence >= first + 2)
        body = get(f"{exp.url}/metrics")[2]
        series_of_2 = {n for (n, lab), _ in samples(body).items() if ("device", "2") in lab}
        assert series_of_2 == {"npu_device_up"}
        assert value(body, "npu_device_up", device="2") == 0.0
        assert value(body, "npuobs_collector_success", collector="sim") == 1.0
        fleet.publish()  # the device comes back
        wait_until(lambda: value(get(f"{exp.url}/metrics")[2], "npu_device_up", device="2") == 1.0)
    logged = [json.loads(x)["msg"] for x in log_stream.getvalue().splitlines()]
    assert "device vanished" in logged


class FlakyBackend(DeviceBackend):
    """A vendor backend that answers its first ``ok_calls`` samples, then fails every one (a driver
    that went away)."""

    ok_calls = 1

    def __init__(self, **_: object) -> None:
        self.calls = 0

    def discover(self) -> tuple[DeviceInfo, ...]:
        return ()

    def sample(self) -> Snapshot:
        self.calls += 1
        if self.calls > self.ok_calls:
            raise BackendError(f"{self.name}: tool exited 1: no devices")
        return Snapshot.now(self.name, (reading("0", temperature_celsius=40.0),))


class SteadyBackend(FlakyBackend):
    name, ok_calls = "test-steady", 10**9


class FailingChildBackend(FlakyBackend):
    name = "test-flaky"


registry.register("test-flaky")(FailingChildBackend)
registry.register("test-steady")(SteadyBackend)


def test_auto_reports_its_only_child_failing() -> None:
    """Issue 15 item 5: on a one-vendor node (the common case) the vendor failing made ``auto`` 0 while
    the vendor's own collector stayed at its last value, 1. Each child is its own source now."""
    cfg = config(backend="auto", backend_options={"backends": ["test-flaky"]}, interval=0.1)
    with Exporter(cfg).start() as exp:
        wait_until(lambda: exp.statuses["test-flaky"].errors_total >= 2)
        body = get(f"{exp.url}/metrics")[2]
    assert value(body, "npuobs_collector_success", collector="test-flaky") == 0.0
    assert value(body, "npuobs_collector_errors_total", collector="test-flaky") >= 2
    assert value(body, "npuobs_collector_last_success_timestamp_seconds", collector="test-flaky") > 0
    assert value(body, "npuobs_collector_success", collector="auto") == 0.0
    assert value(body, "npu_device_up") is None


def test_auto_reports_each_child_on_its_own(log_stream: io.StringIO) -> None:
    cfg = config(backend="auto", backend_options={"backends": ["test-steady", "test-flaky"]}, interval=0.1)
    with Exporter(cfg).start() as exp:
        wait_until(lambda: exp.statuses["test-flaky"].errors_total >= 2)
        body = get(f"{exp.url}/metrics")[2]
    assert value(body, "npuobs_collector_success", collector="test-flaky") == 0.0
    assert value(body, "npuobs_collector_success", collector="test-steady") == 1.0
    assert value(body, "npuobs_collector_success", collector="auto") == 1.0  # the steady child still reports
    assert value(body, "npu_device_up", device="test-steady:0") == 1.0
    assert value(body, "npuobs_collector_duration_seconds", collector="test-steady") >= 0
    logged = [json.loads(x) for x in log_stream.getvalue().splitlines()]
    assert any(x["msg"] == "collector sample failed" and x["collector"] == "test-flaky"
               and "no devices" in x["error"] for x in logged)


def test_offline_device_keeps_its_counters(tmp_path: Path) -> None:
    fleet = Fleet(FleetConfig.single_node(2, node="n"), tmp_path)
    fleet.faults.inject("F1", node="n", device="1", now=fleet.clock.now)
    fleet.run(2)
    with Exporter(config(state_dir=tmp_path, node="n")).start() as exp:
        body = get(f"{exp.url}/metrics")[2]
    assert value(body, "npu_device_up", device="1") == 0.0
    assert value(body, "npu_temperature_celsius", device="1") is None
    assert value(body, "npu_errors_total", device="1", kind="timeout") is not None
