"""Run the global tier's real parts on loopback: single-node VictoriaMetrics, vmagent and vmalert.

Debian's ``victoria-metrics`` package (``apt-get install -y victoria-metrics``) ships all three.
VictoriaMetrics speaks the Prometheus query API, so :class:`VictoriaMetricsServer` is a
:class:`~npuobs.promapi.PrometheusAPI` too: tests and the scale harness query it exactly like a
Prometheus. The same configuration works against VM cluster (``vminsert``/``vmselect`` URLs),
Mimir or Thanos Receive (their remote-write and query URLs); docs/scale.md shows how.

Facts that shape the flags (see ../shared/notes/toolchain.md): VictoriaMetrics hides the newest
30 s from queries by default (``-search.latencyOffset``), which the runners lower so tests wait
on data instead of sleeping; vmagent buffers remote-write data on disk under ``-remoteWrite.tmpDataPath``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from npuobs.binaries import find_binary
from npuobs.errors import StackError
from npuobs.promapi import PrometheusAPI, Result
from npuobs.stack.proc import ManagedProcess, free_port, wait_http_ok

INSTALL_HINT = "apt-get install -y victoria-metrics"


def _binary(name: str, binary: str | None) -> str:
    path = binary or find_binary(name)
    if path is None:
        raise StackError(f"{name} not found on PATH ({INSTALL_HINT})")
    return path


class _Managed:
    """A started process with a base URL; stops on ``stop()`` or context exit."""

    process: ManagedProcess
    url: str

    def stop(self) -> int | None:
        return self.process.stop()

    def metrics(self) -> str:
        """The component's own ``/metrics`` text (ingestion, drops, evaluation timings)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as resp:  # noqa: S310 - loopback
            return resp.read().decode()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class VictoriaMetricsServer(_Managed, PrometheusAPI):
    """Single-node VictoriaMetrics: remote-write at ``/api/v1/write``, Prometheus query API at ``/api/v1/``."""

    def __init__(self, process: ManagedProcess, url: str, data_path: Path) -> None:
        PrometheusAPI.__init__(self, url, timeout=30.0)
        self.process = process
        self.data_path = data_path

    @classmethod
    def start(cls, workdir: Path, *, port: int | None = None, retention: str = "1d", latency_offset: str = "1s",
              extra_args: Sequence[str] = (), binary: str | None = None,
              ready_timeout: float = 20.0) -> VictoriaMetricsServer:
        workdir = Path(workdir)
        data = workdir / "vm-data"
        data.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [_binary("victoria-metrics", binary), f"-storageDataPath={data}",
                f"-httpListenAddr=127.0.0.1:{port}", f"-retentionPeriod={retention}",
                f"-search.latencyOffset={latency_offset}", "-search.disableCache", *extra_args]
        process = ManagedProcess(argv, workdir / "victoria-metrics.log", name="victoria-metrics").start()
        try:
            wait_http_ok(f"{url}/health", ready_timeout, process=process)
        except BaseException:
            process.stop()
            raise
        return cls(process, url, data)

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def wait_for(self, promql: str, predicate: Callable[[Result], bool] = bool, timeout: float = 60.0,
                 interval: float = 0.5) -> Result:
        """As on Prometheus, with VictoriaMetrics' longer defaults (its newest samples show after a lag)."""
        return super().wait_for(promql, predicate, timeout, interval)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.data_path.rglob("*") if p.is_file())


class VmAgent(_Managed):
    """One cluster's scraper: scrapes with a Prometheus ``scrape_configs`` file and remote-writes every
    sample, labelled ``cluster=<name>`` (the external label), to the global engine."""

    def __init__(self, process: ManagedProcess, url: str, cluster: str) -> None:
        self.process = process
        self.url = url
        self.cluster = cluster

    @classmethod
    def start(cls, scrape_configs: Sequence[Mapping[str, Any]], remote_write_url: str, workdir: Path, *,
              cluster: str, scrape_interval: str = "15s", port: int | None = None, extra_args: Sequence[str] = (),
              binary: str | None = None, ready_timeout: float = 20.0) -> VmAgent:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "scrape.yml"
        config.write_text(yaml.safe_dump({"global": {"scrape_interval": scrape_interval},
                                          "scrape_configs": [dict(c) for c in scrape_configs]}, sort_keys=False))
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [_binary("vmagent", binary), f"-promscrape.config={config}", f"-remoteWrite.url={remote_write_url}",
                f"-remoteWrite.label=cluster={cluster}", f"-remoteWrite.tmpDataPath={workdir / 'buffer'}",
                f"-httpListenAddr=127.0.0.1:{port}", "-promscrape.config.strictParse", *extra_args]
        process = ManagedProcess(argv, workdir / "vmagent.log", name=f"vmagent-{cluster}").start()
        try:
            wait_http_ok(f"{url}/health", ready_timeout, process=process)
        except BaseException:
            process.stop()
            raise
        return cls(process, url, cluster)


class VmAlert(_Managed):
    """A rule engine: evaluates rule files against ``datasource`` (the global engine's query API),
    writes recording results back through ``remote_write``, sends alerts to Alertmanagers."""

    def __init__(self, process: ManagedProcess, url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    def start(cls, rule_files: Sequence[Path | str], datasource_url: str, workdir: Path, *,
              remote_write_url: str | None = None, notifier_urls: Sequence[str] = (),
              evaluation_interval: str = "1m", port: int | None = None, extra_args: Sequence[str] = (),
              binary: str | None = None, ready_timeout: float = 20.0, name: str = "vmalert") -> VmAlert:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [_binary("vmalert", binary), *(f"-rule={Path(f).resolve()}" for f in rule_files),
                f"-datasource.url={datasource_url}", f"-evaluationInterval={evaluation_interval}",
                f"-httpListenAddr=127.0.0.1:{port}", f"-external.url={url}"]
        if remote_write_url:
            argv += [f"-remoteWrite.url={remote_write_url}", f"-remoteRead.url={datasource_url}"]
        argv += [f"-notifier.url={u}" for u in notifier_urls]
        argv += list(extra_args)
        process = ManagedProcess(argv, workdir / "vmalert.log", name=name).start()
        try:
            wait_http_ok(f"{url}/health", ready_timeout, process=process)
        except BaseException:
            process.stop()
            raise
        return cls(process, url)

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts vmalert holds (pending and firing), from its Prometheus-compatible API."""
        return list(PrometheusAPI(self.url).get("/api/v1/alerts").get("alerts") or [])

    def groups(self) -> list[dict[str, Any]]:
        return list(PrometheusAPI(self.url).get("/api/v1/rules").get("groups") or [])


def vmalert_dry_run(rule_files: Sequence[Path | str], binary: str | None = None) -> subprocess.CompletedProcess[str]:
    """``vmalert -dryRun -rule=...``: parse the rule files and validate expressions and templates
    with VictoriaMetrics' own MetricsQL parser, without running anything."""
    argv = [_binary("vmalert", binary), "-dryRun", *(f"-rule={Path(f).resolve()}" for f in rule_files)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
