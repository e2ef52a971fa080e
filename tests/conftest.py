"""Shared pytest fixtures: real Prometheus-stack binaries and one running Prometheus / Alertmanager.

A missing binary skips the tests that need it locally (with the install command) but fails them
when ``CI=true``, so CI can never go green by silently skipping the real-tool tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from npuobs.stack import AlertmanagerServer, PrometheusServer, find_binary, free_port, scrape_config

REPO_ROOT = Path(__file__).resolve().parent.parent


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
