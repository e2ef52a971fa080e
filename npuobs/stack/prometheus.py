"""Run a real Prometheus server on loopback and talk to its HTTP API.

Used by the end-to-end tests and the demo to evaluate the generated rules with the real rule
engine (not a re-implementation of PromQL) and to push real alerts into Alertmanager.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from npuobs.binaries import find_binary
from npuobs.promapi import PrometheusAPI, Result
from npuobs.stack.proc import ManagedProcess, StackError, free_port, wait_http_ok


def scrape_config(job: str, targets: Iterable[str], interval: str = "15s", *,
                  metrics_path: str = "/metrics", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """One ``scrape_configs`` entry for static ``host:port`` targets."""
    static: dict[str, Any] = {"targets": list(targets)}
    if labels:
        static["labels"] = dict(labels)
    return {"job_name": job, "scrape_interval": interval, "metrics_path": metrics_path,
            "static_configs": [static]}


def alerting_config(alertmanager_urls: Iterable[str]) -> dict[str, Any]:
    """The ``alerting`` section pointing Prometheus at Alertmanagers given as ``http://host:port`` URLs."""
    targets = []
    for url in alertmanager_urls:
        parsed = urllib.parse.urlsplit(url)
        if not parsed.netloc:
            raise ValueError(f"Alertmanager URL {url!r} has no host:port")
        targets.append(parsed.netloc)
    return {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": targets}]}]}


class PrometheusServer(PrometheusAPI):
    """A Prometheus process started by :meth:`start`; a context manager that stops it on exit."""

    def __init__(self, process: ManagedProcess, url: str, config_path: Path) -> None:
        super().__init__(url, timeout=10.0)
        self.process = process
        self.config_path = config_path

    @classmethod
    def start(cls, config: dict[str, Any], workdir: Path, *, rule_files: Sequence[Path | str] = (),
              port: int | None = None, alertmanagers: Sequence[str] = (), extra_args: Sequence[str] = (),
              binary: str | None = None, ready_timeout: float = 20.0) -> PrometheusServer:
        """Write ``config`` (plus ``rule_files`` and ``alertmanagers`` URLs) and start Prometheus on it.

        Returns once ``/-/ready`` answers. Scrape targets show up only after the first
        service-discovery tick (~5 s): use :meth:`wait_for` on ``up`` rather than sleeping.
        """
        binary = binary or find_binary("prometheus")
        if binary is None:
            raise StackError("prometheus not found on PATH (apt-get install -y prometheus)")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        config = dict(config)
        if rule_files:
            resolved = [str(Path(f).resolve()) for f in rule_files]
            config["rule_files"] = [*config.get("rule_files", ()), *resolved]
        if alertmanagers:
            config["alerting"] = alerting_config(alertmanagers)
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        url = f"http://127.0.0.1:{port}"
        argv = [
            binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--web.external-url={url}/", "--web.enable-lifecycle",
            *extra_args,
        ]
        process = ManagedProcess(argv, workdir / "prometheus.log", name="prometheus").start()
        try:
            wait_http_ok(f"{url}/-/ready", ready_timeout, process=process)
        except BaseException:
            process.stop()
            raise
        return cls(process, url, config_path)

    def alerts(self) -> Result:
        """Alerts the rule engine currently holds (pending and firing)."""
        return list(self.get("/api/v1/alerts")["alerts"])

    def reload(self) -> None:
        """Re-read the config and rule files (``POST /-/reload``); raises when Prometheus rejects them."""
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback http
                pass
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise StackError(f"prometheus reload failed: HTTP {exc.code}: {detail}") from exc

    def stop(self) -> int | None:
        return self.process.stop()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
