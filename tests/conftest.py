"""Shared pytest fixtures (real Prometheus-stack binaries, one running Prometheus / Alertmanager, a
simulated fleet) and the rule that gives every test exactly one kind: unit, integration or fleet.

A missing binary skips the tests that need it locally (with the install command) but fails them
when ``CI=true``, so CI can never go green by silently skipping the real-tool tests.

Test kinds (``pytest -m unit`` runs the fast ones alone in under a minute):

- a module or test that declares its kind (``pytestmark = pytest.mark.integration``, or a marker
  on the test) keeps it; a test with two kinds is a collection error;
- otherwise the fixtures decide: one of ``FLEET_FIXTURES`` makes it ``fleet``, one of
  ``INTEGRATION_FIXTURES`` ``integration``, none ``unit``;
- a test declared ``unit`` that uses a real-binary or fleet fixture is a collection error, so the
  unit run cannot quietly start Prometheus.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from npuobs.stack import AlertmanagerServer, PrometheusServer, find_binary, free_port, scrape_config

REPO_ROOT = Path(__file__).resolve().parent.parent

KINDS = ("unit", "integration", "fleet")
# Fixtures that start or need real binaries/servers, and those that run a wall-clock fleet.
INTEGRATION_FIXTURES = frozenset({"promtool_bin", "prometheus_bin", "alertmanager_bin", "amtool_bin",
                                  "prometheus_server", "alertmanager_server"})
FLEET_FIXTURES = frozenset({"fleet_stack"})


def kind_of(item: pytest.Item) -> str:
    """The kind of one test: its declared kind marker, else what its fixtures imply."""
    declared = sorted({m.name for m in item.iter_markers() if m.name in KINDS})
    if len(declared) > 1:
        raise pytest.UsageError(f"{item.nodeid}: marked {' and '.join(declared)}; a test has one kind "
                                "(drop the module's pytestmark and mark the tests one by one)")
    fixtures = set(getattr(item, "fixturenames", ()))
    heavy = fixtures & (INTEGRATION_FIXTURES | FLEET_FIXTURES)
    if declared == ["unit"] and heavy:
        raise pytest.UsageError(f"{item.nodeid}: marked unit but uses {', '.join(sorted(heavy))}")
    if declared:
        return declared[0]
    if fixtures & FLEET_FIXTURES:
        return "fleet"
    if fixtures & INTEGRATION_FIXTURES:
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test exactly one kind marker (see the module docstring)."""
    for item in items:
        kind = kind_of(item)
        if item.get_closest_marker(kind) is None:
            item.add_marker(kind)


def require_binary(name: str, *alternatives: str, install: str) -> str:
    """Path of the binary; otherwise fail under CI=true, skip elsewhere, naming the install command."""
    path = find_binary(name, *alternatives)
    if path:
        return path
    message = f"{name} not found on PATH; install it with: {install}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default 2-node demo fleet run for 5 virtual seconds, its published state left in place.

    Session-wide and read-only: tests that read a simulated fleet through a backend or an exporter
    share it; a test that injects faults or changes files builds its own fleet instead.
    """
    from npuobs.simulator.fleet import Fleet, FleetConfig

    state = tmp_path_factory.mktemp("sim")
    Fleet(FleetConfig.default(), state).run(5)
    return state


@pytest.fixture(scope="session")
def quantized():  # -> npuobs.simulator.model.QuantizedModel (frozen: safe to share)
    """The simulator's INT8 model, trained and calibrated once for the session."""
    from npuobs.simulator.model import QuantizedModel, load_dataset, train_fp32

    return QuantizedModel.from_fp32(train_fp32(), load_dataset().x_calib)


@pytest.fixture(scope="session")
def promtool_bin() -> str:
    return require_binary("promtool", install="apt-get install -y prometheus")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return require_binary("prometheus", install="apt-get install -y prometheus")


@pytest.fixture(scope="session")
def alertmanager_bin() -> str:
    return require_binary("alertmanager", "prometheus-alertmanager",
                          install="apt-get install -y prometheus-alertmanager")


@pytest.fixture(scope="session")
def amtool_bin() -> str:
    return require_binary("amtool", install="apt-get install -y prometheus-alertmanager")


@pytest.fixture(scope="session")
def prometheus_server(prometheus_bin: str,
                      tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping itself every second (job ``prometheus``), shared by the session."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [scrape_config("prometheus", [f"127.0.0.1:{port}"], "1s")],
    }
    with PrometheusServer.start(config, tmp_path_factory.mktemp("prometheus"), port=port,
                                binary=prometheus_bin) as server:
        yield server


@pytest.fixture(scope="session")
def alertmanager_server(alertmanager_bin: str,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertmanagerServer]:
    """A real Alertmanager (clustering off) whose only receiver drops everything, shared by the session."""
    config = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    workdir = tmp_path_factory.mktemp("alertmanager")
    with AlertmanagerServer.start(config, workdir, binary=alertmanager_bin) as server:
        yield server


# --- fleet_stack: a simulated fleet, one exporter per node, and a real Prometheus scraping them ---------


class FleetStack:
    """What ``fleet_stack`` yields: the running fleet, its exporters and the Prometheus scraping them.

    ``state_dir`` and ``fleet`` are the simulator's; ``exporter_urls`` maps node -> base URL;
    ``prometheus`` scrapes every exporter each second (job ``npuobs``) and evaluates the committed
    rules; ``inject``/``clear`` drive faults (the virtual clock runs at wall-clock speed); ``runner`` is the
    underlying :class:`npuobs.stack.fleetrun.FleetRunner` (``restart_exporter(node)`` and more).
    """

    def __init__(self, runner, prometheus: PrometheusServer) -> None:
        self.runner = runner
        self.prometheus = prometheus

    @property
    def state_dir(self) -> Path:
        return self.runner.state_dir

    @property
    def fleet(self):
        return self.runner.fleet

    @property
    def exporter_urls(self) -> dict[str, str]:
        return self.runner.exporter_urls

    def inject(self, kind: str, node: str = "", device: str = "", duration: float | None = None, reason: str = ""):
        return self.runner.inject(kind, node=node, device=device, duration=duration, reason=reason)

    def clear(self, kind: str | None = None, node: str = "", device: str = ""):
        return self.runner.clear(kind=kind, node=node, device=device)


def committed_rule_files() -> list[Path]:
    """The generated recording rules and alerts (``alerts/generated/*-rules.yaml``, ``*-alerts.yaml``)."""
    generated = REPO_ROOT / "alerts" / "generated"
    return sorted([*generated.glob("*-rules.yaml"), *generated.glob("*-alerts.yaml")])


@pytest.fixture(scope="session")
def fleet_stack(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    """The default 2-node fleet at real-time speed (1 s ticks), an exporter per node sampling every
    second, and a real Prometheus scraping them every second; yielded once every target is up."""
    from npuobs.stack.fleetrun import FleetRunner

    runner = FleetRunner(tmp_path_factory.mktemp("fleet-state"), interval=1.0).start()
    try:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [scrape_config("npuobs", runner.targets.values(), "1s")],
        }
        with PrometheusServer.start(config, tmp_path_factory.mktemp("fleet-prometheus"),
                                    rule_files=committed_rule_files(), binary=prometheus_bin) as prometheus:
            expected = len(runner.targets)
            prometheus.wait_for('up{job="npuobs"} == 1', lambda r: len(r) == expected, timeout=30)
            yield FleetStack(runner, prometheus)
    finally:
        runner.stop()
